//! TDX quote verification (dcap-qvl) on the real quotes in tests/data/tdx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::tdx::{
    QuoteCollateralV3, TdxPolicy, TdxVerifyInput, parse_collateral_json, verify_tdx,
};
use attestation::{
    AppraisalPolicy, AttestationError, Claims, ReferenceValues, TdxEvidence, Tee, VerifyOptions,
    appraise, verify,
};
use common::*;

const SETS: [&str; 3] = [
    "tdx/v4-uptodate-dcapqvl",
    "tdx/v5-uptodate-gotdxguest",
    "tdx/v5-tcb-unmatched-dcapqvl",
];

fn collateral(rel: &str) -> QuoteCollateralV3 {
    parse_collateral_json(&read(rel)).unwrap()
}

fn run(quote: &[u8], coll: &QuoteCollateralV3, now: i64) -> Result<Claims, AttestationError> {
    verify_tdx(
        TdxVerifyInput {
            quote,
            collateral: coll,
            now,
            root_ca_der: None,
        },
        &TdxPolicy::default(),
    )
}

#[test]
fn every_set_gives_the_recorded_outcome_and_fields() {
    for dir in SETS {
        let e = json(&format!("{dir}/expected.json"));
        let quote = read(&format!("{dir}/quote.bin"));
        let coll = collateral(&format!("{dir}/collateral.json"));
        let now = e["verification"]["now_unix"].as_i64().unwrap();
        assert_eq!(now, t(e["verification"]["now_utc"].as_str().unwrap()));
        let result = run(&quote, &coll, now);
        if e["verification"]["expected"] == "reject" {
            let err = result.expect_err(dir);
            assert!(
                matches!(err, AttestationError::Tcb(ref m) if m.contains("No matching TCB level")),
                "{dir}: {err}"
            );
            continue;
        }
        let c = result.unwrap_or_else(|err| panic!("{dir}: {err}"));
        assert_eq!(c.tee, Tee::Tdx);
        assert_eq!(
            c.tcb_status,
            e["verification"]["tcb_status"].as_str().unwrap(),
            "{dir}"
        );
        assert!(c.advisory_ids.is_empty());
        assert_eq!(
            hex::encode(c.measurement.as_ref().unwrap()),
            e["mr_td"],
            "{dir}"
        );
        for i in 0..4 {
            assert_eq!(
                c.rtmrs[i],
                e[format!("rtmr{i}")].as_str().unwrap(),
                "{dir} rtmr{i}"
            );
        }
        assert_eq!(hex::encode(&c.report_data), e["report_data"], "{dir}");
        assert_eq!(
            hex::encode(c.init_data.as_ref().unwrap()),
            e["mr_config_id"],
            "{dir}"
        );
        assert_eq!(
            hex::encode(c.platform_id.as_ref().unwrap()),
            e["fmspc"],
            "{dir}"
        );
        assert_eq!(
            c.fields["td_attributes"],
            e["td_attributes"].as_str().unwrap()
        );
        assert_eq!(c.fields["xfam"], e["xfam"].as_str().unwrap());
        assert_eq!(c.fields["mr_seam"], e["mr_seam"].as_str().unwrap());
        assert_eq!(c.fields["tee_tcb_svn"], e["tee_tcb_svn"].as_str().unwrap());
        assert_eq!(c.fields["quote_version"], e["quote_version"].to_string());
        assert!(!c.debug);
    }
}

#[test]
fn collateral_window_edges() {
    for dir in SETS {
        let e = json(&format!("{dir}/expected.json"));
        let quote = read(&format!("{dir}/quote.bin"));
        let coll = collateral(&format!("{dir}/collateral.json"));
        let first = t(e["verification"]["collateral_window_first_valid_utc"]
            .as_str()
            .unwrap());
        let last = t(e["verification"]["collateral_window_last_valid_utc"]
            .as_str()
            .unwrap());
        let accept = e["verification"]["expected"] == "accept";
        for now in [first, last] {
            let r = run(&quote, &coll, now);
            if accept {
                r.unwrap_or_else(|err| panic!("{dir} at {now}: {err}"));
            } else {
                assert!(
                    matches!(r, Err(AttestationError::Tcb(_))),
                    "{dir} at {now}: {r:?}"
                );
            }
        }
        // One second before the start, and at the end (last valid + 1 = CRL nextUpdate).
        for now in [first - 1, last + 1] {
            let err = run(&quote, &coll, now).unwrap_err();
            assert!(
                matches!(err, AttestationError::Validity { .. }),
                "{dir} at {now}: {err}"
            );
        }
    }
}

