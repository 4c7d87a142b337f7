#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn sample_input() -> Value {
    json!({
        "sample": {"svn": "1", "report_data": "00"},
        "report_data": "00",
        "init_data": null,
        "init_data_claims": null,
        "runtime_data_claims": {"nonce": "n", "tee-pubkey": {}},
    })
}

fn tdx_input(tcb_status: &str, debug: bool) -> Value {
    json!({
        "tdx": {"mr_td": "aa", "tcb_status": tcb_status, "debug": debug, "advisory_ids": []},
        "report_data": "00",
        "init_data": "bb",
        "init_data_claims": {},
        "runtime_data_claims": {"nonce": "n", "tee-pubkey": {}},
    })
}

fn data(unchecked: &[&str]) -> Value {
    json!({
        "reference": {"tdx_mrtd": ["aa"]},
        "appraisal": {"matched": ["tdx_mrtd"], "unchecked": unchecked},
    })
}

fn builtin() -> Arc<LoadedPolicy> {
    AttestationPolicies::new().unwrap().for_attestation()
}

#[test]
fn tiers_follow_the_ar4si_bands() {
    for (v, tier) in [
        (0, TrustTier::None),
        (1, TrustTier::None),
        (-1, TrustTier::None),
        (2, TrustTier::Affirming),
        (31, TrustTier::Affirming),
        (-2, TrustTier::Affirming),
        (-32, TrustTier::Affirming),
        (32, TrustTier::Warning),
        (95, TrustTier::Warning),
        (-33, TrustTier::Warning),
        (-96, TrustTier::Warning),
        (96, TrustTier::Contraindicated),
        (127, TrustTier::Contraindicated),
        (-97, TrustTier::Contraindicated),
        (-128, TrustTier::Contraindicated),
    ] {
        assert_eq!(TrustTier::of(v), tier, "{v}");
    }
    assert!(TrustTier::Affirming.issues_token() && TrustTier::Warning.issues_token());
    assert!(!TrustTier::Contraindicated.issues_token() && !TrustTier::None.issues_token());
}

#[test]
fn builtin_policy_grades_sample_warning_and_a_clean_tee_affirming() {
    let p = builtin();
    assert_eq!(p.id, DEFAULT_POLICY_ID);
    let a = p.appraise(&sample_input(), &data(&[])).unwrap();
    assert_eq!(a.status, TrustTier::Warning);
    assert_eq!(a.policy_id, "default");
    assert_eq!(
        a.vector_json(),
        json!({
            "instance-identity": 0, "configuration": 36, "executables": 33,
            "file-system": 0, "hardware": 0, "runtime-opaque": 0,
            "storage-opaque": 0, "sourced-data": 0,
        })
    );

    let a = p
        .appraise(&tdx_input("UpToDate", false), &data(&[]))
        .unwrap();
    assert_eq!(a.status, TrustTier::Affirming, "{:?}", a.vector);
    assert_eq!(a.vector["hardware"], 2);
    assert_eq!(a.vector["executables"], 2);
    assert_eq!(a.vector["runtime-opaque"], 2);
    // Reference measurements not configured: the boot chain is not recognized.
    let a = p
        .appraise(&tdx_input("UpToDate", false), &data(&["tdx_rtmr1"]))
        .unwrap();
    assert_eq!(
        (a.status, a.vector["executables"]),
        (TrustTier::Warning, 33)
    );
    // A TCB with known vulnerabilities, a debuggable guest: warning.
    let a = p
        .appraise(&tdx_input("OutOfDate", false), &data(&[]))
        .unwrap();
    assert_eq!((a.status, a.vector["hardware"]), (TrustTier::Warning, 32));
    let a = p
        .appraise(&tdx_input("UpToDate", true), &data(&[]))
        .unwrap();
    assert_eq!(
        (a.status, a.vector["configuration"]),
        (TrustTier::Warning, 32)
    );
    // SNP reports its own TCB status string.
    let snp = json!({"snp": {"tcb_status": "VekMatchesReport", "debug": false}});
    let a = p.appraise(&snp, &data(&[])).unwrap();
    assert_eq!(a.status, TrustTier::Affirming, "{:?}", a.vector);
}

