//! `cocoon attest verify` as a process: exit status, claims JSON on stdout when the
//! evidence is accepted, the reason on stderr (and nothing on stdout) when it is not.
//! Evidence: the real fixtures in attestation/tests/data, at the times they record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(rel: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "../../attestation/tests/data",
        rel,
    ]
    .iter()
    .collect();
    assert!(p.exists(), "{}", p.display());
    p.display().to_string()
}

fn expected(dir: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data(&format!("{dir}/expected.json"))).unwrap()).unwrap()
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["attest", "verify"])
        .args(args)
        .env_remove("COCOON_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 0 and the claims JSON on stdout.
fn accepted(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "status {:?}, stderr: {}",
        o.status,
        stderr(o)
    );
    assert!(!stderr(o).contains("rejected"), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// Exit 1, nothing on stdout, the rejection and `reason` on stderr.
fn rejected(o: &Output, reason: &str) {
    assert_eq!(o.status.code(), Some(1), "stdout: {}", stdout(o));
    assert!(stdout(o).is_empty(), "stdout: {}", stdout(o));
    let e = stderr(o);
    assert!(
        e.contains("cocoon: evidence rejected: ") && e.contains(reason),
        "{reason:?} not in stderr: {e}"
    );
}

/// The middle of the SNP set's VEK validity window, RFC 3339.
fn snp_now(e: &serde_json::Value) -> String {
    let t = |i: usize| attestation::time::parse_rfc3339(e["vek_valid"][i].as_str().unwrap());
    let (from, to) = (t(0).unwrap(), t(1).unwrap());
    attestation::time::format_rfc3339(from + (to - from) / 2)
}

const VIRTEE: &str = "snp/milan-vcek-virtee";
const TDX_V4: &str = "tdx/v4-uptodate-dcapqvl";

fn snp_args<'a>(evidence: &'a str, vek: &'a str, chain: &'a str, now: &'a str) -> Vec<&'a str> {
    vec![
        "--tee",
        "snp",
        "--evidence",
        evidence,
        "--vek",
        vek,
        "--chain",
        chain,
        "--now",
        now,
    ]
}

#[test]
fn snp_fixture_accepted_prints_the_claims() {
    let e = expected(VIRTEE);
    let (report, vek, chain) = (
        data(&format!("{VIRTEE}/report.bin")),
        data(&format!("{VIRTEE}/vcek.der")),
        data("snp/certs/milan/ask_ark_milan.pem"),
    );
    let now = snp_now(&e);
    let rd = e["report_data"].as_str().unwrap();
    let mut args = snp_args(&report, &vek, &chain, &now);
    args.extend(["--policy", "no-debug", "--report-data", rd]);
    let claims = accepted(&verify(&args));
    assert_eq!(claims["tee"], "snp");
    assert_eq!(claims["measurement"], e["measurement"]);
    assert_eq!(claims["report_data"], e["report_data"]);
    assert_eq!(claims["init_data"], e["host_data"]);
    assert_eq!(claims["debug"], false);
}

#[test]
fn snp_tampered_or_mismatching_evidence_is_rejected() {
    let e = expected(VIRTEE);
    let (vek, chain) = (
        data(&format!("{VIRTEE}/vcek.der")),
        data("snp/certs/milan/ask_ark_milan.pem"),
    );
    let now = snp_now(&e);
    let flipped = data("snp/invalid/milan_report_measurement_byte_flipped.bin");
    rejected(
        &verify(&snp_args(&flipped, &vek, &chain, &now)),
        "signature check failed: VEK does not sign the attestation report bytes",
    );
    let truncated = data("snp/invalid/milan_report_truncated_1000_bytes.bin");
    rejected(
        &verify(&snp_args(&truncated, &vek, &chain, &now)),
        "expected 1184 bytes, got 1000",
    );
    // The genuine report with another expected report_data.
    let report = data(&format!("{VIRTEE}/report.bin"));
    let mut args = snp_args(&report, &vek, &chain, &now);
    let other = "00".repeat(64);
    args.extend(["--report-data", &other]);
    rejected(&verify(&args), "report_data mismatch");
    // Outside the VCEK's validity.
    rejected(
        &verify(&snp_args(&report, &vek, &chain, "2031-01-01T00:00:00Z")),
        "not valid at 2031-01-01T00:00:00Z",
    );
    // A debuggable guest under --policy no-debug.
    let g = "snp/milan-vcek-gosevguest";
    let (greport, gvek, gnow) = (
        data(&format!("{g}/report.bin")),
        data(&format!("{g}/vcek.der")),
        snp_now(&expected(g)),
    );
    let mut args = snp_args(&greport, &gvek, &chain, &gnow);
    args.extend(["--policy", "no-debug"]);
    rejected(&verify(&args), "policy violation");
}

#[test]
fn tdx_fixture_accepted_prints_the_claims() {
    let e = expected(TDX_V4);
    let quote = data(&format!("{TDX_V4}/quote.bin"));
    let collateral = data(&format!("{TDX_V4}/collateral.json"));
    let now = e["verification"]["now_utc"].as_str().unwrap();
    let rd = e["report_data"].as_str().unwrap();
    let claims = accepted(&verify(&[
        "--tee",
        "tdx",
        "--evidence",
        &quote,
        "--collateral",
        &collateral,
        "--now",
        now,
        "--policy",
        "no-debug,tcb-uptodate",
        "--report-data",
        rd,
    ]));
    assert_eq!(claims["tee"], "tdx");
    assert_eq!(claims["measurement"], e["mr_td"]);
    assert_eq!(claims["report_data"], e["report_data"]);
    assert_eq!(claims["tcb_status"], "UpToDate");
    assert_eq!(claims["rtmrs"][0], e["rtmr0"]);
}

#[test]
fn tdx_tampered_or_expired_evidence_is_rejected() {
    let e = expected(TDX_V4);
    let collateral = data(&format!("{TDX_V4}/collateral.json"));
    let now = e["verification"]["now_utc"].as_str().unwrap();
    let tdx = |quote: &str, now: &str| {
        verify(&[
            "--tee",
            "tdx",
            "--evidence",
            quote,
            "--collateral",
            &collateral,
            "--now",
            now,
        ])
    };
    rejected(
        &tdx(&data("tdx/invalid/v4_quote_mrtd_byte_flipped.bin"), now),
        "signature check failed",
    );
    rejected(
        &tdx(&data("tdx/invalid/v4_quote_truncated_1000_bytes.bin"), now),
        "malformed TDX quote",
    );
    // The genuine quote after its collateral's PCK CRL expired.
    let quote = data(&format!("{TDX_V4}/quote.bin"));
    rejected(
        &tdx(&quote, "2025-07-19T10:00:35Z"),
        "not valid at 2025-07-19T10:00:35Z",
    );
    // No collateral at all.
    rejected(
        &verify(&["--tee", "tdx", "--evidence", &quote, "--now", now]),
        "missing input: TDX verification needs collateral",
    );
}
