//! Reference values round trip: what `cocoon measure snp|tdx --reference-values kbs`
//! prints is what the KBS reads (`attestation::ReferenceValues::from_json`), and
//! `appraise` accepts claims carrying exactly those measurements and refuses, naming the
//! field, claims one byte off.
//!
//! The claims are built from values obtained independently of measured-boot: the SNP
//! launch digest of Debian's OVMF.fd as `sev-snp-measure` computed it, the MRTD of the
//! same file as dstack-mr computed it (measured-boot/tests/data), the RTMRs of trustee's
//! OVMF log as trustee published them, and the initdata digest from coreutils.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use attestation::{AppraisalPolicy, AttestationError, Claims, ReferenceValues, Tee, appraise};

const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";
/// Debian 12 ovmf 2022.11-6+deb12u2.
const DEBIAN_OVMF_SHA256: &str = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";
/// `sev-snp-measure --mode snp --vcpus 1 --vcpu-type EPYC-v4 --ovmf OVMF.fd`
/// (measured-boot/tests/data/README.md).
const SNP_DIGEST: &str = "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3";
/// dstack-mr's MRTD of the same firmware (measured-boot/tests/data/tdx_cross_impl.json).
const TDX_MRTD: &str = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47";
/// RTMR0..3 of trustee's `CCEL_data_ovmf` (trustee's `test_rtmr_integrity`).
const OVMF_LOG_RTMRS: [&str; 4] = [
    "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
    "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
    "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
];

