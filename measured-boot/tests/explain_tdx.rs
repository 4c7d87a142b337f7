//! `cocoon measure diff` for TDX: `diff_tdx`, `explain_observed_tdx` and the CLI glue.
//!
//! Oracles: MRTD of Debian's `OVMF.fd` (both PAGE.ADD orders) and RTMR1/RTMR2 of a direct
//! boot of the synthetic kernel at 1/2/8 GiB as computed by dstack-mr
//! (`tests/data/tdx_cross_impl.json`); RTMR2 and MRCONFIGID recomputed here from their
//! definitions with `sha2`; the registers of two real quotes (`tests/data/tdx/*`); the
//! real OVMF direct-boot log of trustee (`trustee_CCEL_data_ovmf.gz`).
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "explain_tdx/cli.rs"]
mod cli;
mod common;
#[path = "explain_tdx/eventlog.rs"]
mod eventlog;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Parser;
use measured_boot::MeasureError;
use measured_boot::cli::{DiffArgs, run_diff};
use measured_boot::explain::tdx::{RegisterStatus, TdxExplanation};
use measured_boot::explain::{
    InputFormat, InputSet, ObservedTdx, TdxInputs, TdxRegister, diff_tdx, explain_observed_tdx,
};
use measured_boot::tdx::eventlog::EventLog;
use measured_boot::tdx::mrtd::{ATTR_MR_EXTEND, PageAddOrder, Tdvf};
use measured_boot::tdx::pe::authenticode_sha384;
use measured_boot::tdx::rtmr::Rtmr1Layout;
use sha2::{Digest as _, Sha256, Sha384};

#[derive(Parser)]
struct Diff {
    #[command(flatten)]
    args: DiffArgs,
}

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
const INITDATA_A: &str =
    "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"a.toml\" = \"x\"\n";
const INITDATA_B: &str =
    "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"a.toml\" = \"y\"\n";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn vectors() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data("tdx_cross_impl.json")).unwrap()).unwrap()
}

fn ovmf() -> PathBuf {
    let p = PathBuf::from(OVMF);
    assert!(
        p.is_file(),
        "{OVMF} is missing: install Debian's ovmf package (scripts/setup.sh does)"
    );
    p
}

/// dstack-mr's MRTD of Debian's OVMF.fd, when the installed file is the recorded build.
fn dstack_mrtd(order: PageAddOrder) -> Option<String> {
    let v = vectors();
    let sha = hex::encode(Sha256::digest(std::fs::read(ovmf()).unwrap()));
    if sha != v["mrtd"]["sha256"].as_str().unwrap() {
        eprintln!("note: {OVMF} is not the recorded build; MRTD literal checks skipped");
        return None;
    }
    let key = match order {
        PageAddOrder::SinglePass => "single_pass",
        PageAddOrder::TwoPass => "two_pass",
    };
    Some(v["mrtd"][key].as_str().unwrap().to_string())
}

