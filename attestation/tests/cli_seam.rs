//! The `attest verify` seam on the fixtures (built with `--features cli`).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::AttestationError;
use attestation::cli::{VerifyArgs, run_verify};
use clap::Parser;
use common::*;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: VerifyArgs,
}

fn run(argv: &[&str]) -> Result<serde_json::Value, AttestationError> {
    let mut full = vec!["verify"];
    full.extend_from_slice(argv);
    let cmd = Cmd::try_parse_from(full).unwrap();
    run_verify(&cmd.args).map(|s| serde_json::from_str(&s).unwrap())
}

fn p(rel: &str) -> String {
    data().join(rel).display().to_string()
}

#[test]
fn snp_binary_and_json_evidence() {
    let rd = json("snp/milan-vcek-virtee/expected.json")["report_data"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run(&[
        "--tee",
        "snp",
        "--evidence",
        &p("snp/milan-vcek-virtee/report.bin"),
        "--vek",
        &p("snp/milan-vcek-virtee/vcek.der"),
        "--chain",
        &p("snp/certs/milan/ask_ark_milan.pem"),
        "--now",
        "2025-01-01T00:00:00Z",
        "--policy",
        "no-debug",
        "--report-data",
        &rd,
    ])
    .unwrap();
    assert_eq!(out["tee"], "snp");
    assert_eq!(out["report_data"], rd.as_str());
    let out = run(&[
        "--tee",
        "snp",
        "--evidence",
        &p("snp/genoa-vcek-trustee-coco/evidence.json"),
        "--now",
        "2026-01-01T00:00:00Z",
    ])
    .unwrap();
    assert_eq!(out["fields"]["product"], "Genoa");
    // Debug guest: accepted without the policy, refused with it.
    let args = [
        "--tee",
        "snp",
        "--evidence",
        &p("snp/milan-vcek-gosevguest/report.bin"),
        "--vek",
        &p("snp/milan-vcek-gosevguest/vcek.der"),
        "--now",
        "2025-01-01T00:00:00Z",
    ];
    assert_eq!(run(&args).unwrap()["debug"], true);
    let mut strict = args.to_vec();
    strict.extend_from_slice(&["--policy", "no-smt,no-debug"]);
    assert!(matches!(run(&strict), Err(AttestationError::Policy(_))));
    // Expired VLEK.
    let err = run(&[
        "--tee",
        "snp",
        "--evidence",
        &p("snp/milan-vlek-trustee-aws/report.bin"),
        "--vek",
        &p("snp/milan-vlek-trustee-aws/vlek.der"),
        "--now",
        "2026-01-01T00:00:00Z",
    ])
    .unwrap_err();
    assert!(matches!(err, AttestationError::Validity { .. }));
}

#[test]
fn tdx_with_collateral_and_reference_values() {
    let dir = tempfile::tempdir().unwrap();
    let e = json("tdx/v4-uptodate-dcapqvl/expected.json");
    let rv = dir.path().join("rv.json");
    std::fs::write(
        &rv,
        format!(
            r#"{{"tdx_mrtd":["{}"],"tdx_rtmr3":["{}"]}}"#,
            e["mr_td"].as_str().unwrap(),
            "11".repeat(48)
        ),
    )
    .unwrap();
    let base = [
        "--tee",
        "tdx",
        "--evidence",
        &p("tdx/v4-uptodate-dcapqvl/quote.bin"),
        "--collateral",
        &p("tdx/v4-uptodate-dcapqvl/collateral.json"),
    ];
    let mut ok = base.to_vec();
    ok.extend_from_slice(&[
        "--now",
        "2025-07-01T00:00:00Z",
        "--policy",
        "no-debug,tcb-uptodate",
    ]);
    let out = run(&ok).unwrap();
    assert_eq!(out["tcb_status"], "UpToDate");
    assert_eq!(out["measurement"], e["mr_td"]);
    let rv_s = rv.display().to_string();
    let mut with_rv = ok.clone();
    with_rv.extend_from_slice(&["--reference-values", &rv_s]);
    match run(&with_rv) {
        Err(AttestationError::Appraisal(m)) => assert_eq!(m[0].field, "tdx_rtmr3"),
        other => panic!("{other:?}"),
    }
    let mut late = base.to_vec();
    late.extend_from_slice(&["--now", "2025-07-19T10:00:35Z"]);
    assert!(matches!(run(&late), Err(AttestationError::Validity { .. })));
    let mut bad_policy = ok.clone();
    bad_policy.extend_from_slice(&["--policy", "no-such-policy"]);
    assert!(matches!(
        run(&bad_policy),
        Err(AttestationError::Unsupported(_))
    ));
}

#[test]
fn sample_evidence() {
    let out = run(&[
        "--tee",
        "sample",
        "--evidence",
        &p("sample/sample_evidence.json"),
        "--report-data",
        "78787878",
    ])
    .unwrap();
    assert_eq!(out["report_data"], "78787878");
    assert!(
        run(&[
            "--tee",
            "sample",
            "--evidence",
            &p("sample/sample_evidence.json"),
            "--report-data",
            "78787879"
        ])
        .is_err()
    );
}
