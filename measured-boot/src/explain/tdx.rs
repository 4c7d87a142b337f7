//! TDX: which inputs account for two input sets giving different registers, and which
//! single-input change reproduces observed registers ([`observed`]).
//!
//! The registers an input set determines, and what determines each:
//!
//! | register | inputs |
//! |---|---|
//! | MRTD | `firmware` (the TDVF image), `page_add_order` |
//! | RTMR1 | `kernel` (its Authenticode digest), `rtmr1_layout`, `patched_kernel_memory` (older OVMF measured the header QEMU patched; the patch depends on the memory size and the initrd length) |
//! | RTMR2 | `cmdline` and `initrd` (OVMF's load options `<cmdline> initrd=initrd`, then the initrd) |
//! | MRCONFIGID | `initdata` (its digest fitted to 48 bytes; all zero without initdata) |
//!
//! RTMR1 / RTMR2 are predicted for an OVMF direct boot only (a set with a `kernel`);
//! RTMR0 (TD HOB, ACPI tables) and RTMR3 are not predicted.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::show;
use crate::error::MeasureError;
use crate::initdata::Initdata;
use crate::snp::read_file;
use crate::tdx::Mr48;
use crate::tdx::mrtd::{PageAddOrder, Tdvf};
use crate::tdx::pe::authenticode_sha384;
use crate::tdx::rtmr::{
    DirectBootDigests, Rtmr1Layout, ovmf_load_options, qemu_patched_kernel, sha384,
};

mod observed;

pub use observed::{
    ComponentFinding, EventLogFindings, ObservedTdx, RegisterFinding, RegisterStatus,
    TdxExplanation, TdxObservedReport, explain_observed_tdx,
};

/// QEMU's ACPI data area on q35, which bounds where a patched header puts the initrd.
pub const Q35_ACPI_DATA_SIZE: u32 = 0x28000;

/// Everything an expected TDX measurement depends on, as paths and values: the JSON /
/// TOML form `cocoon measure diff` reads for TDX (with `platform = "tdx"` or any
/// TDX-only key). Paths are used as given (relative to the working directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxInputs {
    /// The TDVF firmware image (`-bios`): MRTD. Without it MRTD is not predicted.
    #[serde(default)]
    pub firmware: Option<PathBuf>,
    /// The VMM's PAGE.ADD / MR.EXTEND order: `"single-pass"` (upstream KVM, the
    /// default) or `"two-pass"` (older TDX QEMU trees).
    #[serde(default, with = "page_add_order_serde")]
    pub page_add_order: PageAddOrder,
    /// The EFI-stub kernel of an OVMF direct boot (`-kernel`): RTMR1 (and RTMR2).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initrd (`-initrd`): RTMR2 (and RTMR1 with a patched header). Needs a kernel.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line (`-append`): RTMR2. Needs a kernel.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// The RTMR1 event order of the firmware: `"ovmf"` (default) or `"tdvf-legacy"`.
    #[serde(default)]
    pub rtmr1_layout: Rtmr1Layout,
    /// Guest memory in bytes when the firmware measured the kernel after QEMU patched
    /// its boot header (OVMF up to edk2-stable202502); absent: measured as is.
    #[serde(default)]
    pub patched_kernel_memory: Option<u64>,
    /// The initdata TOML file: MRCONFIGID.
    #[serde(default)]
    pub initdata: Option<PathBuf>,
}

/// `PageAddOrder` as `"single-pass"` / `"two-pass"` in input files.
mod page_add_order_serde {
    use crate::tdx::mrtd::PageAddOrder;

    pub(super) fn serialize<S: serde::Serializer>(
        o: &PageAddOrder,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::order_name(*o))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<PageAddOrder, D::Error> {
        let name: String = serde::Deserialize::deserialize(d)?;
        match name.as_str() {
            "single-pass" => Ok(PageAddOrder::SinglePass),
            "two-pass" => Ok(PageAddOrder::TwoPass),
            other => Err(serde::de::Error::custom(format!(
                "page_add_order {other:?} is not \"single-pass\" or \"two-pass\""
            ))),
        }
    }
}

fn order_name(o: PageAddOrder) -> &'static str {
    match o {
        PageAddOrder::SinglePass => "single-pass",
        PageAddOrder::TwoPass => "two-pass",
    }
}

fn layout_name(l: Rtmr1Layout) -> &'static str {
    match l {
        Rtmr1Layout::Ovmf => "ovmf",
        Rtmr1Layout::TdvfLegacy => "tdvf-legacy",
    }
}

