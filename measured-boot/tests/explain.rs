//! `explain::diff` and `explain::explain_observed` on real firmware fixtures,
//! with every digest they report cross-checked against `sev-snp-measure`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use measured_boot::explain::{MeasurementInputs, diff, explain_observed};
use measured_boot::snp::{SnpInputs, VcpuModel};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovmf_AmdSev_suffix.bin")
}

fn base(dir: &Path) -> SnpInputs {
    let k = dir.join("vmlinuz");
    let r = dir.join("initrd");
    std::fs::write(&k, common::det_bytes(3, 9000)).unwrap();
    std::fs::write(&r, common::det_bytes(4, 7000)).unwrap();
    let mut i = SnpInputs::new(fixture(), 2, VcpuModel::Named("EPYC-Milan".into()));
    i.kernel = Some(k);
    i.initrd = Some(r);
    i.cmdline = Some("console=hvc0 agent.log=debug".into());
    i
}

fn oracle_digest(i: &SnpInputs) -> Option<String> {
    let o = common::oracle()?;
    let mut a = vec![
        "--mode".to_string(),
        "snp".into(),
        "--vcpus".into(),
        i.vcpus.to_string(),
        "--ovmf".into(),
        i.ovmf.display().to_string(),
        "--kernel".into(),
        i.kernel.as_ref().unwrap().display().to_string(),
    ];
    match i.vcpu_type.as_ref().unwrap() {
        VcpuModel::Named(n) => a.extend(["--vcpu-type".into(), n.clone()]),
        other => panic!("{other:?}"),
    }
    if let Some(r) = &i.initrd {
        a.extend(["--initrd".into(), r.display().to_string()]);
    }
    if let Some(c) = &i.cmdline {
        a.push(format!("--append={c}"));
    }
    Some(common::run_oracle(&o, &a).unwrap())
}

#[test]
fn diff_names_the_changed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let a = base(dir.path());
    let mut b = a.clone();
    b.vcpus = 4;
    let init = dir.path().join("initdata.toml");
    std::fs::write(
        &init,
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n",
    )
    .unwrap();
    let ma = MeasurementInputs {
        snp: a.clone(),
        initdata: None,
    };
    let mb = MeasurementInputs {
        snp: b.clone(),
        initdata: Some(init),
    };
    let r = diff(&ma, &mb).unwrap();
    assert_ne!(r.digest_a, r.digest_b);
    if let (Some(wa), Some(wb)) = (oracle_digest(&a), oracle_digest(&b)) {
        assert_eq!(r.digest_a, wa);
        assert_eq!(r.digest_b, wb);
    }
    let names: Vec<_> = r.differences.iter().map(|d| d.input).collect();
    assert_eq!(names, ["vcpus", "initdata"]);
    assert!(r.differences[0].alone_explains_digest);
    assert!(!r.differences[1].alone_explains_digest);
    assert_eq!(r.host_data_a, None);
    assert_eq!(r.host_data_b.as_ref().unwrap().len(), 64);

    // Two changes: neither alone explains the digest; each single-change digest is
    // what sev-snp-measure gives for that single change.
    let mut c = a.clone();
    c.cmdline = Some("console=hvc0".into());
    c.vcpu_type = Some(VcpuModel::Named("EPYC-Genoa".into()));
    let r = diff(
        &ma,
        &MeasurementInputs {
            snp: c,
            initdata: None,
        },
    )
    .unwrap();
    let names: Vec<_> = r.differences.iter().map(|d| d.input).collect();
    assert_eq!(names, ["cmdline", "vcpu_type"]);
    assert!(r.differences.iter().all(|d| !d.alone_explains_digest));
    let mut only_cmdline = a.clone();
    only_cmdline.cmdline = Some("console=hvc0".into());
    if let Some(want) = oracle_digest(&only_cmdline) {
        assert_eq!(
            r.differences[0].digest_with_only_this_change.as_deref(),
            Some(want.as_str())
        );
    }
}

#[test]
fn observed_digest_is_explained_by_single_changes() {
    let dir = tempfile::tempdir().unwrap();
    let expected = base(dir.path());
    type Change = Box<dyn Fn(&mut SnpInputs)>;
    let cases: Vec<(&str, Change)> = vec![
        ("vcpus", Box::new(|i| i.vcpus = 6)),
        (
            "vcpu_type",
            Box::new(|i| i.vcpu_type = Some(VcpuModel::Named("EPYC-Genoa".into()))),
        ),
        (
            "cmdline",
            Box::new(|i| i.cmdline = Some("console=hvc0 agent.log=debug ".into())),
        ),
        (
            "cmdline",
            Box::new(|i| i.cmdline = Some("agent.log=debug".into())),
        ),
        ("initrd", Box::new(|i| i.initrd = None)),
    ];
    for (input, change) in cases {
        let mut actual = expected.clone();
        change(&mut actual);
        let observed_hex =
            oracle_digest(&actual).unwrap_or_else(|| actual.digest().unwrap().to_hex());
        let observed: [u8; 48] = hex::decode(&observed_hex).unwrap().try_into().unwrap();
        let r = explain_observed(&expected, &observed, 8).unwrap();
        assert!(!r.matches_expected);
        assert!(
            r.explanations.iter().any(|e| e.input == input),
            "{input}: {:?}",
            r.explanations
        );
    }
    // A digest nothing explains.
    let r = explain_observed(&expected, &[7u8; 48], 8).unwrap();
    assert!(r.explanations.is_empty());
    assert!(r.variants_tried > 20, "{}", r.variants_tried);
}