#[test]
fn posted_policies_set_the_status_and_bad_results_fail_closed() {
    let store = AttestationPolicies::new().unwrap();
    let reject = "package policy\ntrust_claims := {\"hardware\": 97, \"executables\": 2}\n";
    store.set("default", reject).unwrap();
    let a = store
        .for_attestation()
        .appraise(&sample_input(), &data(&[]))
        .unwrap();
    assert_eq!(a.status, TrustTier::Contraindicated);
    assert_eq!(a.policy_digest, policy::policy_digest(reject));

    let zero = "package policy\ntrust_claims := {\"hardware\": 0}\n";
    let a = LoadedPolicy::compile("z", zero)
        .unwrap()
        .appraise(&sample_input(), &Value::Null)
        .unwrap();
    assert_eq!(a.status, TrustTier::None);

    for (text, expect) in [
        (
            "package policy\ntrust_claims := {\"hardware\": 2} if input.tdx\n",
            "defines no data.policy.trust_claims",
        ),
        (
            "package policy\ntrust_claims := 2\n",
            "must map AR4SI claims",
        ),
        (
            "package policy\ntrust_claims := {\"hw\": 2}\n",
            "must map AR4SI claims",
        ),
        (
            "package policy\ntrust_claims := {\"hardware\": 200}\n",
            "must map AR4SI claims",
        ),
        (
            "package policy\ntrust_claims := {\"hardware\": 2.5}\n",
            "must map AR4SI claims",
        ),
        (
            "package policy\ntrust_claims := {\"hardware\": \"2\"}\n",
            "must map AR4SI claims",
        ),
        (
            "package policy\ntrust_claims := {}\n",
            "sets no trust claim",
        ),
    ] {
        let e = LoadedPolicy::compile("t", text)
            .unwrap()
            .appraise(&sample_input(), &Value::Null)
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{text}: {e}");
    }
}

#[test]
fn storing_validates_first_and_maps_trustee_cpu_ids() {
    let store = AttestationPolicies::new().unwrap();
    assert!(Arc::ptr_eq(&store.for_attestation(), &store.builtin));
    let ok = "package policy\ntrust_claims := {\"hardware\": 2}\n";
    // trustee's kbs-client posts `default_cpu`: it is the policy `default`.
    assert_eq!(store.set("default_cpu", ok).unwrap().id, "default");
    assert_eq!(store.for_attestation().text, ok);
    assert_eq!(AttestationPolicies::storage_id("_cpu").unwrap(), "_cpu");
    assert_eq!(AttestationPolicies::storage_id("prod").unwrap(), "prod");

    // Nothing is stored when the text does not compile, is another package, or the id
    // is not a plain name; the previous `default` stays in force.
    for (id, text, expect) in [
        (
            "default",
            "package policy\ntrust_claims := {",
            "cannot load",
        ),
        (
            "default",
            "package other\ntrust_claims := {}\n",
            "package policy",
        ),
        (
            "default",
            "package policy\nx := 1\n",
            "must define data.policy.trust_claims",
        ),
        ("../x", ok, "not a plain name"),
        ("a/b", ok, "not a plain name"),
        ("", ok, "not a plain name"),
    ] {
        let e = store.set(id, text).unwrap_err();
        assert!(e.to_string().contains(expect), "{id} {text}: {e}");
    }
    assert_eq!(store.for_attestation().text, ok);
    assert!(store.get("x").is_none() && store.get("../x").is_none());
    // Other ids are stored but not what attestations use.
    store
        .set(
            "strict",
            "package policy\ntrust_claims := {\"hardware\": 96}\n",
        )
        .unwrap();
    assert_eq!(store.for_attestation().text, ok);
    assert!(store.get("strict").is_some());
}
