//! Byte-equality of our SNP launch digest with `sev-snp-measure` (the oracle,
//! run as a subprocess) over a table of firmware images, vCPU counts, vCPU
//! types, direct-boot inputs, guest features and VMM types.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use measured_boot::snp::{SnpInputs, VcpuModel, VmmType};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

#[derive(Clone)]
struct Case {
    inputs: SnpInputs,
    vcpu_arg: Vec<String>,
}

fn case(ovmf: &Path, vcpus: u32, vcpu_type: &str) -> Case {
    Case {
        inputs: SnpInputs::new(ovmf, vcpus, VcpuModel::Named(vcpu_type.into())),
        vcpu_arg: vec!["--vcpu-type".into(), vcpu_type.into()],
    }
}

fn oracle_args(c: &Case) -> Vec<String> {
    let i = &c.inputs;
    let mut a: Vec<String> = vec![
        "--mode".into(),
        "snp".into(),
        "--vcpus".into(),
        i.vcpus.to_string(),
        "--ovmf".into(),
        i.ovmf.display().to_string(),
        "--guest-features".into(),
        format!("{:#x}", i.guest_features),
        "--vmm-type".into(),
        match i.vmm_type {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        }
        .into(),
    ];
    a.extend(c.vcpu_arg.iter().cloned());
    if let Some(k) = &i.kernel {
        a.push("--kernel".into());
        a.push(k.display().to_string());
    }
    if let Some(r) = &i.initrd {
        a.push("--initrd".into());
        a.push(r.display().to_string());
    }
    if let Some(c) = &i.cmdline {
        // `--append=` keeps values that start with '-' an argument value.
        a.push(format!("--append={c}"));
    }
    a
}

