//! Explaining observed TDX registers (from a quote, from values given by hand, or
//! replayed from a CCEL event log) against an expected input set.
//!
//! For each register that differs, the report names the inputs it implicates and the
//! single-input variants of the expected set that reproduce it: the other PAGE.ADD
//! order, the other RTMR1 layout, kernel measured as is or with a QEMU-patched header at
//! common memory sizes, no initrd, load options without OVMF's ` initrd=initrd`,
//! command-line variants, no initdata, the initdata bytes under another algorithm or
//! with the final newline toggled. A variant counts only if every observed register it
//! changes equals the observation.
//!
//! An event log is first checked (event data against digests, and the replay against
//! the quote's RTMRs or the given RTMR values); its kernel, command-line and initrd
//! digests are then compared with the expected ones, which names the differing
//! component directly.

use super::{Cache, Loaded, Regs, TdxInputs, TdxRegister, TdxRegisters, View, memory_name};
use super::{names, order_name, short};
use crate::error::MeasureError;
use crate::explain::{cmdline_variants, show};
use crate::initdata::{InitdataAlgorithm, fit};
use crate::tdx::Mr48;
use crate::tdx::eventlog::EventLog;
use crate::tdx::mrtd::PageAddOrder;
use crate::tdx::quote::QuoteMeasurements;
use crate::tdx::rtmr::{Rtmr1Layout, ovmf_load_options, sha384};

/// Guest memory sizes tried for a QEMU-patched kernel header (MiB).
const MEMORY_MIB: [u64; 10] = [256, 512, 1024, 2048, 3072, 4096, 8192, 16384, 32768, 65536];

/// Observed TDX registers; `None` for a register that was not observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedTdx {
    /// MRTD.
    pub mrtd: Option<Mr48>,
    /// RTMR1.
    pub rtmr1: Option<Mr48>,
    /// RTMR2.
    pub rtmr2: Option<Mr48>,
    /// MRCONFIGID.
    pub mrconfigid: Option<Mr48>,
    /// RTMR0..3 of the quote the values came from, if any: an event log is checked
    /// against all four.
    pub quote_rtmrs: Option<[Mr48; 4]>,
}

impl From<&QuoteMeasurements> for ObservedTdx {
    fn from(q: &QuoteMeasurements) -> Self {
        Self {
            mrtd: Some(q.mrtd),
            rtmr1: Some(q.rtmrs[1]),
            rtmr2: Some(q.rtmrs[2]),
            mrconfigid: Some(q.mrconfigid),
            quote_rtmrs: Some(q.rtmrs),
        }
    }
}

impl ObservedTdx {
    /// The registers of a raw TD quote (its signature is not checked here).
    pub fn from_quote(quote: &[u8]) -> Result<Self, MeasureError> {
        Ok(Self::from(&QuoteMeasurements::from_quote(quote)?))
    }

    /// One observed register.
    pub fn get(&self, r: TdxRegister) -> Option<Mr48> {
        match r {
            TdxRegister::Mrtd => self.mrtd,
            TdxRegister::Rtmr1 => self.rtmr1,
            TdxRegister::Rtmr2 => self.rtmr2,
            TdxRegister::Mrconfigid => self.mrconfigid,
        }
    }

    /// Sets one observed register.
    pub fn set(&mut self, r: TdxRegister, value: Mr48) {
        let slot = match r {
            TdxRegister::Mrtd => &mut self.mrtd,
            TdxRegister::Rtmr1 => &mut self.rtmr1,
            TdxRegister::Rtmr2 => &mut self.rtmr2,
            TdxRegister::Mrconfigid => &mut self.mrconfigid,
        };
        *slot = Some(value);
    }

    fn hex(&self) -> TdxRegisters {
        TdxRegisters {
            mrtd: self.mrtd.map(hex::encode),
            rtmr1: self.rtmr1.map(hex::encode),
            rtmr2: self.rtmr2.map(hex::encode),
            mrconfigid: self.mrconfigid.map(hex::encode),
        }
    }
}

/// How an observed register compares with the expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterStatus {
    /// Equal.
    Matches,
    /// Different.
    Differs,
    /// Not observed (nothing to compare).
    NotObserved,
    /// Observed, but the expected set does not determine it (no firmware / no kernel).
    NotPredicted,
}

