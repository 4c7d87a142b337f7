//! TDX measurements cross-checked against an independent implementation.
//!
//! The expected values in `tests/data/tdx_cross_impl.json` were computed by dstack-mr
//! (Dstack-TEE/dstack, commit 312dc605, an Apache-2.0 Rust implementation written
//! independently of ours), run outside this repository on the same inputs: Debian 12's
//! `ovmf` OVMF.fd (a TDVF build, pinned by sha256) for MRTD in both PAGE.ADD orders, and a
//! deterministic synthetic EFI-stub kernel, initrd and command line (generated below) for
//! RTMR1 (kernel patched by QEMU's loader, as older OVMF measured it) and RTMR2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use measured_boot::tdx::mrtd::{PageAddOrder, Tdvf};
use measured_boot::tdx::rtmr::{DirectBootDigests, KernelLoad, Rtmr1Layout};
use sha2::Digest as _;
use std::path::Path;

fn vectors() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tdx_cross_impl.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A PE32+ EFI application that also carries a Linux boot-protocol setup header
/// ("HdrS", protocol 2.15) at 0x1f1, as a bzImage with an EFI stub does.
fn synthetic_bzimage() -> Vec<u8> {
    let mut img = common::pe_image(&common::PeLayout {
        seed: 11,
        len: 0x1800,
        zero_to: 0x1f1,
        size_of_code: 0x1000,
        size_of_image: 0x4000,
        size_of_headers: 0x400,
        checksum: 0,
        sections: vec![
            (*b".setup\0\0", 0x1000, 0x400, 0x1000),
            (*b".text\0\0\0", 0x2000, 0x1400, 0x400),
        ],
    });
    let put16 =
        |img: &mut Vec<u8>, at: usize, v: u16| img[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    // Linux setup header (boot protocol 2.15), the fields QEMU's loader reads.
    img[0x1f1] = 1; // setup_sects
    img[0x202..0x206].copy_from_slice(b"HdrS");
    put16(&mut img, 0x206, 0x020f);
    img[0x211] = 0x01; // loadflags: LOADED_HIGH
    put32(&mut img, 0x22c, 0x7fff_ffff); // initrd_addr_max
    put32(&mut img, 0x238, 0x800); // cmdline_size
    // xloadflags as current x86-64 kernels set them (incl. XLF_CAN_BE_LOADED_ABOVE_4G).
    put16(&mut img, 0x236, 0x007f);
    img
}

fn synthetic_initrd() -> Vec<u8> {
    common::det_bytes(12, 0x3000)
}

#[test]
fn mrtd_of_debian_ovmf_matches_dstack_mr() {
    let v = vectors();
    let want = &v["mrtd"];
    let path = Path::new(want["firmware"].as_str().unwrap());
    let Ok(bytes) = std::fs::read(path) else {
        panic!(
            "{} is missing: install Debian's ovmf package (scripts/setup.sh does)",
            path.display()
        );
    };
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    if sha != want["sha256"].as_str().unwrap() {
        // A different Debian ovmf build: its MRTD must be re-recorded with the
        // independent tool; the vector cannot speak for it.
        eprintln!(
            "note: {} has sha256 {sha}, not the recorded build ({}); MRTD cross-check skipped",
            path.display(),
            want["package"]
        );
        return;
    }
    let tdvf = Tdvf::parse(bytes).unwrap();
    assert_eq!(
        hex::encode(tdvf.mrtd(PageAddOrder::SinglePass)),
        want["single_pass"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(tdvf.mrtd(PageAddOrder::TwoPass)),
        want["two_pass"].as_str().unwrap()
    );
}

#[test]
fn rtmr1_and_rtmr2_of_a_direct_boot_match_dstack_mr() {
    let v = vectors();
    let kernel = synthetic_bzimage();
    let initrd = synthetic_initrd();
    // The generated inputs are the ones the vectors were computed from.
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&kernel)),
        v["direct_boot"]["kernel_sha256"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&initrd)),
        v["direct_boot"]["initrd_sha256"].as_str().unwrap()
    );
    let cmdline = v["direct_boot"]["append"].as_str().unwrap();
    for case in v["direct_boot"]["cases"].as_array().unwrap() {
        let memory_bytes = case["memory_bytes"].as_u64().unwrap();
        let d = DirectBootDigests::compute(
            &kernel,
            Some(&initrd),
            Some(cmdline),
            KernelLoad::QemuPatched {
                memory_bytes,
                acpi_data_size: 0x28000,
            },
        )
        .unwrap();
        assert_eq!(
            hex::encode(d.rtmr1(Rtmr1Layout::Ovmf)),
            case["rtmr1"].as_str().unwrap(),
            "RTMR1 at {memory_bytes} bytes of guest memory"
        );
        assert_eq!(hex::encode(d.rtmr2()), case["rtmr2"].as_str().unwrap());
    }
}

/// Writes the synthetic inputs where the independent tool can read them
/// (`COCOON_WRITE_CROSS_IMPL_INPUTS=<dir>`); a no-op otherwise.
#[test]
fn write_inputs_for_the_independent_tool() {
    if let Some(dir) = std::env::var_os("COCOON_WRITE_CROSS_IMPL_INPUTS") {
        let dir = Path::new(&dir);
        std::fs::write(dir.join("kernel"), synthetic_bzimage()).unwrap();
        std::fs::write(dir.join("initrd"), synthetic_initrd()).unwrap();
    }
}