/// Runs every case through both implementations (the oracle in parallel threads).
/// Returns how many cases were compared, or `None` when the oracle is missing and skipping is allowed.
fn check_all(cases: Vec<Case>) -> Option<usize> {
    let oracle = oracle()?;
    let n = cases.len();
    let chunks: Vec<Vec<Case>> = cases
        .chunks(n.div_ceil(4).max(1))
        .map(|c| c.to_vec())
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let oracle = oracle.clone();
                s.spawn(move || {
                    for c in chunk {
                        let args = oracle_args(&c);
                        let want = run_oracle(&oracle, &args)
                            .unwrap_or_else(|e| panic!("oracle failed on {args:?}: {e}"));
                        let got = c
                            .inputs
                            .digest()
                            .unwrap_or_else(|e| panic!("ours failed on {args:?}: {e}"));
                        assert_eq!(got.to_hex(), want, "digest differs for {args:?}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    Some(n)
}

struct Inputs {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    initrd: PathBuf,
}

fn gen_inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&kernel, det_bytes(1, 3 * 4096 + 123)).unwrap();
    std::fs::write(&initrd, det_bytes(2, 10_000)).unwrap();
    Inputs {
        _dir: dir,
        kernel,
        initrd,
    }
}

#[test]
fn debian_ovmf_matches_oracle_across_vcpus_and_types() {
    let ovmf = Path::new(DEBIAN_OVMF);
    assert!(
        ovmf.is_file(),
        "{DEBIAN_OVMF} missing: install Debian's `ovmf` package (apt-get install ovmf)"
    );
    let mut cases = Vec::new();
    for vcpus in [1, 2, 4, 8, 13] {
        for t in [
            "EPYC",
            "EPYC-v4",
            "EPYC-Rome",
            "EPYC-Milan",
            "EPYC-Genoa",
            "EPYC-Turin",
        ] {
            if vcpus > 2 && !matches!(t, "EPYC-v4" | "EPYC-Milan") {
                continue;
            }
            cases.push(case(ovmf, vcpus, t));
        }
    }
    // Guest features and the other ways of naming the vCPU.
    let mut c = case(ovmf, 2, "EPYC-Milan");
    c.inputs.guest_features = 0x21;
    cases.push(c);
    let mut c = case(ovmf, 1, "EPYC-Milan");
    c.inputs.vcpu_type = Some(VcpuModel::Signature(0x00a0_0f11));
    c.vcpu_arg = vec!["--vcpu-sig".into(), "0xa00f11".into()];
    cases.push(c);
    let mut c = case(ovmf, 3, "EPYC-Milan");
    c.inputs.vcpu_type = Some(VcpuModel::Family {
        family: 25,
        model: 17,
        stepping: 1,
    });
    c.vcpu_arg = [
        "--vcpu-family",
        "25",
        "--vcpu-model",
        "17",
        "--vcpu-stepping",
        "1",
    ]
    .map(String::from)
    .to_vec();
    cases.push(c);
    for vmm in [VmmType::Ec2, VmmType::Gce] {
        let mut c = case(ovmf, 2, "EPYC-Milan");
        c.inputs.vmm_type = vmm;
        cases.push(c);
    }
    if let Some(n) = check_all(cases) {
        assert_eq!(n, 23);
    }
}

#[test]
fn debian_ovmf_known_digest_from_fixture_readme() {
    // The value recorded in shared/fixtures/measured-boot/README.md (measured there
    // with sev-snp-measure 0.0.13): an independent check of the oracle's own output.
    let d = SnpInputs::new(DEBIAN_OVMF, 1, VcpuModel::Named("EPYC-v4".into()))
        .digest()
        .unwrap();
    assert_eq!(
        d.to_hex(),
        "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3"
    );
}

#[test]
fn amdsev_suffix_direct_boot_matches_oracle() {
    let fw = data("ovmf_AmdSev_suffix.bin");
    let inp = gen_inputs();
    let mut cases = Vec::new();
    for vcpus in [1, 2, 4, 16] {
        for t in ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa"] {
            cases.push(case(&fw, vcpus, t));
            let mut c = case(&fw, vcpus, t);
            c.inputs.kernel = Some(inp.kernel.clone());
            c.inputs.initrd = Some(inp.initrd.clone());
            c.inputs.cmdline = Some("console=ttyS0 root=/dev/vda1 ".into());
            cases.push(c);
        }
    }
    // Kernel only; kernel + cmdline; kernel + initrd; odd cmdlines; guest features.
    for (initrd, cmdline) in [
        (false, None),
        (false, Some("console=hvc0")),
        (true, None),
        (true, Some("")),
        (true, Some("quiet  agent.log=debug \u{e9}")),
    ] {
        let mut c = case(&fw, 2, "EPYC-Milan");
        c.inputs.kernel = Some(inp.kernel.clone());
        c.inputs.initrd = initrd.then(|| inp.initrd.clone());
        c.inputs.cmdline = cmdline.map(String::from);
        cases.push(c);
    }
    for gf in [0x1u64, 0x5, 0x21, 0x41] {
        let mut c = case(&fw, 1, "EPYC-Genoa");
        c.inputs.kernel = Some(inp.kernel.clone());
        c.inputs.guest_features = gf;
        cases.push(c);
    }
    for vmm in [VmmType::Ec2, VmmType::Gce] {
        let mut c = case(&fw, 2, "EPYC-Milan");
        c.inputs.kernel = Some(inp.kernel.clone());
        c.inputs.vmm_type = vmm;
        cases.push(c);
    }
    if let Some(n) = check_all(cases) {
        assert_eq!(n, 35);
    }
}

#[test]
fn ovmfx64_suffix_matches_oracle() {
    let fw = data("ovmf_OvmfX64_suffix.bin");
    let mut cases = Vec::new();
    for vcpus in [1, 2, 5] {
        for t in ["EPYC", "EPYC-Milan-v2", "EPYC-Genoa-v1"] {
            cases.push(case(&fw, vcpus, t));
        }
    }
    if let Some(n) = check_all(cases) {
        assert_eq!(n, 9);
    }
}

#[test]
fn synthetic_firmware_images_match_oracle() {
    // Images made from the metadata format itself: an SVSM CAA section, a
    // hashes table at odd offsets, a larger image, a two-region SEC_MEM.
    let dir = tempfile::tempdir().unwrap();
    let inp = gen_inputs();
    let mut cases = Vec::new();
    let layouts: Vec<(usize, Vec<Section>, u32, Option<u32>)> = vec![
        (
            4,
            amdsev_like_sections(),
            0xffff_f004,
            Some(0x80d000 + 0xc00),
        ),
        (16, amdsev_like_sections(), 0x0080_b004, Some(0x80d000)),
        (
            2,
            vec![
                (0x100000, 0x3000, 1),
                (0x200000, 0x1000, 0x10),
                (0x300000, 0x1000, 2),
            ],
            0xffff_f000,
            Some(0x200000 + 0xf40),
        ),
    ];
    for (i, (pages, sections, eip, htable)) in layouts.into_iter().enumerate() {
        let path = dir.path().join(format!("fw{i}.fd"));
        std::fs::write(
            &path,
            sev_image(pages, &sections, Some(eip), htable, 100 + i as u64),
        )
        .unwrap();
        for vcpus in [1, 3] {
            cases.push(case(&path, vcpus, "EPYC-Milan"));
            let mut c = case(&path, vcpus, "EPYC-Genoa");
            c.inputs.kernel = Some(inp.kernel.clone());
            c.inputs.initrd = Some(inp.initrd.clone());
            c.inputs.cmdline = Some("console=ttyS0".into());
            cases.push(c);
        }
    }
    if let Some(n) = check_all(cases) {
        assert_eq!(n, 12);
    }
}
