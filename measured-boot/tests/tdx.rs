//! TDX: CCEL replay against published RTMR values (trustee, go-eventlog), boot
//! component extraction, tamper detection, quote register extraction against the
//! shared fixtures, and MRTD derived from the TDVF format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use measured_boot::MeasureError;
use measured_boot::tdx::eventlog::{EventLog, event_type};
use measured_boot::tdx::mrtd::{PageAddOrder, Tdvf};
use measured_boot::tdx::quote::QuoteMeasurements;

fn gz_data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn rtmrs(hexes: [&str; 4]) -> [[u8; 48]; 4] {
    hexes.map(|h| hex::decode(h).unwrap().try_into().unwrap())
}

const ZERO: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

/// (file, RTMR0..3) as published upstream (see tests/data/README.md).
fn vectors() -> Vec<(&'static str, [[u8; 48]; 4])> {
    vec![
        (
            "trustee_CCEL_data.gz",
            rtmrs([
                "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
                "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
                ZERO,
                ZERO,
            ]),
        ),
        (
            "trustee_CCEL_data_ovmf.gz",
            rtmrs([
                "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
                "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
                "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
                ZERO,
            ]),
        ),
        (
            "trustee_CCEL_data_grub.gz",
            rtmrs([
                "cec0a104f691f60da2387fea3c2de00c4ac035e2bb479ff02edcce69039d9e9907f0b3e55031da3dc7038f423adebd79",
                "6c289e0c62182d41ebe97bdbc9872d10998a08eaa86adcdc684001a363207ee72942c7522cdf00a4bbc3d784bed7b670",
                "08919d017ba0e52cd6d966351c7de16fe76c1d3d3d3da4554239e4c7d16cb8b82a94e7eaea3a0e6e18eb690b999fd31e",
                ZERO,
            ]),
        ),
        (
            "trustee_CCEL_data_grub_gke.gz",
            rtmrs([
                "bc9945139042cf2cc75caf920aa57f14884ecfd7e893bccc51250c8ce90eb53ce72741e6adaa18183eb1331a87d4544a",
                "c17cb288a4dee302bb9ed8d27257a168f3264ad68cab53757f37eeaa7039657fa887cad65cf910e0fdc435ff110f8a7b",
                "334aeba2c985f8886cea97d1ecffbd512769d528b9a94009583db667ad7d2faa7d37fa145d75b192ceee2d2f10b2eb6d",
                ZERO,
            ]),
        ),
        (
            // RTMR0..2 from a real TD on GCE, as asserted by go-eventlog's ExtractFirmwareLogState test.
            "goeventlog_cos-113-intel-tdx.bin.gz",
            rtmrs([
                "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
                "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
                "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
                ZERO,
            ]),
        ),
    ]
}