/// The EFI-stub bzImage the dstack-mr vectors were computed from: a PE32+ application
/// with a Linux setup header (boot protocol 2.15, LOADED_HIGH, initrd_addr_max
/// 0x7fffffff, cmdline_size 0x800, xloadflags 0x7f).
fn bzimage() -> Vec<u8> {
    let mut k = common::pe_image(&common::PeLayout {
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
    k[0x1f1] = 1;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&0x007fu16.to_le_bytes());
    k[0x238..0x23c].copy_from_slice(&0x800u32.to_le_bytes());
    let v = vectors();
    assert_eq!(
        hex::encode(Sha256::digest(&k)),
        v["direct_boot"]["kernel_sha256"].as_str().unwrap(),
        "the synthetic kernel is not the one the vectors were computed from"
    );
    k
}

fn initrd_bytes() -> Vec<u8> {
    let r = common::det_bytes(12, 0x3000);
    assert_eq!(
        hex::encode(Sha256::digest(&r)),
        vectors()["direct_boot"]["initrd_sha256"].as_str().unwrap()
    );
    r
}

fn append() -> String {
    vectors()["direct_boot"]["append"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha384(b: &[u8]) -> [u8; 48] {
    Sha384::digest(b).into()
}

fn replay(digests: &[[u8; 48]]) -> [u8; 48] {
    digests.iter().fold([0u8; 48], |mr, d| {
        let mut h = Sha384::new();
        h.update(mr);
        h.update(d);
        h.finalize().into()
    })
}

/// UTF-16LE of `s` with a UTF-16 NUL: OVMF's load options.
fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// RTMR2 of an OVMF direct boot from its definition: load options, then the initrd.
fn rtmr2_of(cmdline: &str, initrd: &[u8]) -> String {
    hex::encode(replay(&[
        sha384(&utf16z(&format!("{cmdline} initrd=initrd"))),
        sha384(initrd),
    ]))
}

struct Fixture {
    dir: tempfile::TempDir,
    inputs: TdxInputs,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// Debian's OVMF, the synthetic kernel and initrd, dstack-mr's command line, initdata A.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd");
    let initdata = dir.path().join("initdata-a.toml");
    std::fs::write(&kernel, bzimage()).unwrap();
    std::fs::write(&initrd, initrd_bytes()).unwrap();
    std::fs::write(&initdata, INITDATA_A).unwrap();
    let inputs = TdxInputs {
        firmware: Some(ovmf()),
        kernel: Some(kernel),
        initrd: Some(initrd),
        cmdline: Some(append()),
        initdata: Some(initdata),
        ..TdxInputs::default()
    };
    Fixture { dir, inputs }
}

fn inputs_names(r: &measured_boot::explain::TdxDiffReport) -> Vec<&'static str> {
    r.differences.iter().map(|d| d.input).collect()
}

#[test]
fn cmdline_change_is_rtmr2_only_and_alone_explains_it() {
    let fx = fixture();
    let a = fx.inputs.clone();
    let mut b = a.clone();
    b.cmdline = Some("console=hvc0 root=/dev/vda".into());
    let r = diff_tdx(&a, &b).unwrap();
    assert_eq!(r.platform, "tdx");
    assert_eq!(r.registers_differing, [TdxRegister::Rtmr2]);
    assert_eq!(inputs_names(&r), ["cmdline"]);
    let d = &r.differences[0];
    assert_eq!(d.registers_changed, [TdxRegister::Rtmr2]);
    assert_eq!(d.registers_explained, [TdxRegister::Rtmr2]);
    assert!(d.alone_explains);
    assert_eq!(d.a, format!("{:?}", append()));
    // Both RTMR2 values from their definition; A's also equals dstack-mr's.
    let initrd = initrd_bytes();
    assert_eq!(
        r.registers_a.rtmr2.as_deref(),
        Some(rtmr2_of(&append(), &initrd).as_str())
    );
    assert_eq!(
        r.registers_a.rtmr2.as_deref(),
        vectors()["direct_boot"]["cases"][0]["rtmr2"].as_str()
    );
    assert_eq!(
        r.registers_b.rtmr2.as_deref(),
        Some(rtmr2_of("console=hvc0 root=/dev/vda", &initrd).as_str())
    );
    if let Some(m) = dstack_mrtd(PageAddOrder::SinglePass) {
        assert_eq!(r.registers_a.mrtd.as_deref(), Some(m.as_str()));
    }
    assert!(
        r.summary
            .iter()
            .any(|l| l.contains("cmdline differs") && l.contains("alone it explains all")),
        "{:?}",
        r.summary
    );
    // Same inputs: nothing differs.
    let r = diff_tdx(&a, &a).unwrap();
    assert!(r.registers_differing.is_empty() && r.differences.is_empty());
}

#[test]
fn firmware_and_page_order_changes_are_mrtd_only() {
    let fx = fixture();
    let a = fx.inputs.clone();
    // Another TDVF: one byte of a measured (MR.EXTEND) section changed.
    let mut image = std::fs::read(ovmf()).unwrap();
    let s = Tdvf::parse(image.clone())
        .unwrap()
        .sections
        .into_iter()
        .find(|s| s.attributes & ATTR_MR_EXTEND != 0 && s.raw_data_size > 0x200)
        .unwrap();
    image[s.data_offset as usize + 0x100] ^= 0x01;
    let mut b = a.clone();
    b.firmware = Some(fx.write("OVMF-other.fd", &image));
    let r = diff_tdx(&a, &b).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Mrtd]);
    assert_eq!(inputs_names(&r), ["firmware"]);
    assert_eq!(r.differences[0].registers_changed, [TdxRegister::Mrtd]);
    assert!(r.differences[0].alone_explains);

    // The two-pass order: B's MRTD is dstack-mr's two-pass value.
    let mut c = a.clone();
    c.page_add_order = PageAddOrder::TwoPass;
    let r = diff_tdx(&a, &c).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Mrtd]);
    assert_eq!(inputs_names(&r), ["page_add_order"]);
    assert_eq!(r.differences[0].b, "two-pass");
    assert!(r.differences[0].alone_explains);
    if let Some(m) = dstack_mrtd(PageAddOrder::TwoPass) {
        assert_eq!(r.registers_b.mrtd.as_deref(), Some(m.as_str()));
    }
}