/// One register of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RegisterFinding {
    /// The register.
    pub register: TdxRegister,
    /// How it compares.
    pub status: RegisterStatus,
    /// The expected value (hex).
    pub expected: Option<String>,
    /// The observed value (hex).
    pub observed: Option<String>,
    /// For a differing register: the inputs it implicates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicates: Option<&'static str>,
    /// For a differing register: the variants that reproduce it (`input = value`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reproduced_by: Vec<String>,
}

/// A single-input change of the expected set that reproduces observed registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TdxExplanation {
    /// The input changed (`page_add_order`, `rtmr1_layout`, `patched_kernel_memory`,
    /// `initrd`, `load_options`, `cmdline`, `initdata`).
    pub input: &'static str,
    /// The value that reproduces the observation.
    pub value: String,
    /// Other values of the same input that give the same registers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub same_result: Vec<String>,
    /// The differing observed registers it reproduces.
    pub registers: Vec<TdxRegister>,
}

/// One boot component recorded in the event log, compared with the expected one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentFinding {
    /// `kernel` (Authenticode SHA-384), `cmdline` (SHA-384 of OVMF's load options) or
    /// `initrd` (SHA-384).
    pub component: &'static str,
    /// The digest the expected set gives (hex).
    pub expected: Option<String>,
    /// The digest the log records (hex).
    pub logged: Option<String>,
    /// Whether they are equal.
    pub matches: bool,
    /// Variants of the expected input whose digest is the logged one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reproduced_by: Vec<String>,
    /// What else the log says about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the event log showed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventLogFindings {
    /// RTMR0..3 replayed from the log (hex).
    pub replayed_rtmrs: Vec<String>,
    /// What the replay was checked against (the quote, the given RTMRs, or nothing).
    pub replay_checked_against: String,
    /// Kernel, command line and initrd.
    pub components: Vec<ComponentFinding>,
    /// The command-line text, when the log carries it (td-shim, GRUB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline_text: Option<String>,
}

/// The result of explaining observed TDX registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TdxObservedReport {
    /// Always `"tdx"`.
    pub platform: &'static str,
    /// The expected registers.
    pub expected: TdxRegisters,
    /// The observed registers (RTMR1/RTMR2 from the event log when not given otherwise).
    pub observed: TdxRegisters,
    /// Whether every register both sides know is equal.
    pub matches_expected: bool,
    /// The comparison, register by register.
    pub registers: Vec<RegisterFinding>,
    /// Single-input changes that reproduce differing registers.
    pub explanations: Vec<TdxExplanation>,
    /// Whether every differing register is reproduced by some explanation.
    pub fully_explained: bool,
    /// How many variants were tried.
    pub variants_tried: usize,
    /// The event log's findings, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_log: Option<EventLogFindings>,
    /// The findings in sentences.
    pub summary: Vec<String>,
}

/// The memory-size variants other than `current`.
fn memory_variants(current: Option<u64>) -> Vec<Option<u64>> {
    std::iter::once(None)
        .chain(MEMORY_MIB.iter().map(|m| Some(m << 20)))
        .filter(|m| *m != current)
        .collect()
}

