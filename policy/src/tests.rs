use serde_json::json;

use super::*;

const RESOURCE_POLICY: &str = r#"
package policy

default allow := false

allow if {
    data.plugin == "resource"
    not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
    count(data["resource-path"]) == 3
}
"#;

fn claims(tee: &str) -> serde_json::Value {
    json!({"submods": {"cpu0": {"ear.veraison.annotated-evidence": {tee: {"svn": "1"}}}}})
}

fn resource_data(plugin: &str) -> serde_json::Value {
    json!({"plugin": plugin, "resource-path": ["default", "key", "k1"], "query": {}})
}

#[test]
fn resource_policy_refuses_sample_allows_tdx() {
    let p = Policy::from_rego("default.rego", RESOURCE_POLICY).unwrap();
    assert_eq!(p.package(), "data.policy");
    let rule = "data.policy.allow";
    assert!(
        !p.evaluate_bool(rule, &claims("sample"), &resource_data("resource"))
            .unwrap()
    );
    assert!(
        p.evaluate_bool(rule, &claims("tdx"), &resource_data("resource"))
            .unwrap()
    );
    assert!(
        !p.evaluate_bool(rule, &claims("tdx"), &resource_data("other"))
            .unwrap()
    );
    // Data from one evaluation does not leak into the next (engine is cloned).
    assert!(
        p.evaluate_bool(rule, &claims("snp"), &resource_data("resource"))
            .unwrap()
    );
}

#[test]
fn undefined_and_unknown_rules_are_errors() {
    let p = Policy::from_rego("p.rego", "package p\nx if input.a == 1\n").unwrap();
    assert!(matches!(
        p.evaluate_bool("data.p.x", &json!({"a": 2}), &json!(null)),
        Err(PolicyError::Undefined { .. })
    ));
    assert!(
        p.evaluate_bool("data.p.x", &json!({"a": 1}), &json!(null))
            .unwrap()
    );
    assert!(matches!(
        p.evaluate("data.nope.x", &json!({}), &json!(null)),
        Err(PolicyError::Eval { .. })
    ));
    let q = Policy::from_rego("q.rego", "package q\nv := 3\n").unwrap();
    assert!(matches!(
        q.evaluate_bool("data.q.v", &json!({}), &json!(null)),
        Err(PolicyError::Shape { .. })
    ));
}

#[test]
fn decision_bool_and_object_forms() {
    let rego = r#"
package agent_policy

default CreateContainerRequest := {"allowed": false}
CreateContainerRequest := {"allowed": true, "ops": [{"op": "add", "path": "/containers/-", "value": input.container_id}]} if {
    startswith(input.container_id, "ok")
}

default StartContainerRequest := true
default ExecProcessRequest := false
"#;
    let p = Policy::from_rego("agent.rego", rego).unwrap();
    let d = p
        .evaluate_decision(
            "data.agent_policy.CreateContainerRequest",
            &json!({"container_id": "ok-1"}),
            &json!({"pstate": {}}),
        )
        .unwrap();
    assert!(d.allowed);
    assert_eq!(
        d.ops,
        vec![json!({"op": "add", "path": "/containers/-", "value": "ok-1"})]
    );
    let d = p
        .evaluate_decision(
            "data.agent_policy.CreateContainerRequest",
            &json!({"container_id": "bad"}),
            &json!(null),
        )
        .unwrap();
    assert_eq!(
        d,
        Decision {
            allowed: false,
            ops: vec![]
        }
    );
    assert!(
        p.evaluate_decision(
            "data.agent_policy.StartContainerRequest",
            &json!({}),
            &json!(null)
        )
        .unwrap()
        .allowed
    );
    assert!(
        !p.evaluate_decision(
            "data.agent_policy.ExecProcessRequest",
            &json!({}),
            &json!(null)
        )
        .unwrap()
        .allowed
    );
}

#[test]
fn raised_limits_accept_long_lines_and_custom_limits_refuse() {
    // A 5000-byte line: above regorus' default column limit (1024), below ours.
    let long = format!("package l\nv := \"{}\"\n", "a".repeat(5000));
    let p = Policy::from_rego("long.rego", &long).unwrap();
    assert_eq!(
        p.evaluate("data.l.v", &json!({}), &json!(null))
            .unwrap()
            .unwrap()
            .as_str()
            .unwrap()
            .len(),
        5000
    );
    let small = PolicyLimits {
        max_line_bytes: 1000,
        ..PolicyLimits::default()
    };
    assert!(matches!(
        Policy::with_options("long.rego", &long, RegoVersion::V1, small),
        Err(PolicyError::Load { .. })
    ));
    let zero = PolicyLimits {
        max_lines: 0,
        ..PolicyLimits::default()
    };
    assert!(Policy::with_options("z", "package z\n", RegoVersion::V1, zero).is_err());
}

#[test]
fn rego_v0_only_when_asked() {
    let v0 = "package old\ndefault allow = false\nallow { input.x == 1 }\n";
    assert!(matches!(
        Policy::from_rego("old.rego", v0),
        Err(PolicyError::Load { .. })
    ));
    let p = Policy::with_options("old.rego", v0, RegoVersion::V0, PolicyLimits::default()).unwrap();
    assert!(
        p.evaluate_bool("data.old.allow", &json!({"x": 1}), &json!(null))
            .unwrap()
    );
}

#[test]
fn syntax_error_names_the_policy() {
    let err = Policy::from_rego("broken.rego", "package b\nallow if {\n").unwrap_err();
    assert!(err.to_string().contains("broken.rego"), "{err}");
}

#[test]
fn digest_is_sha256_of_text() {
    // FIPS 180-2 test vector for "abc".
    assert_eq!(
        policy_digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let p = Policy::from_rego("p", "package p\n").unwrap();
    assert_eq!(p.digest(), policy_digest("package p\n"));
}