fn tool_hex(tool: &str, file: &Path) -> String {
    let out = Command::new(tool).arg(file).output().unwrap();
    assert!(out.status.success(), "{tool} {}", file.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The Debian firmware the literal values belong to, or `None` (with a note) when it is
/// absent and skipping is allowed.
fn debian_ovmf() -> Option<&'static str> {
    let present = Path::new(DEBIAN_OVMF).is_file()
        && tool_hex("sha256sum", Path::new(DEBIAN_OVMF)) == DEBIAN_OVMF_SHA256;
    if present {
        return Some(DEBIAN_OVMF);
    }
    if std::env::var_os("COCOON_ALLOW_SKIP_ORACLE").is_some() {
        eprintln!("SKIP: {DEBIAN_OVMF} is not Debian 12's ovmf 2022.11-6+deb12u2");
        return None;
    }
    panic!(
        "{DEBIAN_OVMF} must be Debian 12's ovmf 2022.11-6+deb12u2 (sha256 {DEBIAN_OVMF_SHA256})"
    );
}

fn cocoon_measure(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .arg("measure")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cocoon measure {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn initdata(dir: &Path, algorithm: &str) -> PathBuf {
    let p = dir.join(format!("initdata-{algorithm}.toml"));
    std::fs::write(
        &p,
        format!(
            "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"http://10.0.2.2:8080\"\n'''\n"
        ),
    )
    .unwrap();
    p
}

fn unhex(h: &str) -> Vec<u8> {
    assert!(h.len().is_multiple_of(2) && h.is_ascii(), "{h:?}");
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn claims(tee: Tee, measurement: &str, rtmrs: &[&str], init_data: Vec<u8>) -> Claims {
    Claims {
        tee,
        measurement: Some(unhex(measurement)),
        rtmrs: rtmrs.iter().map(|s| s.to_string()).collect(),
        init_data: Some(init_data),
        report_data: vec![0; 64],
        tcb_status: "UpToDate".into(),
        advisory_ids: Vec::new(),
        debug: false,
        platform_id: None,
        fields: Default::default(),
    }
}

fn strict() -> AppraisalPolicy {
    AppraisalPolicy {
        require_all: true,
        ..Default::default()
    }
}

/// Appraisal must fail with exactly `fields` mismatching, each named in the message.
fn assert_refused(claims: &Claims, refs: &ReferenceValues, fields: &[&str]) {
    match appraise(claims, refs, &strict()) {
        Err(e @ AttestationError::Appraisal(_)) => {
            let msg = e.to_string();
            let AttestationError::Appraisal(ms) = e else {
                unreachable!()
            };
            let got: Vec<&str> = ms.iter().map(|m| m.field.as_str()).collect();
            assert_eq!(got, fields, "{msg}");
            for f in fields {
                assert!(msg.contains(f), "{msg}");
            }
        }
        other => panic!("claims off by one byte in {fields:?} accepted: {other:?}"),
    }
}

fn flip_first(v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    v[0] ^= 1;
    v
}

fn flip_hex(h: &str) -> String {
    to_hex(&flip_first(&unhex(h)))
}

#[test]
fn snp_kbs_reference_values_round_trip_into_appraisal() {
    let Some(ovmf) = debian_ovmf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let init = initdata(dir.path(), "sha256");
    let out = cocoon_measure(&[
        "snp",
        "--mode",
        "snp",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--ovmf",
        ovmf,
        "--initdata",
        init.to_str().unwrap(),
        "--reference-values",
        "kbs",
    ]);
    let refs = ReferenceValues::from_json(out.as_bytes()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        refs.0["snp_launch_measurement"],
        vec![SNP_DIGEST.to_string()]
    );

    // HOST_DATA as QEMU's host-data carries it: the sha256 initdata digest, 32 bytes.
    let host_data = unhex(&tool_hex("sha256sum", &init));
    let good = claims(Tee::Snp, SNP_DIGEST, &[], host_data.clone());
    let a = appraise(&good, &refs, &strict()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.matched,
        ["snp_launch_measurement", "snp_host_data", "init_data"]
    );
    assert!(a.unchecked.is_empty(), "{a:?}");

    let mut bad = good.clone();
    bad.measurement = Some(flip_first(&unhex(SNP_DIGEST)));
    assert_refused(&bad, &refs, &["snp_launch_measurement"]);
    let mut bad = good.clone();
    bad.init_data = Some(flip_first(&host_data));
    assert_refused(&bad, &refs, &["snp_host_data", "init_data"]);
}

#[test]
fn tdx_kbs_reference_values_round_trip_into_appraisal() {
    let Some(ovmf) = debian_ovmf() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let init = initdata(dir.path(), "sha384");
    let gz = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../measured-boot/tests/data/trustee_CCEL_data_ovmf.gz");
    let log = dir.path().join("ccel.bin");
    let raw = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert!(raw.status.success());
    std::fs::write(&log, raw.stdout).unwrap();
    let out = cocoon_measure(&[
        "tdx",
        "--firmware",
        ovmf,
        "--event-log",
        log.to_str().unwrap(),
        "--initdata",
        init.to_str().unwrap(),
        "--reference-values",
        "kbs",
    ]);
    let refs = ReferenceValues::from_json(out.as_bytes()).unwrap_or_else(|e| panic!("{e}: {out}"));

    // MRCONFIGID as QEMU's mrconfigid carries it: the sha384 initdata digest, 48 bytes.
    let mrconfigid = unhex(&tool_hex("sha384sum", &init));
    let good = claims(Tee::Tdx, TDX_MRTD, &OVMF_LOG_RTMRS, mrconfigid.clone());
    let a = appraise(&good, &refs, &strict()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        a.matched,
        [
            "tdx_mrtd",
            "tdx_mrconfigid",
            "tdx_rtmr0",
            "tdx_rtmr1",
            "tdx_rtmr2",
            "tdx_rtmr3",
            "init_data"
        ]
    );

    let mut bad = good.clone();
    bad.measurement = Some(flip_first(&unhex(TDX_MRTD)));
    assert_refused(&bad, &refs, &["tdx_mrtd"]);
    for (i, rtmr) in OVMF_LOG_RTMRS.iter().enumerate() {
        let mut bad = good.clone();
        bad.rtmrs[i] = flip_hex(rtmr);
        assert_refused(&bad, &refs, &[format!("tdx_rtmr{i}").as_str()]);
    }
    let mut bad = good.clone();
    bad.init_data = Some(flip_first(&mrconfigid));
    assert_refused(&bad, &refs, &["tdx_mrconfigid", "init_data"]);
}