/// Explains `observed` against `expected`: compares the registers, tries single-input
/// variants, and (with `event_log`) checks the log and compares the boot components it
/// records. A log whose data or replay does not hold is an error
/// ([`MeasureError::EventDataMismatch`], [`MeasureError::ReplayMismatch`]).
pub fn explain_observed_tdx(
    expected: &TdxInputs,
    observed: &ObservedTdx,
    event_log: Option<&EventLog>,
) -> Result<TdxObservedReport, MeasureError> {
    let loaded = Loaded::load(expected)?;
    let base = loaded.view();
    let mut cache = Cache::default();
    let exp = cache.regs(&base)?;
    let mut obs = observed.clone();
    let log_findings = match event_log {
        Some(log) => Some(check_log(log, &mut obs, &base, &mut cache)?),
        None => None,
    };
    if TdxRegister::ALL.iter().all(|r| obs.get(*r).is_none()) {
        return Err(MeasureError::InvalidInput(
            "nothing observed to explain: give a quote, register values or an event log".into(),
        ));
    }
    let differing: Vec<TdxRegister> = TdxRegister::ALL
        .into_iter()
        .filter(|r| matches!((exp.get(*r), obs.get(*r)), (Some(e), Some(o)) if e != o))
        .collect();

    let cmdlines = cmdline_variants(expected.cmdline.as_deref());
    let mut variants: Vec<(&'static str, String, View<'_>)> = Vec::new();
    if base.firmware.is_some() {
        let order = match base.order {
            PageAddOrder::SinglePass => PageAddOrder::TwoPass,
            PageAddOrder::TwoPass => PageAddOrder::SinglePass,
        };
        variants.push((
            "page_add_order",
            order_name(order).into(),
            View { order, ..base },
        ));
    }
    if base.kernel.is_some() {
        let layout = match base.layout {
            Rtmr1Layout::Ovmf => Rtmr1Layout::TdvfLegacy,
            Rtmr1Layout::TdvfLegacy => Rtmr1Layout::Ovmf,
        };
        variants.push((
            "rtmr1_layout",
            super::layout_name(layout).into(),
            View { layout, ..base },
        ));
        for m in memory_variants(base.patched_memory) {
            variants.push((
                "patched_kernel_memory",
                memory_name(m),
                View {
                    patched_memory: m,
                    ..base
                },
            ));
        }
        if base.initrd.is_some() {
            variants.push((
                "initrd",
                "(none)".into(),
                View {
                    initrd: None,
                    ..base
                },
            ));
            variants.push((
                "load_options",
                "without OVMF's \" initrd=initrd\"".into(),
                View {
                    initrd_suffix: false,
                    ..base
                },
            ));
        }
        for c in &cmdlines {
            variants.push((
                "cmdline",
                show(c),
                View {
                    cmdline: c.as_deref(),
                    ..base
                },
            ));
        }
    }
    if let Some(d) = &loaded.initdata {
        variants.push((
            "initdata",
            "(none)".into(),
            View {
                mrconfigid: Some([0; 48]),
                ..base
            },
        ));
        for alg in [
            InitdataAlgorithm::Sha256,
            InitdataAlgorithm::Sha384,
            InitdataAlgorithm::Sha512,
        ] {
            if alg != d.algorithm {
                variants.push((
                    "initdata",
                    format!("the same bytes hashed with {}", alg.name()),
                    View {
                        mrconfigid: Some(fit(&alg.digest(&d.raw))),
                        ..base
                    },
                ));
            }
        }
        let (value, raw) = match d.raw.strip_suffix(b"\n") {
            Some(r) => ("the bytes without their final newline", r.to_vec()),
            None => (
                "the bytes with a final newline",
                [&d.raw[..], b"\n"].concat(),
            ),
        };
        variants.push((
            "initdata",
            value.into(),
            View {
                mrconfigid: Some(fit(&d.algorithm.digest(&raw))),
                ..base
            },
        ));
    }

    let variants_tried = variants.len();
    let mut found: Vec<(TdxExplanation, Regs)> = Vec::new();
    for (input, value, view) in variants {
        let Ok(r) = cache.regs(&view) else { continue };
        let changed = r.differing(&exp);
        let consistent = changed
            .iter()
            .all(|reg| obs.get(*reg).is_none_or(|o| r.get(*reg) == Some(o)));
        let reproduced: Vec<TdxRegister> = changed
            .iter()
            .copied()
            .filter(|reg| differing.contains(reg) && r.get(*reg) == obs.get(*reg))
            .collect();
        if !consistent || reproduced.is_empty() {
            continue;
        }
        match found
            .iter_mut()
            .find(|(e, rr)| e.input == input && *rr == r)
        {
            Some((e, _)) => e.same_result.push(value),
            None => found.push((
                TdxExplanation {
                    input,
                    value,
                    same_result: Vec::new(),
                    registers: reproduced,
                },
                r,
            )),
        }
    }
    let explanations: Vec<TdxExplanation> = found.into_iter().map(|(e, _)| e).collect();

    let registers: Vec<RegisterFinding> = TdxRegister::ALL
        .into_iter()
        .map(|reg| {
            let status = match (exp.get(reg), obs.get(reg)) {
                (_, None) => RegisterStatus::NotObserved,
                (None, Some(_)) => RegisterStatus::NotPredicted,
                (Some(e), Some(o)) if e == o => RegisterStatus::Matches,
                _ => RegisterStatus::Differs,
            };
            let differs = status == RegisterStatus::Differs;
            RegisterFinding {
                register: reg,
                status,
                expected: exp.get(reg).map(hex::encode),
                observed: obs.get(reg).map(hex::encode),
                implicates: differs.then(|| reg.implicates()),
                reproduced_by: explanations
                    .iter()
                    .filter(|e| differs && e.registers.contains(&reg))
                    .map(|e| format!("{} = {}", e.input, e.value))
                    .collect(),
            }
        })
        .collect();
    let fully_explained = !differing.is_empty()
        && differing
            .iter()
            .all(|r| explanations.iter().any(|e| e.registers.contains(r)));
    let summary = summarise(&registers, log_findings.as_ref());
    Ok(TdxObservedReport {
        platform: "tdx",
        expected: exp.hex(),
        observed: obs.hex(),
        matches_expected: differing.is_empty(),
        registers,
        explanations,
        fully_explained,
        variants_tried,
        event_log: log_findings,
        summary,
    })
}