#[test]
fn recorded_time_based_cases() {
    let cases = json("tdx/invalid/expected.json");
    for case in cases["time_based_cases"].as_array().unwrap() {
        let quote = read(&resolve("tdx/invalid", case["quote"].as_str().unwrap()));
        let coll = collateral(&resolve(
            "tdx/invalid",
            case["collateral"].as_str().unwrap(),
        ));
        let now = t(case["now_utc"].as_str().unwrap());
        let err = run(&quote, &coll, now).unwrap_err();
        assert!(
            matches!(err, AttestationError::Validity { .. }),
            "{case}: {err}"
        );
    }
}

#[test]
fn tampered_files_are_rejected_with_the_right_error() {
    let cases = json("tdx/invalid/expected.json");
    let now = t("2025-07-01T00:00:00Z");
    let mut seen = 0;
    for case in cases["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let (quote, coll) = if file.ends_with(".json") {
            (
                read("tdx/v4-uptodate-dcapqvl/quote.bin"),
                collateral(&format!("tdx/invalid/{file}")),
            )
        } else {
            (
                read(&format!("tdx/invalid/{file}")),
                collateral("tdx/v4-uptodate-dcapqvl/collateral.json"),
            )
        };
        let err = run(&quote, &coll, now).expect_err(file);
        let dcap_text = case["dcap_qvl_0_7_1_error"].as_str().unwrap();
        let ok = if file.contains("truncated") {
            matches!(err, AttestationError::Malformed { .. })
        } else {
            matches!(err, AttestationError::Signature(_))
        };
        assert!(ok, "{file}: wrong kind: {err}");
        let first_words: String = dcap_text.split(':').next().unwrap().to_string();
        assert!(
            err.to_string().contains(&first_words),
            "{file}: {err} lacks {first_words:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, 7);
}

#[test]
fn json_evidence_form_and_report_data_check() {
    let dir = "tdx/v4-uptodate-dcapqvl";
    let e = json(&format!("{dir}/expected.json"));
    let quote = read(&format!("{dir}/quote.bin"));
    let evidence = serde_json::to_vec(&TdxEvidence::new(&quote, Some(b"ccel"))).unwrap();
    let options = VerifyOptions {
        now: Some(t("2025-07-01T00:00:00Z")),
        collateral: Some(collateral(&format!("{dir}/collateral.json"))),
        ..Default::default()
    };
    let rd = hex::decode(e["report_data"].as_str().unwrap()).unwrap();
    let from_json = verify(Tee::Tdx, &evidence, &options, Some(&rd)).unwrap();
    let from_raw = verify(Tee::Tdx, &quote, &options, Some(&rd)).unwrap();
    assert_eq!(from_json, from_raw);
    // Truncation rule: a 72-byte expected value compares on its first 64 bytes.
    let mut long = rd.clone();
    long.extend_from_slice(&[0xAA; 8]);
    verify(Tee::Tdx, &quote, &options, Some(&long)).unwrap();
    let mut wrong = rd.clone();
    wrong[63] ^= 1;
    assert!(matches!(
        verify(Tee::Tdx, &quote, &options, Some(&wrong)),
        Err(AttestationError::ReportDataMismatch { .. })
    ));
    // No collateral: a clear error, not a pass.
    let bare = VerifyOptions {
        now: options.now,
        ..Default::default()
    };
    assert!(matches!(
        verify(Tee::Tdx, &quote, &bare, None),
        Err(AttestationError::MissingInput(_))
    ));
    // Tightened status policy.
    let uptodate = TdxPolicy {
        allow_debug: false,
        accepted_tcb_statuses: vec!["OutOfDate".into()],
    };
    let coll = collateral(&format!("{dir}/collateral.json"));
    let err = verify_tdx(
        TdxVerifyInput {
            quote: &quote,
            collateral: &coll,
            now: t("2025-07-01T00:00:00Z"),
            root_ca_der: None,
        },
        &uptodate,
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::Tcb(_)), "{err}");
}