fn memory_name(m: Option<u64>) -> String {
    match m {
        None => "(measured as is)".to_string(),
        Some(b) if b > 0 && b % (1 << 30) == 0 => format!("{b} ({} GiB)", b >> 30),
        Some(b) if b > 0 && b % (1 << 20) == 0 => format!("{b} ({} MiB)", b >> 20),
        Some(b) => b.to_string(),
    }
}

/// A TDX measurement register this module predicts or compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum TdxRegister {
    /// MRTD (firmware).
    #[serde(rename = "MRTD")]
    Mrtd,
    /// RTMR1 (kernel).
    #[serde(rename = "RTMR1")]
    Rtmr1,
    /// RTMR2 (command line, initrd).
    #[serde(rename = "RTMR2")]
    Rtmr2,
    /// MRCONFIGID (initdata).
    #[serde(rename = "MRCONFIGID")]
    Mrconfigid,
}

impl TdxRegister {
    /// All registers, in report order.
    pub const ALL: [Self; 4] = [Self::Mrtd, Self::Rtmr1, Self::Rtmr2, Self::Mrconfigid];

    /// The register's name as Intel writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mrtd => "MRTD",
            Self::Rtmr1 => "RTMR1",
            Self::Rtmr2 => "RTMR2",
            Self::Mrconfigid => "MRCONFIGID",
        }
    }

    /// The inputs a difference in this register implicates.
    pub fn implicates(self) -> &'static str {
        match self {
            Self::Mrtd => "firmware (the TDVF image), or the VMM's PAGE.ADD order",
            Self::Rtmr1 => {
                "kernel, or the kernel-load mode (QEMU-patched header and guest memory size) \
                 or the firmware's RTMR1 event layout"
            }
            Self::Rtmr2 => "cmdline or initrd (OVMF's load options, the initrd contents)",
            Self::Mrconfigid => "initdata",
        }
    }
}

impl std::fmt::Display for TdxRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The registers an input set determines (lower-case hex); `None` where the set does
/// not determine a register (no firmware: MRTD; no kernel: RTMR1 / RTMR2).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TdxRegisters {
    /// MRTD.
    pub mrtd: Option<String>,
    /// RTMR1.
    pub rtmr1: Option<String>,
    /// RTMR2.
    pub rtmr2: Option<String>,
    /// MRCONFIGID (all zero when there is no initdata).
    pub mrconfigid: Option<String>,
}

impl TdxRegisters {
    /// The value of one register.
    pub fn get(&self, r: TdxRegister) -> Option<&str> {
        match r {
            TdxRegister::Mrtd => self.mrtd.as_deref(),
            TdxRegister::Rtmr1 => self.rtmr1.as_deref(),
            TdxRegister::Rtmr2 => self.rtmr2.as_deref(),
            TdxRegister::Mrconfigid => self.mrconfigid.as_deref(),
        }
    }
}

/// Register values as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Regs {
    pub(super) mrtd: Option<Mr48>,
    pub(super) rtmr1: Option<Mr48>,
    pub(super) rtmr2: Option<Mr48>,
    pub(super) mrconfigid: Option<Mr48>,
}

impl Regs {
    pub(super) fn get(&self, r: TdxRegister) -> Option<Mr48> {
        match r {
            TdxRegister::Mrtd => self.mrtd,
            TdxRegister::Rtmr1 => self.rtmr1,
            TdxRegister::Rtmr2 => self.rtmr2,
            TdxRegister::Mrconfigid => self.mrconfigid,
        }
    }

    pub(super) fn hex(&self) -> TdxRegisters {
        TdxRegisters {
            mrtd: self.mrtd.map(hex::encode),
            rtmr1: self.rtmr1.map(hex::encode),
            rtmr2: self.rtmr2.map(hex::encode),
            mrconfigid: self.mrconfigid.map(hex::encode),
        }
    }

    /// The registers in which `self` and `other` differ.
    pub(super) fn differing(&self, other: &Regs) -> Vec<TdxRegister> {
        TdxRegister::ALL
            .into_iter()
            .filter(|r| self.get(*r) != other.get(*r))
            .collect()
    }
}