/// Checks the log, fills RTMR1/RTMR2 of `obs` from its replay where they were not
/// observed otherwise, and compares its boot components with the expected ones.
fn check_log<'a>(
    log: &EventLog,
    obs: &mut ObservedTdx,
    base: &View<'a>,
    cache: &mut Cache<'a>,
) -> Result<EventLogFindings, MeasureError> {
    let components = log.boot_components()?;
    let replayed = log.replay()?;
    let mut against = Vec::new();
    if let Some(q) = &obs.quote_rtmrs {
        log.verify_against(q)?;
        against.push("the quote's RTMR0..3");
    }
    for (reg, i) in [(TdxRegister::Rtmr1, 1), (TdxRegister::Rtmr2, 2)] {
        if let Some(o) = obs.get(reg) {
            if o != replayed[i] {
                return Err(MeasureError::ReplayMismatch {
                    register: reg.name().to_string(),
                    replayed: hex::encode(replayed[i]),
                    reported: hex::encode(o),
                });
            }
            if obs.quote_rtmrs.is_none() {
                against.push(if i == 1 {
                    "the given RTMR1"
                } else {
                    "the given RTMR2"
                });
            }
        } else {
            obs.set(reg, replayed[i]);
        }
    }
    let replay_checked_against = if against.is_empty() {
        "nothing: the log is bound to no quote or register value, so its findings are only \
         as trustworthy as the log"
            .to_string()
    } else {
        against.join(", ")
    };

    let expected = cache.direct_boot(base)?;
    let no_kernel = "the expected set names no kernel: nothing to compare";
    let mut found = Vec::new();

    // Kernel: as measured, or under another kernel-load mode.
    let exp_kernel = expected.map(|d| hex::encode(d.kernel));
    let mut kernel = component("kernel", exp_kernel, components.kernel.clone());
    if let (false, Some(k), Some(logged)) = (kernel.matches, base.kernel, &kernel.logged) {
        let initrd_len = base.initrd.map_or(0, <[u8]>::len);
        for m in memory_variants(base.patched_memory) {
            if cache
                .kernel(k, m, initrd_len)
                .is_ok_and(|d| hex::encode(d) == *logged)
            {
                kernel
                    .reproduced_by
                    .push(format!("patched_kernel_memory = {}", memory_name(m)));
            }
        }
        if kernel.reproduced_by.is_empty() {
            kernel.note = Some("a different kernel image was measured".into());
        }
    }
    if base.kernel.is_none() {
        kernel.note = Some(no_kernel.into());
    } else if kernel.logged.is_none() {
        kernel.note = Some("the log records no kernel".into());
    }
    found.push(kernel);

    // Command line: OVMF's load options, or the text td-shim / GRUB record.
    let exp_options = expected.and_then(|d| d.load_options.map(hex::encode));
    let mut cmdline = component("cmdline", exp_options, components.cmdline.clone());
    if let Some(text) = &components.cmdline_text {
        let same_text = base.cmdline.unwrap_or("") == text.trim_end_matches('\0');
        cmdline.note = Some(format!(
            "the log's command-line text is {text:?}{}",
            if same_text {
                ", the expected cmdline (compared by text: this loader measures the text, \
                 not OVMF's load options)"
            } else {
                ", not the expected cmdline"
            }
        ));
        if same_text {
            cmdline.matches = true;
        }
    }
    if let (false, Some(logged), true) = (cmdline.matches, &cmdline.logged, base.kernel.is_some()) {
        let has_initrd = base.initrd.is_some();
        let digest_of = |c: Option<&str>, suffix: bool| {
            let o = ovmf_load_options(c, suffix);
            (!o.is_empty()).then(|| hex::encode(sha384(&o)))
        };
        for c in cmdline_variants(base.cmdline) {
            if digest_of(c.as_deref(), has_initrd).as_ref() == Some(logged) {
                cmdline
                    .reproduced_by
                    .push(format!("cmdline = {}", show(&c)));
            }
        }
        if has_initrd && digest_of(base.cmdline, false).as_ref() == Some(logged) {
            cmdline
                .reproduced_by
                .push("load_options = without OVMF's \" initrd=initrd\"".into());
        }
        if !has_initrd && digest_of(base.cmdline, true).as_ref() == Some(logged) {
            cmdline
                .reproduced_by
                .push("initrd: the guest had one (load options carry \" initrd=initrd\")".into());
        }
    }
    if base.kernel.is_none() {
        cmdline.note = Some(no_kernel.into());
    }
    found.push(cmdline);

    // Initrd.
    let exp_initrd = expected.and_then(|d| d.initrd.map(hex::encode));
    let mut initrd = component("initrd", exp_initrd, components.initrd.clone());
    initrd.note = match (base.kernel.is_some(), &initrd.expected, &initrd.logged) {
        (false, _, _) => Some(no_kernel.into()),
        (true, Some(_), None) => Some(
            "the log records no initrd: the guest booted without one (or its kernel's EFI \
             stub does not measure it)"
                .into(),
        ),
        (true, None, Some(_)) => Some("the expected set has no initrd, the log records one".into()),
        (true, Some(e), Some(l)) if e != l => Some("a different initrd was loaded".into()),
        _ => None,
    };
    found.push(initrd);

    Ok(EventLogFindings {
        replayed_rtmrs: replayed.iter().map(hex::encode).collect(),
        replay_checked_against,
        components: found,
        cmdline_text: components.cmdline_text,
    })
}