#[test]
fn replay_matches_published_rtmrs() {
    for (name, want) in vectors() {
        let log = EventLog::parse(&gz_data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(log.events.len() >= 5, "{name}: {} events", log.events.len());
        assert_eq!(log.replay().unwrap(), want, "{name}");
        log.verify_against(&want).unwrap();
    }
}

#[test]
fn tampered_event_fails_replay_check() {
    for (name, want) in vectors() {
        let raw = gz_data(name);
        let log = EventLog::parse(&raw).unwrap();
        // Flip one byte of the SHA-384 digest of the last extended event.
        let ev = log
            .events
            .iter()
            .rev()
            .find(|e| e.event_type != event_type::EV_NO_ACTION)
            .unwrap();
        let digest_at = ev.offset + 12 + 2; // first digest (SHA-384 in a CCEL)
        assert_eq!(log.algorithms[0].0, 0x000c, "{name}: first bank is SHA-384");
        let mut bad = raw.clone();
        bad[digest_at] ^= 1;
        let tampered = EventLog::parse(&bad).unwrap();
        match tampered.verify_against(&want) {
            Err(MeasureError::ReplayMismatch { register, .. }) => {
                assert_eq!(register, format!("RTMR{}", ev.mr_index - 1), "{name}")
            }
            other => panic!("{name}: tampered log not rejected: {other:?}"),
        }
    }
}

#[test]
fn boot_components_from_real_logs() {
    // td-shim log: trustee's claims test expects this kernel digest and command line.
    let c = EventLog::parse(&gz_data("trustee_CCEL_data.gz"))
        .unwrap()
        .boot_components()
        .unwrap();
    assert_eq!(
        c.kernel.as_deref(),
        Some(
            "5b7aa6572f649714ff00b6a2b9170516a068fd1a0ba72aa8de27574131d454e6396d3bfa1727d9baf421618a942977fa"
        )
    );
    assert_eq!(
        c.cmdline_text.as_deref(),
        Some("root=/dev/vda1 console=hvc0 rw")
    );
    assert!(
        c.cmdline
            .as_deref()
            .unwrap()
            .starts_with("64ed1e5a47e8632f")
    );
    // OVMF direct boot: the kernel application, the load options and the initrd tags
    // (digest prefixes as listed in trustee's CCEL_data_ovmf_out.json).
    let c = EventLog::parse(&gz_data("trustee_CCEL_data_ovmf.gz"))
        .unwrap()
        .boot_components()
        .unwrap();
    assert!(
        c.kernel.as_deref().unwrap().starts_with("a2ccae1e7d6c668c"),
        "{c:?}"
    );
    assert!(
        c.cmdline
            .as_deref()
            .unwrap()
            .starts_with("4230f84885a6f3f3"),
        "{c:?}"
    );
    assert!(
        c.initrd.as_deref().unwrap().starts_with("b15af9286108d3d8"),
        "{c:?}"
    );
    // GRUB boot: the last application is the kernel GRUB loaded.
    let c = EventLog::parse(&gz_data("trustee_CCEL_data_grub.gz"))
        .unwrap()
        .boot_components()
        .unwrap();
    assert!(
        c.kernel.as_deref().unwrap().starts_with("ea83db0b0d01cb82"),
        "{c:?}"
    );
    assert!(
        c.cmdline
            .as_deref()
            .unwrap()
            .starts_with("f45887f32c15f51f"),
        "{c:?}"
    );
    assert!(
        c.initrd.as_deref().unwrap().starts_with("15485f8c0ea5fb6c"),
        "{c:?}"
    );
}

#[test]
fn malformed_logs_are_rejected() {
    let raw = gz_data("trustee_CCEL_data_ovmf.gz");
    let log = EventLog::parse(&raw).unwrap();
    let last = log.events.last().unwrap();
    // Cut inside the last event.
    let e = EventLog::parse(&raw[..last.offset + 20])
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated") || e.contains("runs past"), "{e}");
    // Not a crypto-agile log.
    let mut bad = raw.clone();
    bad[32] = b'X';
    let e = EventLog::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("Spec ID Event03"), "{e}");
    // An event extending CC MR index 7.
    let mut bad = raw.clone();
    bad[last.offset] = 7;
    let e = EventLog::parse(&bad)
        .unwrap()
        .replay()
        .unwrap_err()
        .to_string();
    assert!(e.contains("index 7"), "{e}");
}

#[test]
fn quote_registers_match_fixture_expectations_and_unrelated_log_mismatches() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tdx");
    for set in ["v4-uptodate-dcapqvl", "v5-uptodate-gotdxguest"] {
        let quote = std::fs::read(base.join(set).join("quote.bin")).unwrap();
        let exp: serde_json::Value =
            serde_json::from_slice(&std::fs::read(base.join(set).join("expected.json")).unwrap())
                .unwrap();
        let m = QuoteMeasurements::from_quote(&quote).unwrap();
        assert_eq!(hex::encode(m.mrtd), exp["mr_td"].as_str().unwrap(), "{set}");
        assert_eq!(
            hex::encode(m.mrconfigid),
            exp["mr_config_id"].as_str().unwrap(),
            "{set}"
        );
        for i in 0..4 {
            assert_eq!(
                hex::encode(m.rtmrs[i]),
                exp[format!("rtmr{i}")].as_str().unwrap(),
                "{set} rtmr{i}"
            );
        }
        // No published log belongs to these quotes: a real log must not verify against them.
        let log = EventLog::parse(&gz_data("trustee_CCEL_data_ovmf.gz")).unwrap();
        assert!(matches!(
            log.verify_against(&m.rtmrs),
            Err(MeasureError::ReplayMismatch { .. })
        ));
    }
    assert!(QuoteMeasurements::from_quote(&[4, 0, 0, 0]).is_err());
}