/// An input set with its files read.
pub(super) struct Loaded {
    pub(super) inputs: TdxInputs,
    pub(super) firmware: Option<Tdvf>,
    pub(super) firmware_sha256: Option<String>,
    pub(super) kernel: Option<Vec<u8>>,
    pub(super) initrd: Option<Vec<u8>>,
    pub(super) initdata: Option<Initdata>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl Loaded {
    /// Checks the set and reads its files.
    pub(super) fn load(i: &TdxInputs) -> Result<Self, MeasureError> {
        let invalid = |m: &str| Err(MeasureError::InvalidInput(format!("TDX inputs: {m}")));
        if i.kernel.is_none() {
            if i.initrd.is_some() {
                return invalid(
                    "`initrd` needs `kernel` (RTMR1/RTMR2 are predicted for an OVMF direct \
                     boot only)",
                );
            }
            if i.cmdline.is_some() {
                return invalid("`cmdline` needs `kernel`");
            }
            if i.patched_kernel_memory.is_some() {
                return invalid("`patched_kernel_memory` needs `kernel`");
            }
        }
        if i.firmware.is_none() && i.kernel.is_none() && i.initdata.is_none() {
            return invalid("give at least one of `firmware`, `kernel` and `initdata`");
        }
        let (firmware, firmware_sha256) = match &i.firmware {
            Some(p) => {
                let image = read_file("firmware", p)?;
                let sha = sha256_hex(&image);
                (Some(Tdvf::parse(image)?), Some(sha))
            }
            None => (None, None),
        };
        let kernel = i
            .kernel
            .as_ref()
            .map(|p| read_file("kernel", p))
            .transpose()?;
        let initrd = i
            .initrd
            .as_ref()
            .map(|p| read_file("initrd", p))
            .transpose()?;
        let initdata = i
            .initdata
            .as_ref()
            .map(|p| Initdata::parse(&read_file("initdata", p)?))
            .transpose()?;
        Ok(Self {
            inputs: i.clone(),
            firmware,
            firmware_sha256,
            kernel,
            initrd,
            initdata,
        })
    }

    /// The values of this set, borrowing its files.
    pub(super) fn view(&self) -> View<'_> {
        View {
            firmware: self.firmware.as_ref(),
            order: self.inputs.page_add_order,
            kernel: self.kernel.as_deref(),
            initrd: self.initrd.as_deref().filter(|b| !b.is_empty()),
            cmdline: self.inputs.cmdline.as_deref(),
            layout: self.inputs.rtmr1_layout,
            patched_memory: self.inputs.patched_kernel_memory,
            initrd_suffix: true,
            mrconfigid: Some(mrconfigid_of(self.initdata.as_ref())),
        }
    }

    /// The initdata as shown in reports: `ALGORITHM:DIGEST` or `(none)`.
    pub(super) fn initdata_name(&self) -> String {
        match &self.initdata {
            Some(d) => format!("{}:{}", d.algorithm.name(), hex::encode(d.digest())),
            None => "(none)".to_string(),
        }
    }
}

/// MRCONFIGID from initdata; all zero without (what QEMU leaves when given none).
pub(super) fn mrconfigid_of(d: Option<&Initdata>) -> Mr48 {
    d.map_or([0u8; 48], Initdata::tdx_mrconfigid)
}

/// The values that determine the registers: one input set, or one with a single
/// input swapped.
#[derive(Debug, Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) firmware: Option<&'a Tdvf>,
    pub(super) order: PageAddOrder,
    pub(super) kernel: Option<&'a [u8]>,
    pub(super) initrd: Option<&'a [u8]>,
    pub(super) cmdline: Option<&'a str>,
    pub(super) layout: Rtmr1Layout,
    pub(super) patched_memory: Option<u64>,
    /// Whether the load options carry OVMF's ` initrd=initrd` (always, except in the
    /// variant that tries without it).
    pub(super) initrd_suffix: bool,
    pub(super) mrconfigid: Option<Mr48>,
}

fn same<T>(a: &[T], b: &[T]) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