fn component(
    name: &'static str,
    expected: Option<String>,
    logged: Option<String>,
) -> ComponentFinding {
    ComponentFinding {
        component: name,
        matches: expected.is_some() && expected == logged,
        expected,
        logged,
        reproduced_by: Vec::new(),
        note: None,
    }
}

const NP: &str = "(not predicted)";

fn summarise(registers: &[RegisterFinding], log: Option<&EventLogFindings>) -> Vec<String> {
    let mut out = Vec::new();
    for f in registers {
        let line = match f.status {
            RegisterStatus::NotObserved => continue,
            RegisterStatus::Matches => format!("{} matches the expected value", f.register),
            RegisterStatus::NotPredicted => format!(
                "{} observed ({}) but the expected set does not determine it",
                f.register,
                short(f.observed.as_deref(), NP)
            ),
            RegisterStatus::Differs => format!(
                "{} differs (expected {}, observed {}): implicates {}; {}",
                f.register,
                short(f.expected.as_deref(), NP),
                short(f.observed.as_deref(), NP),
                f.implicates.unwrap_or(""),
                if f.reproduced_by.is_empty() {
                    "no single-input variant tried reproduces it".to_string()
                } else {
                    format!("reproduced by {}", f.reproduced_by.join("; "))
                }
            ),
        };
        out.push(line);
    }
    let differing: Vec<TdxRegister> = registers
        .iter()
        .filter(|f| f.status == RegisterStatus::Differs)
        .map(|f| f.register)
        .collect();
    if differing.is_empty() {
        out.push("every observed register the expected set determines matches".into());
    } else {
        out.push(format!("differing: {}", names(&differing)));
    }
    if let Some(l) = log {
        out.push(format!(
            "event log replay checked against {}",
            l.replay_checked_against
        ));
        for c in &l.components {
            let mut line = if c.matches {
                format!("event log: {} matches the expected one", c.component)
            } else {
                format!(
                    "event log: {} differs (log {}, expected {})",
                    c.component,
                    short(c.logged.as_deref(), "(none)"),
                    short(c.expected.as_deref(), "(none)")
                )
            };
            if !c.reproduced_by.is_empty() {
                line.push_str(&format!("; reproduced by {}", c.reproduced_by.join("; ")));
            }
            if let Some(n) = &c.note {
                line.push_str(&format!("; {n}"));
            }
            out.push(line);
        }
    }
    out
}