#[test]
fn initdata_change_is_mrconfigid_only() {
    let fx = fixture();
    let a = fx.inputs.clone();
    let mut b = a.clone();
    b.initdata = Some(fx.write("initdata-b.toml", INITDATA_B.as_bytes()));
    let r = diff_tdx(&a, &b).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Mrconfigid]);
    assert_eq!(inputs_names(&r), ["initdata"]);
    assert!(r.differences[0].alone_explains);
    assert_eq!(
        r.registers_b.mrconfigid,
        Some(hex::encode(sha384(INITDATA_B.as_bytes())))
    );
    assert_eq!(
        r.differences[0].b,
        format!("sha384:{}", hex::encode(sha384(INITDATA_B.as_bytes())))
    );
    // No initdata: MRCONFIGID all zero, as QEMU leaves it.
    let mut none = a.clone();
    none.initdata = None;
    let r = diff_tdx(&none, &a).unwrap();
    assert_eq!(r.registers_a.mrconfigid, Some("00".repeat(48)));
    assert_eq!(r.differences[0].a, "(none)");
}

#[test]
fn kernel_load_mode_and_kernel_are_rtmr1() {
    let fx = fixture();
    let a = fx.inputs.clone();
    let v = vectors();
    for case in v["direct_boot"]["cases"].as_array().unwrap() {
        let mut b = a.clone();
        b.patched_kernel_memory = Some(case["memory_bytes"].as_u64().unwrap());
        let r = diff_tdx(&a, &b).unwrap();
        assert_eq!(r.registers_differing, [TdxRegister::Rtmr1]);
        assert_eq!(inputs_names(&r), ["patched_kernel_memory"]);
        assert!(r.differences[0].alone_explains);
        assert_eq!(r.registers_b.rtmr1.as_deref(), case["rtmr1"].as_str());
        assert_eq!(r.registers_b.rtmr2.as_deref(), case["rtmr2"].as_str());
    }
    // A different kernel image.
    let mut k = bzimage();
    k[0x1500] ^= 0xff;
    let mut b = a.clone();
    b.kernel = Some(fx.write("vmlinuz-other", &k));
    let r = diff_tdx(&a, &b).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Rtmr1]);
    assert_eq!(inputs_names(&r), ["kernel"]);
    assert!(r.differences[0].alone_explains);
    // The legacy RTMR1 layout.
    let mut c = a.clone();
    c.rtmr1_layout = Rtmr1Layout::TdvfLegacy;
    let r = diff_tdx(&a, &c).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Rtmr1]);
    assert_eq!(inputs_names(&r), ["rtmr1_layout"]);
}

#[test]
fn two_changes_each_explain_their_own_register() {
    let fx = fixture();
    let a = fx.inputs.clone();
    let mut b = a.clone();
    b.page_add_order = PageAddOrder::TwoPass;
    b.cmdline = Some("quiet".into());
    let r = diff_tdx(&a, &b).unwrap();
    assert_eq!(
        r.registers_differing,
        [TdxRegister::Mrtd, TdxRegister::Rtmr2]
    );
    assert_eq!(inputs_names(&r), ["page_add_order", "cmdline"]);
    assert!(r.differences.iter().all(|d| !d.alone_explains));
    assert_eq!(r.differences[0].registers_explained, [TdxRegister::Mrtd]);
    assert_eq!(r.differences[1].registers_explained, [TdxRegister::Rtmr2]);
    // Dropping the initrd changes RTMR2 (load options and the initrd event) only.
    let mut c = a.clone();
    c.initrd = None;
    let r = diff_tdx(&a, &c).unwrap();
    assert_eq!(r.registers_differing, [TdxRegister::Rtmr2]);
    assert_eq!(
        r.registers_b.rtmr2,
        Some(hex::encode(replay(&[sha384(&utf16z(&append()))])))
    );
    // With a QEMU-patched header the initrd length is in the measured kernel: RTMR1 too.
    let mut pa = a.clone();
    pa.patched_kernel_memory = Some(1 << 30);
    let mut pc = pa.clone();
    pc.initrd = None;
    let r = diff_tdx(&pa, &pc).unwrap();
    assert_eq!(
        r.registers_differing,
        [TdxRegister::Rtmr1, TdxRegister::Rtmr2]
    );
    assert!(r.differences[0].alone_explains);
}