/// Digests already computed, keyed by the identity of the bytes they were computed
/// from, so that variants do not hash the firmware, kernel or initrd again.
#[derive(Default)]
pub(super) struct Cache<'a> {
    mrtd: Vec<(&'a Tdvf, PageAddOrder, Mr48)>,
    initrd: Vec<(&'a [u8], Mr48)>,
    kernel: Vec<(&'a [u8], Option<u64>, usize, Mr48)>,
}

impl<'a> Cache<'a> {
    fn mrtd(&mut self, fw: &'a Tdvf, order: PageAddOrder) -> Mr48 {
        if let Some((_, _, m)) = self
            .mrtd
            .iter()
            .find(|(f, o, _)| std::ptr::eq(*f, fw) && *o == order)
        {
            return *m;
        }
        let m = fw.mrtd(order);
        self.mrtd.push((fw, order, m));
        m
    }

    fn initrd(&mut self, initrd: &'a [u8]) -> Mr48 {
        if let Some((_, d)) = self.initrd.iter().find(|(i, _)| same(i, initrd)) {
            return *d;
        }
        let d = sha384(initrd);
        self.initrd.push((initrd, d));
        d
    }

    /// The kernel's Authenticode SHA-384 as the firmware measured it.
    pub(super) fn kernel(
        &mut self,
        kernel: &'a [u8],
        patched_memory: Option<u64>,
        initrd_len: usize,
    ) -> Result<Mr48, MeasureError> {
        // The initrd length only matters to a patched header.
        let initrd_len = if patched_memory.is_some() {
            initrd_len
        } else {
            0
        };
        if let Some((_, _, _, d)) = self
            .kernel
            .iter()
            .find(|(k, m, l, _)| same(k, kernel) && *m == patched_memory && *l == initrd_len)
        {
            return Ok(*d);
        }
        let d = match patched_memory {
            None => authenticode_sha384(kernel)?,
            Some(memory_bytes) => authenticode_sha384(&qemu_patched_kernel(
                kernel,
                initrd_len,
                memory_bytes,
                Q35_ACPI_DATA_SIZE,
            )?)?,
        };
        self.kernel.push((kernel, patched_memory, initrd_len, d));
        Ok(d)
    }

    /// The direct-boot digests of a view (`None` without a kernel); the same values as
    /// [`DirectBootDigests::compute`].
    pub(super) fn direct_boot(
        &mut self,
        v: &View<'a>,
    ) -> Result<Option<DirectBootDigests>, MeasureError> {
        let Some(kernel) = v.kernel else {
            return Ok(None);
        };
        if kernel.is_empty() {
            return Err(MeasureError::InvalidInput("the kernel is empty".into()));
        }
        let initrd = v.initrd.filter(|i| !i.is_empty());
        let kernel_digest = self.kernel(kernel, v.patched_memory, initrd.map_or(0, <[u8]>::len))?;
        let options = ovmf_load_options(v.cmdline, initrd.is_some() && v.initrd_suffix);
        Ok(Some(DirectBootDigests {
            kernel: kernel_digest,
            load_options: (!options.is_empty()).then(|| sha384(&options)),
            initrd: initrd.map(|i| self.initrd(i)),
        }))
    }

    /// The registers of a view.
    pub(super) fn regs(&mut self, v: &View<'a>) -> Result<Regs, MeasureError> {
        let mrtd = v.firmware.map(|f| self.mrtd(f, v.order));
        let boot = self.direct_boot(v)?;
        Ok(Regs {
            mrtd,
            rtmr1: boot.map(|d| d.rtmr1(v.layout)),
            rtmr2: boot.map(|d| d.rtmr2()),
            mrconfigid: v.mrconfigid,
        })
    }
}

impl TdxInputs {
    /// The registers this set determines.
    pub fn registers(&self) -> Result<TdxRegisters, MeasureError> {
        let l = Loaded::load(self)?;
        Ok(Cache::default().regs(&l.view())?.hex())
    }
}

/// One input that differs between two TDX sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TdxInputDifference {
    /// The input: `firmware`, `page_add_order`, `kernel`, `initrd`, `cmdline`,
    /// `rtmr1_layout`, `patched_kernel_memory` or `initdata`.
    pub input: &'static str,
    /// Its value in A (files: SHA-256 of the content; initdata: its digest).
    pub a: String,
    /// Its value in B.
    pub b: String,
    /// A's registers with only this input changed to B's value (`None` if they cannot
    /// be computed, see `error`).
    pub registers_with_only_this_change: Option<TdxRegisters>,
    /// The registers this change alone changes (relative to A).
    pub registers_changed: Vec<TdxRegister>,
    /// The registers this change alone turns into B's values.
    pub registers_explained: Vec<TdxRegister>,
    /// Whether this change alone turns all of A's registers into B's.
    pub alone_explains: bool,
    /// Why the registers with only this change could not be computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of comparing two TDX input sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TdxDiffReport {
    /// Always `"tdx"`.
    pub platform: &'static str,
    /// A's registers.
    pub registers_a: TdxRegisters,
    /// B's registers.
    pub registers_b: TdxRegisters,
    /// The registers in which A and B differ.
    pub registers_differing: Vec<TdxRegister>,
    /// Every input that differs.
    pub differences: Vec<TdxInputDifference>,
    /// The findings in sentences.
    pub summary: Vec<String>,
}

/// Abbreviated hex for sentences.
pub(super) fn short(h: Option<&str>, none: &str) -> String {
    match h {
        Some(h) => match h.get(..16) {
            Some(p) if h.len() > 16 => format!("{p}…"),
            _ => h.to_string(),
        },
        None => none.to_string(),
    }
}

pub(super) fn names(rs: &[TdxRegister]) -> String {
    rs.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
}

/// Compares two TDX input sets: which inputs differ, which registers each change alone
/// changes, and whether it alone explains B's registers.
pub fn diff_tdx(a: &TdxInputs, b: &TdxInputs) -> Result<TdxDiffReport, MeasureError> {
    let la = Loaded::load(a)?;
    let lb = Loaded::load(b)?;
    let (va, vb) = (la.view(), lb.view());
    let mut cache = Cache::default();
    let ra = cache.regs(&va)?;
    let rb = cache.regs(&vb)?;
    let file = |l: &Loaded, f: fn(&Loaded) -> Option<&[u8]>| show(&f(l).map(sha256_hex));
    let candidates: Vec<(&'static str, String, String, View<'_>)> = vec![
        (
            "firmware",
            show(&la.firmware_sha256),
            show(&lb.firmware_sha256),
            View {
                firmware: vb.firmware,
                ..va
            },
        ),
        (
            "page_add_order",
            order_name(a.page_add_order).into(),
            order_name(b.page_add_order).into(),
            View {
                order: vb.order,
                ..va
            },
        ),
        (
            "kernel",
            file(&la, |l| l.kernel.as_deref()),
            file(&lb, |l| l.kernel.as_deref()),
            View {
                kernel: vb.kernel,
                ..va
            },
        ),
        (
            "initrd",
            file(&la, |l| l.initrd.as_deref()),
            file(&lb, |l| l.initrd.as_deref()),
            View {
                initrd: vb.initrd,
                ..va
            },
        ),
        (
            "cmdline",
            show(&a.cmdline),
            show(&b.cmdline),
            View {
                cmdline: vb.cmdline,
                ..va
            },
        ),
        (
            "rtmr1_layout",
            layout_name(a.rtmr1_layout).into(),
            layout_name(b.rtmr1_layout).into(),
            View {
                layout: vb.layout,
                ..va
            },
        ),
        (
            "patched_kernel_memory",
            memory_name(a.patched_kernel_memory),
            memory_name(b.patched_kernel_memory),
            View {
                patched_memory: vb.patched_memory,
                ..va
            },
        ),
        (
            "initdata",
            la.initdata_name(),
            lb.initdata_name(),
            View {
                mrconfigid: vb.mrconfigid,
                ..va
            },
        ),
    ];
    let registers_differing = ra.differing(&rb);
    let mut differences = Vec::new();
    let mut summary = vec![if registers_differing.is_empty() {
        "A and B give the same registers".to_string()
    } else {
        format!("A and B differ in {}", names(&registers_differing))
    }];
    for (input, va_value, vb_value, hybrid) in candidates {
        if va_value == vb_value {
            continue;
        }
        let d = match cache.regs(&hybrid) {
            Ok(h) => {
                let changed = h.differing(&ra);
                let explained: Vec<_> = changed
                    .iter()
                    .copied()
                    .filter(|r| h.get(*r) == rb.get(*r))
                    .collect();
                TdxInputDifference {
                    input,
                    a: va_value,
                    b: vb_value,
                    registers_with_only_this_change: Some(h.hex()),
                    registers_changed: changed,
                    registers_explained: explained,
                    alone_explains: h == rb,
                    error: None,
                }
            }
            Err(e) => TdxInputDifference {
                input,
                a: va_value,
                b: vb_value,
                registers_with_only_this_change: None,
                registers_changed: Vec::new(),
                registers_explained: Vec::new(),
                alone_explains: false,
                error: Some(e.to_string()),
            },
        };
        summary.push(describe_difference(&d));
        differences.push(d);
    }
    Ok(TdxDiffReport {
        platform: "tdx",
        registers_a: ra.hex(),
        registers_b: rb.hex(),
        registers_differing,
        differences,
        summary,
    })
}

fn describe_difference(d: &TdxInputDifference) -> String {
    let head = format!("{} differs (A: {}, B: {})", d.input, d.a, d.b);
    if let Some(e) = &d.error {
        return format!("{head}: A with only this change cannot be computed: {e}");
    }
    if d.registers_changed.is_empty() {
        return format!("{head}: alone it changes no register");
    }
    let tail = if d.alone_explains {
        "alone it explains all of B's registers".to_string()
    } else if d.registers_explained.is_empty() {
        "alone it explains none of B's registers".to_string()
    } else {
        format!("alone it explains B's {}", names(&d.registers_explained))
    };
    format!(
        "{head}: alone it changes {}; {tail}",
        names(&d.registers_changed)
    )
}