#[test]
fn embedded_root_is_the_fixture_root_and_a_wrong_root_fails() {
    assert_eq!(
        attestation::tdx::INTEL_SGX_ROOT_CA_DER,
        read("tdx/intel_sgx_root_ca.der").as_slice()
    );
    let quote = read("tdx/v4-uptodate-dcapqvl/quote.bin");
    let coll = collateral("tdx/v4-uptodate-dcapqvl/collateral.json");
    let ark = pem_chain("snp/certs/milan/ask_ark_milan.pem").remove(1);
    let r = verify_tdx(
        TdxVerifyInput {
            quote: &quote,
            collateral: &coll,
            now: t("2025-07-01T00:00:00Z"),
            root_ca_der: Some(&ark),
        },
        &TdxPolicy::default(),
    );
    assert!(r.is_err());
}

#[test]
fn appraisal_names_rtmr_mismatches() {
    let dir = "tdx/v5-uptodate-gotdxguest";
    let e = json(&format!("{dir}/expected.json"));
    let c = run(
        &read(&format!("{dir}/quote.bin")),
        &collateral(&format!("{dir}/collateral.json")),
        t("2026-03-01T00:00:00Z"),
    )
    .unwrap();
    let rv = format!(
        r#"{{"tdx_mrtd":["{}"],"tdx_rtmr0":["{}"],"tdx_rtmr1":["00"],"tdx_rtmr2":["{}"],"tdx_rtmr3":["{}"],"init_data":["{}"]}}"#,
        e["mr_td"].as_str().unwrap(),
        e["rtmr0"].as_str().unwrap(),
        e["rtmr2"].as_str().unwrap(),
        e["rtmr3"].as_str().unwrap(),
        "00".repeat(48),
    );
    let rv = ReferenceValues::from_json(rv.as_bytes()).unwrap();
    match appraise(&c, &rv, &AppraisalPolicy::default()) {
        Err(AttestationError::Appraisal(list)) => {
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].field, "tdx_rtmr1");
            assert_eq!(list[0].found, e["rtmr1"].as_str().unwrap());
        }
        other => panic!("{other:?}"),
    }
    let policy = AppraisalPolicy {
        accepted_tcb_statuses: vec!["UpToDate".into()],
        ..Default::default()
    };
    let mut rv_ok = rv.clone();
    rv_ok.0.insert(
        "tdx_rtmr1".into(),
        vec![e["rtmr1"].as_str().unwrap().to_uppercase()],
    );
    let a = appraise(&c, &rv_ok, &policy).unwrap();
    assert_eq!(a.matched.len(), 6);
}

#[test]
fn raw_pcs_tcb_info_response_replaces_the_collateral_tcb_info() {
    let dir = "tdx/v5-uptodate-gotdxguest";
    let quote = read(&format!("{dir}/quote.bin"));
    let pcs = attestation::tdx::parse_pcs_signed_body(&read(&format!(
        "{dir}/pcs_tcb_info_response_2026-02-01.json"
    )))
    .unwrap();
    assert!(
        pcs.body
            .starts_with(r#"{"id":"TDX","version":3,"issueDate":"2026-02-01T14:49:26Z""#)
    );
    assert_eq!(pcs.signature.len(), 64);
    let mut coll = collateral(&format!("{dir}/collateral.json"));
    coll.tcb_info = pcs.body.clone();
    coll.tcb_info_signature = pcs.signature.clone();
    let c = run(&quote, &coll, t("2026-02-25T00:00:00Z")).unwrap();
    assert_eq!(c.tcb_status, "UpToDate");
    // Re-serialising the signed text (here: pretty-printing) breaks the signature.
    let value: serde_json::Value = serde_json::from_str(&pcs.body).unwrap();
    coll.tcb_info = serde_json::to_string_pretty(&value).unwrap();
    let err = run(&quote, &coll, t("2026-02-25T00:00:00Z")).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(_)), "{err}");
}
