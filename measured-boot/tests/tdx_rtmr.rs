//! RTMR1/RTMR2 prediction for OVMF direct boot, checked against real CCEL logs, and the
//! kernel's Authenticode digest checked against `osslsigncode` (the oracle).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use measured_boot::tdx::eventlog::{Event, EventLog, event_type};
use measured_boot::tdx::pe::{authenticode_digest, authenticode_sha384};
use measured_boot::tdx::rtmr::{
    CALLING_EFI_APPLICATION, DirectBootDigests, EXIT_BOOT_SERVICES_INVOCATION,
    EXIT_BOOT_SERVICES_SUCCESS, KernelLoad, Rtmr1Layout, SEPARATOR, ovmf_load_options, sha384,
};

fn log(name: &str) -> EventLog {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    EventLog::parse(&out).unwrap()
}

fn d48(e: &Event) -> [u8; 48] {
    e.sha384().unwrap().try_into().unwrap()
}

fn tagged<'a>(log: &'a EventLog, tag: &[u8]) -> &'a Event {
    log.events
        .iter()
        .find(|e| {
            e.event_type == event_type::EV_EVENT_TAG && e.data.windows(tag.len()).any(|w| w == tag)
        })
        .unwrap()
}

/// The OVMF direct-boot log of trustee's test data: with the kernel, load-options and
/// initrd digests the log records, the predicted RTMR1 (2022 TDVF layout) and RTMR2
/// equal the replayed registers; the current-edk2 layout (with a separator) does not.
#[test]
fn prediction_matches_real_ovmf_direct_boot_log() {
    let log = log("trustee_CCEL_data_ovmf.gz");
    let replayed = log.replay().unwrap();
    let kernel = log
        .events
        .iter()
        .find(|e| e.event_type == event_type::EV_EFI_BOOT_SERVICES_APPLICATION)
        .unwrap();
    let digests = DirectBootDigests {
        kernel: d48(kernel),
        load_options: Some(d48(tagged(&log, b"LOADED_IMAGE::LoadOptions"))),
        initrd: Some(d48(tagged(&log, b"Linux initrd"))),
    };
    assert_eq!(digests.rtmr1(Rtmr1Layout::TdvfLegacy), replayed[1]);
    assert_eq!(digests.rtmr2(), replayed[2]);
    assert_ne!(digests.rtmr1(Rtmr1Layout::Ovmf), replayed[1]);
    // A different initrd or command line changes the prediction.
    let mut other = digests;
    other.initrd = Some(sha384(b"another initrd"));
    assert_ne!(other.rtmr2(), replayed[2]);
    other.initrd = None;
    assert_ne!(other.rtmr2(), replayed[2]);
}

/// Current edk2 builds (GKE, COS on GCE): after "Calling EFI Application from Boot
/// Option" comes a separator in RTMR1, and the fixed events carry exactly the digests
/// the predictor uses.
#[test]
fn fixed_rtmr1_events_match_current_edk2_logs() {
    for name in [
        "trustee_CCEL_data_grub_gke.gz",
        "goeventlog_cos-113-intel-tdx.bin.gz",
    ] {
        let log = log(name);
        let rtmr1: Vec<&Event> = log.events.iter().filter(|e| e.mr_index == 2).collect();
        assert_eq!(rtmr1[0].data, CALLING_EFI_APPLICATION, "{name}");
        assert_eq!(d48(rtmr1[0]), sha384(CALLING_EFI_APPLICATION), "{name}");
        assert_eq!(rtmr1[1].event_type, event_type::EV_SEPARATOR, "{name}");
        assert_eq!(d48(rtmr1[1]), sha384(&SEPARATOR), "{name}");
        let n = rtmr1.len();
        assert_eq!(
            d48(rtmr1[n - 2]),
            sha384(EXIT_BOOT_SERVICES_INVOCATION),
            "{name}"
        );
        assert_eq!(
            d48(rtmr1[n - 1]),
            sha384(EXIT_BOOT_SERVICES_SUCCESS),
            "{name}"
        );
    }
}