fn observed_from(i: &TdxInputs) -> ObservedTdx {
    let r = i.registers().unwrap();
    let h = |s: Option<String>| s.map(|s| hex::decode(s).unwrap().try_into().unwrap());
    ObservedTdx {
        mrtd: h(r.mrtd),
        rtmr1: h(r.rtmr1),
        rtmr2: h(r.rtmr2),
        mrconfigid: h(r.mrconfigid),
        quote_rtmrs: None,
    }
}

fn mr(hex_text: &str) -> [u8; 48] {
    hex::decode(hex_text).unwrap().try_into().unwrap()
}

fn only(expls: &[TdxExplanation]) -> (&'static str, &str) {
    assert_eq!(expls.len(), 1, "{expls:?}");
    (expls[0].input, expls[0].value.as_str())
}

#[test]
fn observed_registers_are_explained_by_exactly_the_variant_that_made_them() {
    let fx = fixture();
    let expected = fx.inputs.clone();
    let base = observed_from(&expected);
    let r = explain_observed_tdx(&expected, &base, None).unwrap();
    assert!(r.matches_expected && r.explanations.is_empty());
    assert!(r.variants_tried >= 20, "{}", r.variants_tried);

    let v = vectors();
    let initrd = initrd_bytes();
    let mut cases: Vec<(TdxRegister, [u8; 48], &str, String)> = vec![
        (
            TdxRegister::Rtmr1,
            mr(v["direct_boot"]["cases"][0]["rtmr1"].as_str().unwrap()),
            "patched_kernel_memory",
            "1073741824 (1 GiB)".into(),
        ),
        (
            TdxRegister::Rtmr2,
            mr(&rtmr2_of(&format!("{} console=ttyS0", append()), &initrd)),
            "cmdline",
            format!("{:?}", format!("{} console=ttyS0", append())),
        ),
        (
            TdxRegister::Rtmr2,
            replay(&[sha384(&utf16z(&append()))]),
            "initrd",
            "(none)".into(),
        ),
        (
            TdxRegister::Rtmr2,
            replay(&[sha384(&utf16z(&append())), sha384(&initrd)]),
            "load_options",
            "without OVMF's \" initrd=initrd\"".into(),
        ),
        (
            TdxRegister::Mrconfigid,
            [0; 48],
            "initdata",
            "(none)".into(),
        ),
        (
            TdxRegister::Mrconfigid,
            {
                let mut m = [0u8; 48];
                m[..32].copy_from_slice(&Sha256::digest(INITDATA_A.as_bytes()));
                m
            },
            "initdata",
            "the same bytes hashed with sha256".into(),
        ),
    ];
    if let Some(m) = dstack_mrtd(PageAddOrder::TwoPass) {
        cases.push((
            TdxRegister::Mrtd,
            mr(&m),
            "page_add_order",
            "two-pass".into(),
        ));
    }
    for (reg, value, input, want) in cases {
        let mut obs = base.clone();
        obs.set(reg, value);
        let r = explain_observed_tdx(&expected, &obs, None).unwrap();
        assert!(!r.matches_expected);
        assert_eq!(only(&r.explanations), (input, want.as_str()), "{reg}");
        assert_eq!(r.explanations[0].registers, [reg]);
        assert!(r.fully_explained);
        let f = r.registers.iter().find(|f| f.register == reg).unwrap();
        assert_eq!(f.status, RegisterStatus::Differs);
        assert_eq!(f.reproduced_by, [format!("{input} = {want}")]);
        assert!(
            r.summary
                .iter()
                .any(|l| l.starts_with(&format!("{reg} differs")) && l.contains("reproduced by")),
            "{:?}",
            r.summary
        );
    }

    // RTMR1 at 8 GiB: every size from 2 GiB up gives the same header; one explanation.
    let mut obs = base.clone();
    obs.rtmr1 = Some(mr(v["direct_boot"]["cases"][2]["rtmr1"].as_str().unwrap()));
    let r = explain_observed_tdx(&expected, &obs, None).unwrap();
    assert_eq!(only(&r.explanations).0, "patched_kernel_memory");
    let all: Vec<&str> = std::iter::once(r.explanations[0].value.as_str())
        .chain(r.explanations[0].same_result.iter().map(String::as_str))
        .collect();
    assert!(all.contains(&"8589934592 (8 GiB)"), "{all:?}");
    assert!(all.contains(&"2147483648 (2 GiB)"), "{all:?}");
    assert!(!all.contains(&"1073741824 (1 GiB)"), "{all:?}");

    // A register nothing explains; and a variant that would break an observed register
    // that matched is not an explanation.
    let mut obs = base.clone();
    obs.rtmr2 = Some([7; 48]);
    let r = explain_observed_tdx(&expected, &obs, None).unwrap();
    assert!(r.explanations.is_empty() && !r.fully_explained);
    let f = r
        .registers
        .iter()
        .find(|f| f.register == TdxRegister::Rtmr2)
        .unwrap();
    assert_eq!(f.implicates, Some(TdxRegister::Rtmr2.implicates()));
    assert!(
        r.summary
            .iter()
            .any(|l| l.contains("no single-input variant"))
    );
    // A variant that also changes a register observed unchanged does not count: with a
    // QEMU-patched header, dropping the initrd changes RTMR1 as well as RTMR2.
    let mut patched = expected.clone();
    patched.patched_kernel_memory = Some(1 << 30);
    let mut no_initrd = patched.clone();
    no_initrd.initrd = None;
    let pbase = observed_from(&patched);
    let target = observed_from(&no_initrd);
    assert_ne!(pbase.rtmr1, target.rtmr1);
    let mut obs = pbase.clone();
    obs.rtmr2 = target.rtmr2;
    let r = explain_observed_tdx(&patched, &obs, None).unwrap();
    assert!(
        r.explanations.iter().all(|e| e.input != "initrd"),
        "{:?}",
        r.explanations
    );
    let r = explain_observed_tdx(&patched, &target, None).unwrap();
    assert_eq!(only(&r.explanations), ("initrd", "(none)"));
    assert_eq!(
        r.explanations[0].registers,
        [TdxRegister::Rtmr1, TdxRegister::Rtmr2]
    );
    // Two independent differences: each reproduced by its own variant.
    let mut obs = base.clone();
    obs.mrconfigid = Some([0; 48]);
    obs.rtmr1 = Some(mr(v["direct_boot"]["cases"][0]["rtmr1"].as_str().unwrap()));
    let r = explain_observed_tdx(&expected, &obs, None).unwrap();
    let inputs: Vec<_> = r.explanations.iter().map(|e| e.input).collect();
    assert_eq!(inputs, ["patched_kernel_memory", "initdata"]);
    assert!(r.fully_explained);
}