/// Builds the MRTD input stream by hand and hashes it with coreutils' sha384sum.
fn sha384sum(stream: &[u8]) -> [u8; 48] {
    let mut child = Command::new("sha384sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stream).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    hex::decode(out.split_whitespace().next().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// A TDVF section: (data_offset, raw size, gpa, memory size, type, attributes).
type Sec = (u32, u32, u64, u64, u32, u32);

/// A TDVF image: 4 pages of image data; sections (data_offset, raw, gpa, mem size, type, attrs).
fn tdvf_image(sections: &[Sec]) -> Vec<u8> {
    let len = 8 * 4096;
    let mut img = common::det_bytes(7, len);
    let desc_off = len - 0x1000 + 0x100;
    let mut d = Vec::new();
    d.extend_from_slice(b"TDVF");
    d.extend_from_slice(&((16 + 32 * sections.len()) as u32).to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (off, raw, gpa, size, t, a) in sections {
        d.extend_from_slice(&off.to_le_bytes());
        d.extend_from_slice(&raw.to_le_bytes());
        d.extend_from_slice(&gpa.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&t.to_le_bytes());
        d.extend_from_slice(&a.to_le_bytes());
    }
    img[desc_off..desc_off + d.len()].copy_from_slice(&d);
    let table = common::footer_table(&[(
        common::TDX_META,
        ((len - desc_off) as u32).to_le_bytes().to_vec(),
    )]);
    img[len - 32 - table.len()..len - 32].copy_from_slice(&table);
    img
}

fn rec(name: &[u8], gpa: u64) -> Vec<u8> {
    let mut r = vec![0u8; 128];
    r[..name.len()].copy_from_slice(name);
    r[16..24].copy_from_slice(&gpa.to_le_bytes());
    r
}

#[test]
fn mrtd_format_derived_vectors() {
    // BFV: 2 pages from image offset 0x1000, extended; TD_HOB: 1 page; TEMP_MEM with
    // PAGE.AUG (not measured).
    let secs = [
        (0x1000, 0x2000, 0xffe0_0000u64, 0x2000u64, 0, 1),
        (0, 0, 0x80_9000, 0x1000, 2, 0),
        (0, 0, 0x90_0000, 0x4000, 3, 2),
    ];
    let img = tdvf_image(&secs);
    let tdvf = Tdvf::parse(img.clone()).unwrap();
    assert_eq!(tdvf.sections.len(), 3);
    let extends = |page: u64| {
        let mut s = Vec::new();
        for c in 0..16u64 {
            s.extend(rec(b"MR.EXTEND", 0xffe0_0000 + page * 4096 + c * 256));
            let at = (0x1000 + page * 4096 + c * 256) as usize;
            s.extend_from_slice(&img[at..at + 256]);
        }
        s
    };
    let mut single = Vec::new();
    let mut two = Vec::new();
    for p in 0..2 {
        single.extend(rec(b"MEM.PAGE.ADD", 0xffe0_0000 + p * 4096));
        single.extend(extends(p));
        two.extend(rec(b"MEM.PAGE.ADD", 0xffe0_0000 + p * 4096));
    }
    for p in 0..2 {
        two.extend(extends(p));
    }
    single.extend(rec(b"MEM.PAGE.ADD", 0x80_9000));
    two.extend(rec(b"MEM.PAGE.ADD", 0x80_9000));
    assert_eq!(tdvf.mrtd(PageAddOrder::SinglePass), sha384sum(&single));
    assert_eq!(tdvf.mrtd(PageAddOrder::TwoPass), sha384sum(&two));
    assert_ne!(sha384sum(&single), sha384sum(&two));
}

#[test]
fn mrtd_malformed_tdvf_is_rejected() {
    let cases: Vec<(Vec<Sec>, &str)> = vec![
        (
            vec![(0, 0, 0x1000, 0x2000, 2, 0), (0, 0, 0x2000, 0x1000, 3, 0)],
            "overlaps",
        ),
        (vec![(0, 0, 0x1800, 0x1000, 2, 0)], "not page aligned"),
        (vec![(0x7000, 0x2000, 0x10000, 0x2000, 0, 1)], "outside"),
    ];
    for (secs, want) in cases {
        let e = Tdvf::parse(tdvf_image(&secs)).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    // An image without a footer table.
    let e = Tdvf::parse(vec![0u8; 8192]).unwrap_err().to_string();
    assert!(e.contains("no OVMF footer GUID table"), "{e}");
}

#[test]
fn debian_ovmf_has_tdvf_metadata() {
    // Debian's OVMF.fd (ovmf 2022.11) carries TDX metadata: six sections, the BFV
    // (extended) and CFV at the top of 4 GiB, and the TD_HOB / TEMP_MEM ranges.
    let img = std::fs::read("/usr/share/ovmf/OVMF.fd").expect("install Debian's ovmf package");
    let t = Tdvf::parse(img).unwrap();
    assert_eq!(t.sections.len(), 6);
    assert_eq!(t.sections[0].memory_address, 0xffe2_0000);
    assert_eq!(t.sections[0].attributes, 1);
    assert!(
        t.sections
            .iter()
            .any(|s| s.section_type == 2 && s.memory_address == 0x80_9000)
    );
    let m = t.mrtd(PageAddOrder::SinglePass);
    assert_ne!(m, t.mrtd(PageAddOrder::TwoPass));
}