fn osslsigncode() -> Option<PathBuf> {
    ["/usr/bin/osslsigncode", "/usr/local/bin/osslsigncode"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn require_osslsigncode() -> Option<PathBuf> {
    match osslsigncode() {
        Some(p) => Some(p),
        None if std::env::var_os("COCOON_ALLOW_SKIP_ORACLE").is_some() => {
            eprintln!("SKIP: osslsigncode missing (apt-get install osslsigncode)");
            None
        }
        None => panic!("osslsigncode is the Authenticode oracle: apt-get install osslsigncode"),
    }
}

/// "Calculated message digest" as `osslsigncode verify` prints it.
fn oracle_digest(tool: &Path, file: &Path) -> String {
    let out = Command::new(tool)
        .args(["verify", "-in"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Calculated message digest"))
        .map(|l| l.trim_start_matches([' ', ':']).trim().to_lowercase())
        .unwrap_or_else(|| panic!("no digest from osslsigncode: {text}"))
}

/// Signs `input` with a throw-away key, SHA-384, into `output`.
fn sign_sha384(tool: &Path, dir: &Path, input: &Path, output: &Path) {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    if !cert.exists() {
        let st = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=cocoon-test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let st = Command::new(tool)
        .args(["sign", "-h", "sha384", "-certs"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-in")
        .arg(input)
        .arg("-out")
        .arg(output)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

/// A small PE32+ EFI application: two sections listed out of file order, data after
/// the last section.
fn synthetic_pe() -> Vec<u8> {
    common::pe_image(&common::PeLayout {
        seed: 7,
        len: 0x900,
        zero_to: 0x200,
        size_of_code: 0x400,
        size_of_image: 0x3000,
        size_of_headers: 0x200,
        checksum: 0x1234_5678,
        sections: vec![
            (*b".data\0\0\0", 0x2000, 0x600, 0x200),
            (*b".text\0\0\0", 0x1000, 0x200, 0x400),
        ],
    })
}

#[test]
fn authenticode_sha384_matches_osslsigncode_on_synthetic_pe() {
    let Some(tool) = require_osslsigncode() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("app.efi");
    let signed = dir.path().join("app.signed.efi");
    let img = synthetic_pe();
    std::fs::write(&plain, &img).unwrap();
    sign_sha384(&tool, dir.path(), &plain, &signed);
    let want = oracle_digest(&tool, &signed);
    let signed_bytes = std::fs::read(&signed).unwrap();
    assert_eq!(
        hex::encode(authenticode_sha384(&signed_bytes).unwrap()),
        want
    );
    // The image is 8-byte aligned, so the unsigned file has the same digest.
    assert_eq!(hex::encode(authenticode_sha384(&img).unwrap()), want);
    // The CheckSum field is not covered, one byte of a section is.
    let mut other = img.clone();
    other[0x84 + 20 + 64] ^= 0xff;
    assert_eq!(hex::encode(authenticode_sha384(&other).unwrap()), want);
    other[0x700] ^= 1;
    assert_ne!(hex::encode(authenticode_sha384(&other).unwrap()), want);
}

/// Real kernels: a Debian-signed kernel (its SHA-256 signature) and, re-signed with
/// SHA-384, the same kernel; the guest kernel when one was built.
#[test]
fn authenticode_matches_osslsigncode_on_real_kernels() {
    let Some(tool) = require_osslsigncode() else {
        return;
    };
    let mut kernels: Vec<PathBuf> = Vec::new();
    if let Some(k) = std::env::var_os("COCOON_TEST_KERNEL") {
        kernels.push(k.into());
    }
    for dir in ["/var/cache/cocoon/kernels"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            for k in std::fs::read_dir(e.path().join("boot"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if k.file_name().to_string_lossy().starts_with("vmlinuz") {
                    kernels.push(k.path());
                }
            }
        }
    }
    if kernels.is_empty() {
        eprintln!(
            "note: no real kernel found (set COCOON_TEST_KERNEL or build the guest); \
             the synthetic-PE test still ran"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for k in kernels.iter().take(2) {
        let bytes = std::fs::read(k).unwrap();
        let out = Command::new(&tool)
            .args(["verify", "-in"])
            .arg(k)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("Message digest algorithm  : SHA256") {
            let want = oracle_digest(&tool, k);
            let ours = authenticode_digest::<sha2::Sha256>(&bytes).unwrap();
            assert_eq!(hex::encode(ours), want, "{}", k.display());
        }
        let signed = dir.path().join("k.signed");
        let _ = std::fs::remove_file(&signed);
        let plain = dir.path().join("k.plain");
        let st = Command::new(&tool)
            .args(["remove-signature", "-in"])
            .arg(k)
            .arg("-out")
            .arg(&plain)
            .output()
            .unwrap();
        if !st.status.success() {
            std::fs::copy(k, &plain).unwrap();
        }
        sign_sha384(&tool, dir.path(), &plain, &signed);
        let want = oracle_digest(&tool, &signed);
        let ours = authenticode_sha384(&std::fs::read(&signed).unwrap()).unwrap();
        assert_eq!(hex::encode(ours), want, "{}", k.display());
        // The whole prediction path uses the same kernel digest.
        let d = DirectBootDigests::compute(
            &std::fs::read(&signed).unwrap(),
            Some(b"initrd bytes"),
            Some("console=hvc0"),
            KernelLoad::AsIs,
        )
        .unwrap();
        assert_eq!(hex::encode(d.kernel), want);
        assert_eq!(
            d.load_options,
            Some(sha384(&ovmf_load_options(Some("console=hvc0"), true)))
        );
    }
}

#[test]
fn qemu_patched_kernel_changes_only_boot_header_fields() {
    let Some(k) = std::env::var_os("COCOON_TEST_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            std::fs::read_dir("/var/cache/cocoon/kernels")
                .ok()?
                .flatten()
                .flat_map(|e| {
                    std::fs::read_dir(e.path().join("boot"))
                        .into_iter()
                        .flatten()
                        .flatten()
                })
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
                })
        })
    else {
        eprintln!("note: no real kernel found; skipping the header-patch check");
        return;
    };
    let kernel = std::fs::read(k).unwrap();
    let patched =
        measured_boot::tdx::rtmr::qemu_patched_kernel(&kernel, 1 << 20, 2 << 30, 0x28000).unwrap();
    let changed: Vec<usize> = (0..kernel.len())
        .filter(|&i| kernel[i] != patched[i])
        .collect();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|&i| (0x210..0x230).contains(&i)),
        "{changed:x?}"
    );
    // initrd size field
    assert_eq!(&patched[0x21c..0x220], &(1u32 << 20).to_le_bytes());
    let a =
        DirectBootDigests::compute(&kernel, Some(&[1; 1 << 20]), None, KernelLoad::AsIs).unwrap();
    let b = DirectBootDigests::compute(
        &kernel,
        Some(&[1; 1 << 20]),
        None,
        KernelLoad::QemuPatched {
            memory_bytes: 2 << 30,
            acpi_data_size: 0x28000,
        },
    )
    .unwrap();
    assert_ne!(a.kernel, b.kernel);
    assert_eq!(a.initrd, b.initrd);
}

#[test]
fn empty_or_non_pe_kernel_is_a_clear_error() {
    let e = DirectBootDigests::compute(b"", None, None, KernelLoad::AsIs).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    let e = DirectBootDigests::compute(&[0u8; 8192], None, None, KernelLoad::AsIs).unwrap_err();
    assert!(e.to_string().contains("MZ"), "{e}");
}

/// MRTD golden vectors from published data (tests/data/tdx_mrtd_golden.json): the firmware
/// is used when present (matched by sha256); the record itself is always checked.
#[test]
fn mrtd_golden_vectors_from_published_firmware() {
    use sha2::Digest as _;
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tdx_mrtd_golden.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    let mut dirs: Vec<PathBuf> = vec![
        "/usr/share/ovmf".into(),
        "/usr/share/edk2/ovmf".into(),
        "/opt/cocoon/share/firmware".into(),
    ];
    if let Some(d) = std::env::var_os("COCOON_TDVF_DIR") {
        dirs.insert(0, d.into());
    }
    let candidates: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "fd" || x == "bin"))
        .collect();
    let mut checked = 0;
    for v in vectors {
        let sha = v["sha256"].as_str().unwrap();
        let mrtd = v["mrtd"].as_str().unwrap();
        assert_eq!((sha.len(), mrtd.len()), (64, 96), "{v}");
        for c in &candidates {
            let bytes = std::fs::read(c).unwrap();
            if hex::encode(sha2::Sha256::digest(&bytes)) != sha {
                continue;
            }
            let got = measured_boot::tdx::mrtd::Tdvf::parse(bytes)
                .unwrap()
                .mrtd(measured_boot::tdx::mrtd::PageAddOrder::SinglePass);
            assert_eq!(hex::encode(got), mrtd, "{}", c.display());
            checked += 1;
        }
    }
    if checked == 0 {
        eprintln!(
            "note: none of the golden TDVF images is present (see tests/data/tdx_mrtd_golden.json; \
             put them in $COCOON_TDVF_DIR); only the record was checked"
        );
    }
}
