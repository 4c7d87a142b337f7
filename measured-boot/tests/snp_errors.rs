//! Malformed firmware and bad inputs give clear typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use measured_boot::MeasureError;
use measured_boot::snp::{SnpInputs, VcpuModel};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn firmware_error(dir: &Path, img: &[u8]) -> String {
    let p = write(dir, "fw.fd", img);
    match SnpInputs::new(&p, 1, VcpuModel::Named("EPYC-Milan".into())).digest() {
        Err(MeasureError::Firmware(m)) => m,
        other => panic!("expected a firmware error, got {other:?}"),
    }
}

#[test]
fn malformed_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = sev_image(
        4,
        &amdsev_like_sections(),
        Some(0xffff_f004),
        Some(0x80d000),
        5,
    );
    // Sanity: the good image measures.
    SnpInputs::new(
        write(d, "ok.fd", &good),
        2,
        VcpuModel::Named("EPYC-Milan".into()),
    )
    .digest()
    .unwrap();

    // An empty file (the mapped path reads nothing) and a missing one.
    let e = firmware_error(d, b"");
    assert!(e.contains("non-zero multiple of 4096"), "{e}");
    let missing = d.join("no-such.fd");
    let e = SnpInputs::new(&missing, 1, VcpuModel::Named("EPYC-Milan".into()))
        .digest()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such.fd"), "{e}");
    // No footer table at all.
    let e = firmware_error(d, &det_bytes(9, 8192));
    assert!(e.contains("no OVMF footer GUID table"), "{e}");
    // Not a multiple of the page size.
    let e = firmware_error(d, &good[..good.len() - 100]);
    assert!(e.contains("multiple of 4096"), "{e}");
    // Truncated metadata: the header claims more sections than its size holds.
    let mut bad = good.clone();
    let meta = bad.len() - 0x800;
    assert_eq!(&bad[meta..meta + 4], b"ASEV");
    bad[meta + 12] = 200;
    let e = firmware_error(d, &bad);
    assert!(e.contains("truncated SEV metadata"), "{e}");
    // Wrong metadata signature.
    let mut bad = good.clone();
    bad[meta] = b'X';
    let e = firmware_error(d, &bad);
    assert!(e.contains("SEV metadata signature"), "{e}");
    // Overlapping sections.
    let mut secs = amdsev_like_sections();
    secs.push((0x801000, 0x1000, 1));
    let e = firmware_error(d, &sev_image(4, &secs, Some(0xffff_f004), None, 5));
    assert!(e.contains("overlaps"), "{e}");
    // Unknown section type.
    let mut secs = amdsev_like_sections();
    secs[1].2 = 0x77;
    let e = firmware_error(d, &sev_image(4, &secs, Some(0xffff_f004), None, 5));
    assert!(e.contains("unknown type 0x77"), "{e}");
    // Unaligned section.
    let mut secs = amdsev_like_sections();
    secs[0].1 = 0x1234;
    let e = firmware_error(d, &sev_image(4, &secs, Some(0xffff_f004), None, 5));
    assert!(e.contains("not page aligned"), "{e}");
    // No SEV-ES reset block.
    let e = firmware_error(d, &sev_image(4, &amdsev_like_sections(), None, None, 5));
    assert!(e.contains("SEV-ES reset block"), "{e}");
}

#[test]
fn kernel_needs_hashes_section_and_must_not_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kernel = write(d, "k", &det_bytes(1, 5000));
    let empty = write(d, "empty", b"");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");

    // OvmfX64 has no SNP_KERNEL_HASHES section: direct boot cannot be measured.
    let mut i = SnpInputs::new(
        fixtures.join("ovmf_OvmfX64_suffix.bin"),
        1,
        VcpuModel::Named("EPYC-Milan".into()),
    );
    i.kernel = Some(kernel.clone());
    let e = i.digest().unwrap_err().to_string();
    assert!(e.contains("SNP_KERNEL_HASHES"), "{e}");

    let mut i = SnpInputs::new(
        fixtures.join("ovmf_AmdSev_suffix.bin"),
        1,
        VcpuModel::Named("EPYC-Milan".into()),
    );
    i.kernel = Some(empty);
    assert!(matches!(i.digest(), Err(MeasureError::InvalidInput(m)) if m.contains("is empty")));
    i.kernel = None;
    i.cmdline = Some("console=ttyS0".into());
    assert!(
        matches!(i.digest(), Err(MeasureError::InvalidInput(m)) if m.contains("needs a kernel"))
    );
    i.cmdline = None;
    i.kernel = Some(d.join("missing"));
    assert!(matches!(
        i.digest(),
        Err(MeasureError::Io { what: "kernel", .. })
    ));
}

#[test]
fn unknown_vcpu_type_and_bad_counts() {
    let fw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovmf_AmdSev_suffix.bin");
    let e = SnpInputs::new(&fw, 1, VcpuModel::Named("EPYC-Bogus".into()))
        .digest()
        .unwrap_err();
    assert!(matches!(&e, MeasureError::UnknownVcpuType { name, .. } if name == "EPYC-Bogus"));
    assert!(e.to_string().contains("EPYC-Genoa"), "{e}");
    let e = SnpInputs::new(&fw, 0, VcpuModel::Named("EPYC".into()))
        .digest()
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let mut i = SnpInputs::new(&fw, 1, VcpuModel::Named("EPYC".into()));
    i.vcpu_type = None;
    assert!(i.digest().unwrap_err().to_string().contains("vCPU type"));
}
