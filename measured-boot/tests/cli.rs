//! The `cli` argument structs accept `sev-snp-measure`'s own argv and print what it prints.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use clap::Parser;
use measured_boot::cli::{DiffArgs, SnpArgs, TdxArgs, run_diff, run_snp, run_tdx};

#[derive(Parser)]
struct Snp {
    #[command(flatten)]
    args: SnpArgs,
}
#[derive(Parser)]
struct Tdx {
    #[command(flatten)]
    args: TdxArgs,
}
#[derive(Parser)]
struct Diff {
    #[command(flatten)]
    args: DiffArgs,
}

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn same_argv_same_output_as_sev_snp_measure() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("k");
    let r = dir.path().join("r");
    std::fs::write(&k, common::det_bytes(11, 4096 * 5)).unwrap();
    std::fs::write(&r, common::det_bytes(12, 333)).unwrap();
    let (k, r) = (k.display().to_string(), r.display().to_string());
    let amd = data("ovmf_AmdSev_suffix.bin");
    let argvs: Vec<Vec<String>> = vec![
        vec![
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            "/usr/share/ovmf/OVMF.fd",
        ],
        vec![
            "--mode",
            "snp",
            "--vcpus",
            "1",
            "--vcpu-sig",
            "0xa10f10",
            "--ovmf",
            &amd,
            "--kernel",
            &k,
            "--initrd",
            &r,
            "--append",
            "console=ttyS0 quiet",
            "--output-format",
            "base64",
        ],
        vec![
            "--mode",
            "snp",
            "--vcpus",
            "3",
            "--vcpu-family",
            "25",
            "--vcpu-model",
            "1",
            "--vcpu-stepping",
            "1",
            "--ovmf",
            &amd,
            "--kernel",
            &k,
            "--guest-features",
            "0x21",
        ],
        vec![
            "--mode",
            "snp",
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC",
            "--vmm-type",
            "ec2",
            "--ovmf",
            &amd,
            "-v",
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    let oracle = common::oracle();
    for argv in argvs {
        let parsed =
            Snp::try_parse_from(std::iter::once("x".to_string()).chain(argv.clone())).unwrap();
        let ours = run_snp(&parsed.args).unwrap();
        if let Some(o) = &oracle {
            assert_eq!(ours, common::run_oracle(o, &argv).unwrap(), "{argv:?}");
        } else {
            assert!(ours.len() >= 64, "{ours}");
        }
    }
    // Flags sev-snp-measure rejects are rejected here too.
    assert!(Snp::try_parse_from(["x", "--vcpus", "1", "--ovmf", &amd, "--initrd", &r]).is_err());
    let bad = Snp::try_parse_from([
        "x",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-Nope",
        "--ovmf",
        &amd,
    ])
    .unwrap();
    assert!(
        run_snp(&bad.args)
            .unwrap_err()
            .to_string()
            .contains("EPYC-Nope")
    );
    let refs = Snp::try_parse_from([
        "x",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
        "--ovmf",
        &amd,
        "--reference-values",
        "kbs",
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&run_snp(&refs.args).unwrap()).unwrap();
    assert_eq!(v["snp_launch_measurement"][0].as_str().unwrap().len(), 96);
}

#[test]
fn tdx_replay_against_unrelated_quote_fails_and_report_has_registers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Vec::new();
    use std::io::Read as _;
    flate2::read::GzDecoder::new(std::fs::File::open(data("trustee_CCEL_data_ovmf.gz")).unwrap())
        .read_to_end(&mut log)
        .unwrap();
    let lp = dir.path().join("ccel.bin");
    std::fs::write(&lp, log).unwrap();
    let lp = lp.display().to_string();
    let t = Tdx::try_parse_from([
        "x",
        "--event-log",
        &lp,
        "--firmware",
        "/usr/share/ovmf/OVMF.fd",
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&run_tdx(&t.args).unwrap()).unwrap();
    assert!(v["rtmrs"][0].as_str().unwrap().starts_with("8566f998"));
    assert_eq!(v["mrtd"].as_str().unwrap().len(), 96);
    let quote = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tdx/v4-uptodate-dcapqvl/quote.bin")
        .display()
        .to_string();
    let quote = quote.as_str();
    {
        let t = Tdx::try_parse_from(["x", "--event-log", &lp, "--quote", quote]).unwrap();
        assert!(
            run_tdx(&t.args)
                .unwrap_err()
                .to_string()
                .contains("mismatch for RTMR0")
        );
    }
}

#[test]
fn diff_from_json_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let amd = data("ovmf_AmdSev_suffix.bin");
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(
        &a,
        format!(r#"{{"ovmf": "{amd}", "vcpus": 2, "vcpu_type": {{"named": "EPYC-Milan"}}}}"#),
    )
    .unwrap();
    std::fs::write(
        &b,
        format!(r#"{{"ovmf": "{amd}", "vcpus": 2, "vcpu_type": {{"named": "EPYC-Genoa"}}}}"#),
    )
    .unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let d = Diff::try_parse_from(["x", &a, &b]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&run_diff(&d.args).unwrap()).unwrap();
    assert_eq!(v["differences"][0]["input"], "vcpu_type");
    assert_eq!(v["differences"][0]["alone_explains_digest"], true);
    // Explain B's digest as an observation against A.
    let d = Diff::try_parse_from(["x", &b, "--observed", "00"]).unwrap();
    assert!(
        run_diff(&d.args)
            .unwrap_err()
            .to_string()
            .contains("48 bytes")
    );
    let digest_a = v["digest_a"].as_str().unwrap().to_string();
    let d = Diff::try_parse_from(["x", &b, "--observed", &digest_a]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&run_diff(&d.args).unwrap()).unwrap();
    assert_eq!(v["explanations"][0]["input"], "vcpu_type");
}