#[test]
fn real_quote_registers_are_compared_and_zero_mrconfigid_is_no_initdata() {
    let fx = fixture();
    for name in ["v4-uptodate-dcapqvl", "v5-uptodate-gotdxguest"] {
        let dir = data("tdx").join(name);
        let want: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let obs = ObservedTdx::from_quote(&std::fs::read(dir.join("quote.bin")).unwrap()).unwrap();
        let r = explain_observed_tdx(&fx.inputs, &obs, None).unwrap();
        assert_eq!(r.observed.mrtd.as_deref(), want["mr_td"].as_str(), "{name}");
        assert_eq!(
            r.observed.rtmr1.as_deref(),
            want["rtmr1"].as_str(),
            "{name}"
        );
        assert_eq!(
            r.observed.mrconfigid.as_deref(),
            want["mr_config_id"].as_str()
        );
        assert!(
            r.registers
                .iter()
                .all(|f| f.status == RegisterStatus::Differs)
        );
        // The quotes carry no initdata: exactly that explains MRCONFIGID; nothing
        // explains the other registers (another firmware and kernel booted).
        assert_eq!(only(&r.explanations), ("initdata", "(none)"), "{name}");
        assert!(!r.fully_explained);
        let mrtd = &r.registers[0];
        assert_eq!(mrtd.implicates, Some(TdxRegister::Mrtd.implicates()));
        assert!(mrtd.reproduced_by.is_empty());
    }
}
