//! Argument structs and entry points for `cocoon measure snp|tdx|diff` (feature `cli`).
//!
//! [`SnpArgs`] accepts the flags of `sev-snp-measure` so users can switch
//! without relearning; `--initdata` and `--reference-values` are Cocoon additions.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::MeasureError;
use crate::explain::tdx::Q35_ACPI_DATA_SIZE;
use crate::explain::{
    InputSet, ObservedTdx, Platform, TdxRegister, diff, diff_tdx, explain_observed,
    explain_observed_tdx,
};
use crate::initdata::Initdata;
use crate::refvalues::{ReferenceValues, keys, snp_reference_values, tdx_reference_values};
use crate::snp::{SnpInputs, VcpuModel, read_file};
use crate::tdx::eventlog::EventLog;
use crate::tdx::mrtd::{PageAddOrder, Tdvf};
use crate::tdx::quote::QuoteMeasurements;
use crate::tdx::rtmr::{DirectBootDigests, KernelLoad, Rtmr1Layout};

/// Output encodings of a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// Which reference-value document to print instead of the bare digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefValuesFormat {
    /// The JSON map our KBS consumes.
    Kbs,
    /// A trustee RVPS "sample" registration message.
    Rvps,
}

fn parse_auto_int(s: &str) -> Result<u64, String> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if let Some(o) = s.strip_prefix("0o") {
        u64::from_str_radix(o, 8)
    } else if let Some(b) = s.strip_prefix("0b") {
        u64::from_str_radix(b, 2)
    } else {
        s.parse()
    };
    r.map_err(|e| format!("invalid integer {s:?}: {e}"))
}

fn parse_auto_u32(s: &str) -> Result<u32, String> {
    let v = parse_auto_int(s)?;
    u32::try_from(v).map_err(|_| format!("{s} does not fit in 32 bits"))
}

/// `cocoon measure snp`: the flags of `sev-snp-measure`.
#[derive(Debug, Clone, clap::Args)]
pub struct SnpArgs {
    /// Guest mode; only `snp` is supported.
    #[arg(long, default_value = "snp")]
    pub mode: String,
    /// Number of guest vCPUs (required unless the caller fills the inputs in, as
    /// `cocoon measure snp --config` does).
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// QEMU vCPU model (EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, ...).
    #[arg(long, value_name = "CPUTYPE")]
    pub vcpu_type: Option<String>,
    /// Guest vCPU signature (CPUID 1 EAX), decimal or 0x-hex.
    #[arg(long, value_name = "VALUE", value_parser = parse_auto_u32)]
    pub vcpu_sig: Option<u32>,
    /// Guest vCPU family (with --vcpu-model and --vcpu-stepping).
    #[arg(long, value_name = "FAMILY")]
    pub vcpu_family: Option<u32>,
    /// Guest vCPU model.
    #[arg(long, value_name = "MODEL", requires = "vcpu_family")]
    pub vcpu_model: Option<u32>,
    /// Guest vCPU stepping.
    #[arg(long, value_name = "STEPPING", requires = "vcpu_family")]
    pub vcpu_stepping: Option<u32>,
    /// VMM type: QEMU, ec2 or gce.
    #[arg(long, value_name = "VMMTYPE", default_value = "QEMU")]
    pub vmm_type: String,
    /// OVMF firmware image (required unless the caller fills the inputs in).
    #[arg(long, value_name = "PATH")]
    pub ovmf: Option<PathBuf>,
    /// Kernel for measured direct boot.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd (needs --kernel).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (needs --kernel).
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub append: Option<String>,
    /// Guest features (SEV_FEATURES), decimal or 0x-hex.
    #[arg(long, value_name = "VALUE", default_value = "0x1", value_parser = parse_auto_int)]
    pub guest_features: u64,
    /// Output format of the digest.
    #[arg(long, value_enum, default_value = "hex")]
    pub output_format: OutputFormat,
    /// Print "Calculated SEV_SNP guest measurement: ..." like `sev-snp-measure -v`.
    #[arg(short, long)]
    pub verbose: bool,
    /// Initdata TOML (Cocoon addition): adds HOST_DATA to reference values.
    #[arg(long, value_name = "PATH")]
    pub initdata: Option<PathBuf>,
    /// Print reference values in this format instead of the digest (Cocoon addition).
    #[arg(long, value_enum)]
    pub reference_values: Option<RefValuesFormat>,
}

impl SnpArgs {
    /// The measurement inputs these flags describe.
    pub fn inputs(&self) -> Result<SnpInputs, MeasureError> {
        if !matches!(self.mode.as_str(), "snp" | "sev-snp" | "SNP" | "SEV-SNP") {
            return Err(MeasureError::InvalidInput(format!(
                "mode {:?} is not supported (only snp)",
                self.mode
            )));
        }
        // Same precedence as sev-snp-measure: family, then signature, then type.
        let vcpu_type = if let Some(family) = self.vcpu_family {
            Some(VcpuModel::Family {
                family,
                model: self.vcpu_model.unwrap_or(0),
                stepping: self.vcpu_stepping.unwrap_or(0),
            })
        } else if let Some(sig) = self.vcpu_sig {
            Some(VcpuModel::Signature(sig))
        } else {
            self.vcpu_type.clone().map(VcpuModel::Named)
        };
        let ovmf = self.ovmf.clone().ok_or_else(|| {
            MeasureError::InvalidInput("--ovmf <PATH> is required (or --config)".to_string())
        })?;
        let vcpus = self.vcpus.ok_or_else(|| {
            MeasureError::InvalidInput("--vcpus <N> is required (or --config)".to_string())
        })?;
        Ok(SnpInputs {
            ovmf,
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.append.clone(),
            vcpus,
            vcpu_type,
            guest_features: self.guest_features,
            vmm_type: self.vmm_type.parse()?,
        })
    }
}

fn load_initdata(p: &Option<PathBuf>) -> Result<Option<Initdata>, MeasureError> {
    p.as_ref()
        .map(|p| Initdata::parse(&read_file("initdata", p)?))
        .transpose()
}

fn render_refs(r: &ReferenceValues, f: RefValuesFormat) -> String {
    let v = match f {
        RefValuesFormat::Kbs => r.to_kbs_json(),
        RefValuesFormat::Rvps => r.to_rvps_message(),
    };
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Runs `cocoon measure snp`: the digest (as `sev-snp-measure` prints it) or reference values.
pub fn run_snp(args: &SnpArgs) -> Result<String, MeasureError> {
    let inputs = args.inputs()?;
    if let Some(f) = args.reference_values {
        let init = load_initdata(&args.initdata)?;
        return Ok(render_refs(
            &snp_reference_values(&inputs, init.as_ref())?,
            f,
        ));
    }
    let d = inputs.digest()?;
    let text = match args.output_format {
        OutputFormat::Hex => d.to_hex(),
        OutputFormat::Base64 => d.to_base64(),
    };
    Ok(if args.verbose {
        format!("Calculated SEV_SNP guest measurement: {text}")
    } else {
        text
    })
}

/// `cocoon measure tdx`: MRTD from firmware and/or RTMR replay of an event log.
#[derive(Debug, Clone, clap::Args)]
pub struct TdxArgs {
    /// TDVF firmware image: compute MRTD.
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// Use the two-pass PAGE.ADD/MR.EXTEND order of older TDX QEMU trees.
    #[arg(long)]
    pub two_pass_add_pages: bool,
    /// CCEL event log: replay it into RTMR0..3 and extract boot-component digests.
    #[arg(long, value_name = "PATH")]
    pub event_log: Option<PathBuf>,
    /// TD quote: check the replayed RTMRs (and the MRTD) against it.
    #[arg(long, value_name = "PATH", requires = "event_log")]
    pub quote: Option<PathBuf>,
    /// Initdata TOML: adds MRCONFIGID to the output.
    #[arg(long, value_name = "PATH")]
    pub initdata: Option<PathBuf>,
    /// Kernel (EFI-stub bzImage) of an OVMF direct boot: predict RTMR1 and RTMR2.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd of the direct boot (needs --kernel).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (`-append`) of the direct boot (needs --kernel).
    #[arg(
        long,
        value_name = "CMDLINE",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub append: Option<String>,
    /// RTMR1 event order of the firmware.
    #[arg(long, value_enum, default_value = "ovmf")]
    pub rtmr1_layout: Rtmr1Layout,
    /// Older OVMF (up to edk2-stable202502) measured the kernel after QEMU patched its
    /// boot header; give the guest memory in bytes to predict that (q35 ACPI area).
    #[arg(long, value_name = "BYTES", requires = "kernel")]
    pub patched_kernel_memory: Option<u64>,
    /// Print reference values in this format instead of the report.
    #[arg(long, value_enum)]
    pub reference_values: Option<RefValuesFormat>,
}

fn predict_direct_boot(args: &TdxArgs) -> Result<Option<DirectBootDigests>, MeasureError> {
    let Some(k) = &args.kernel else {
        return Ok(None);
    };
    let kernel = read_file("kernel", k)?;
    let initrd = args
        .initrd
        .as_ref()
        .map(|p| read_file("initrd", p))
        .transpose()?;
    let load = match args.patched_kernel_memory {
        Some(memory_bytes) => KernelLoad::QemuPatched {
            memory_bytes,
            acpi_data_size: Q35_ACPI_DATA_SIZE,
        },
        None => KernelLoad::AsIs,
    };
    DirectBootDigests::compute(&kernel, initrd.as_deref(), args.append.as_deref(), load).map(Some)
}

/// Runs `cocoon measure tdx`; returns a JSON report (or reference values). A replay
/// that does not match the quote is an error ([`MeasureError::ReplayMismatch`]).
pub fn run_tdx(args: &TdxArgs) -> Result<String, MeasureError> {
    if args.firmware.is_none()
        && args.event_log.is_none()
        && args.initdata.is_none()
        && args.kernel.is_none()
    {
        return Err(MeasureError::InvalidInput(
            "give --firmware, --kernel, --event-log or --initdata".to_string(),
        ));
    }
    let order = if args.two_pass_add_pages {
        PageAddOrder::TwoPass
    } else {
        PageAddOrder::SinglePass
    };
    let mrtd = match &args.firmware {
        Some(p) => Some(Tdvf::parse(read_file("firmware", p)?)?.mrtd(order)),
        None => None,
    };
    let mut report = serde_json::Map::new();
    if let Some(m) = &mrtd {
        report.insert("mrtd".into(), hex::encode(m).into());
    }
    let mut rtmrs = None;
    if let Some(p) = &args.event_log {
        let log = EventLog::parse(&read_file("event log", p)?)?;
        let replayed = log.replay()?;
        report.insert(
            "rtmrs".into(),
            replayed.iter().map(hex::encode).collect::<Vec<_>>().into(),
        );
        report.insert(
            "boot_components".into(),
            serde_json::to_value(log.boot_components()?).unwrap_or_default(),
        );
        if let Some(q) = &args.quote {
            let qm = QuoteMeasurements::from_quote(&read_file("quote", q)?)?;
            log.verify_against(&qm.rtmrs)?;
            report.insert("quote_rtmrs_match".into(), true.into());
            if let Some(m) = &mrtd {
                report.insert("quote_mrtd_matches".into(), (qm.mrtd == *m).into());
            }
        }
        rtmrs = Some(replayed);
    }
    let predicted = predict_direct_boot(args)?;
    if let Some(p) = &predicted {
        report.insert(
            "predicted".into(),
            serde_json::json!({
                "rtmr1": hex::encode(p.rtmr1(args.rtmr1_layout)),
                "rtmr2": hex::encode(p.rtmr2()),
                "kernel_authenticode_sha384": hex::encode(p.kernel),
                "load_options_sha384": p.load_options.map(hex::encode),
                "initrd_sha384": p.initrd.map(hex::encode),
            }),
        );
    }
    let init = load_initdata(&args.initdata)?;
    if let Some(d) = &init {
        report.insert("mrconfigid".into(), hex::encode(d.tdx_mrconfigid()).into());
    }
    if let Some(f) = args.reference_values {
        let mut r = tdx_reference_values(mrtd.as_ref(), rtmrs.as_ref(), init.as_ref());
        if let Some(p) = &predicted {
            r.add(&keys::tdx_rtmr(1), &p.rtmr1(args.rtmr1_layout));
            r.add(&keys::tdx_rtmr(2), &p.rtmr2());
        }
        return Ok(render_refs(&r, f));
    }
    Ok(serde_json::to_string_pretty(&report).unwrap_or_default())
}

/// `cocoon measure diff`: compare two input sets, or explain observed measurements.
///
/// A and B are input files (JSON, or TOML when named `*.toml`): SNP
/// (`MeasurementInputs`) or TDX (`TdxInputs`, chosen by `platform = "tdx"` or a
/// TDX-only key). SNP observations: `--observed`. TDX observations: `--quote`, or
/// `--mrtd` / `--rtmr1` / `--rtmr2` / `--mrconfigid`, and/or `--event-log`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Input file with the expected inputs (SNP or TDX).
    pub a: PathBuf,
    /// Input file with the other inputs (same platform as A).
    #[arg(required_unless_present_any = [
        "observed", "quote", "event_log", "mrtd", "rtmr1", "rtmr2", "mrconfigid"
    ])]
    pub b: Option<PathBuf>,
    /// SNP: an observed launch digest (hex or base64) to explain against A.
    #[arg(long, conflicts_with = "b")]
    pub observed: Option<String>,
    /// Largest vCPU count to try when explaining (SNP).
    #[arg(long, default_value_t = 16)]
    pub max_vcpus: u32,
    /// TDX: a TD quote whose MRTD, RTMR1, RTMR2 and MRCONFIGID to explain against A.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["b", "mrtd", "rtmr1", "rtmr2", "mrconfigid"])]
    pub quote: Option<PathBuf>,
    /// TDX: an observed MRTD (48 bytes, hex or base64).
    #[arg(long, value_name = "HEX", conflicts_with = "b")]
    pub mrtd: Option<String>,
    /// TDX: an observed RTMR1 (48 bytes, hex or base64).
    #[arg(long, value_name = "HEX", conflicts_with = "b")]
    pub rtmr1: Option<String>,
    /// TDX: an observed RTMR2 (48 bytes, hex or base64).
    #[arg(long, value_name = "HEX", conflicts_with = "b")]
    pub rtmr2: Option<String>,
    /// TDX: an observed MRCONFIGID (48 bytes, hex or base64).
    #[arg(long, value_name = "HEX", conflicts_with = "b")]
    pub mrconfigid: Option<String>,
    /// TDX: the CCEL event log of the observed boot (raw, or gzip): checked against the
    /// quote / the given RTMRs, replayed, and its kernel / command-line / initrd digests
    /// compared with A's.
    #[arg(long, value_name = "PATH", conflicts_with = "b")]
    pub event_log: Option<PathBuf>,
}

/// Largest event log accepted (after decompression); real CCEL areas are 64 KiB - 1 MiB.
const MAX_EVENT_LOG: u64 = 64 * 1024 * 1024;

fn decode_register(flag: &str, text: &str) -> Result<[u8; 48], MeasureError> {
    let t = text.trim();
    let h = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(h)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(t))
        .map_err(|_| {
            MeasureError::InvalidInput(format!("{flag}: {t:?} is neither hex nor base64"))
        })?;
    let n = bytes.len();
    bytes.try_into().map_err(|_| {
        MeasureError::InvalidInput(format!(
            "{flag}: a TDX measurement register is 48 bytes (96 hex digits), got {n} bytes"
        ))
    })
}

fn read_event_log(p: &Path) -> Result<EventLog, MeasureError> {
    use std::io::Read as _;
    let raw = read_file("event log", p)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_EVENT_LOG + 1)
            .read_to_end(&mut out)
            .map_err(|e| MeasureError::io("event log", p, e))?;
        if out.len() as u64 > MAX_EVENT_LOG {
            return Err(MeasureError::EventLog(format!(
                "{}: more than {MAX_EVENT_LOG} bytes once decompressed",
                p.display()
            )));
        }
        out
    } else {
        raw
    };
    EventLog::parse(&bytes)
}

impl DiffArgs {
    fn tdx_observation_flags(&self) -> Vec<&'static str> {
        [
            ("--quote", self.quote.is_some()),
            ("--event-log", self.event_log.is_some()),
            ("--mrtd", self.mrtd.is_some()),
            ("--rtmr1", self.rtmr1.is_some()),
            ("--rtmr2", self.rtmr2.is_some()),
            ("--mrconfigid", self.mrconfigid.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect()
    }

    fn tdx_observed(&self) -> Result<ObservedTdx, MeasureError> {
        let mut o = match &self.quote {
            Some(q) => ObservedTdx::from_quote(&read_file("quote", q)?)?,
            None => ObservedTdx::default(),
        };
        for (flag, value, reg) in [
            ("--mrtd", &self.mrtd, TdxRegister::Mrtd),
            ("--rtmr1", &self.rtmr1, TdxRegister::Rtmr1),
            ("--rtmr2", &self.rtmr2, TdxRegister::Rtmr2),
            ("--mrconfigid", &self.mrconfigid, TdxRegister::Mrconfigid),
        ] {
            if let Some(v) = value {
                o.set(reg, decode_register(flag, v)?);
            }
        }
        Ok(o)
    }
}

fn mixed(a: &Path, pa: Platform, b: &Path, pb: Platform) -> MeasureError {
    MeasureError::InvalidInput(format!(
        "A ({}) is a {} input set and B ({}) a {} one: A and B must describe the same \
         platform",
        a.display(),
        pa.name().to_uppercase(),
        b.display(),
        pb.name().to_uppercase()
    ))
}

/// Runs `cocoon measure diff`; returns a JSON report (for TDX with a `summary` of the
/// findings in sentences). Bad input (unreadable file, wrong register length, SNP and
/// TDX inputs or observations mixed) is an error.
pub fn run_diff(args: &DiffArgs) -> Result<String, MeasureError> {
    let a = InputSet::read(&args.a)?;
    let tdx_flags = args.tdx_observation_flags();
    let value = match a {
        InputSet::Snp(a) => {
            if !tdx_flags.is_empty() {
                return Err(MeasureError::InvalidInput(format!(
                    "{} is an SNP input set, but {} observe TDX registers (for SNP give \
                     --observed with the launch digest)",
                    args.a.display(),
                    tdx_flags.join(", ")
                )));
            }
            if let Some(obs) = &args.observed {
                let t = obs.trim();
                let bytes = hex::decode(t)
                    .or_else(|_| base64::engine::general_purpose::STANDARD.decode(t))
                    .map_err(|_| {
                        MeasureError::InvalidInput(format!("{t:?} is neither hex nor base64"))
                    })?;
                let arr: [u8; 48] = bytes.try_into().map_err(|_| {
                    MeasureError::InvalidInput("an SNP launch digest is 48 bytes".to_string())
                })?;
                serde_json::to_value(explain_observed(&a.snp, &arr, args.max_vcpus)?)
            } else if let Some(b) = &args.b {
                match InputSet::read(b)? {
                    InputSet::Snp(b) => serde_json::to_value(diff(&a, &b)?),
                    other => return Err(mixed(&args.a, Platform::Snp, b, other.platform())),
                }
            } else {
                return Err(MeasureError::InvalidInput(
                    "give B or --observed".to_string(),
                ));
            }
        }
        InputSet::Tdx(a) => {
            if args.observed.is_some() {
                return Err(MeasureError::InvalidInput(format!(
                    "{} is a TDX input set, but --observed is an SNP launch digest (for TDX \
                     give --quote, --event-log or --mrtd/--rtmr1/--rtmr2/--mrconfigid)",
                    args.a.display()
                )));
            }
            if !tdx_flags.is_empty() {
                let observed = args.tdx_observed()?;
                let log = args.event_log.as_deref().map(read_event_log).transpose()?;
                serde_json::to_value(explain_observed_tdx(&a, &observed, log.as_ref())?)
            } else if let Some(b) = &args.b {
                match InputSet::read(b)? {
                    InputSet::Tdx(b) => serde_json::to_value(diff_tdx(&a, &b)?),
                    other => return Err(mixed(&args.a, Platform::Tdx, b, other.platform())),
                }
            } else {
                return Err(MeasureError::InvalidInput(
                    "give B, --quote, --event-log or --mrtd/--rtmr1/--rtmr2/--mrconfigid"
                        .to_string(),
                ));
            }
        }
    };
    Ok(serde_json::to_string_pretty(&value.unwrap_or_default()).unwrap_or_default())
}
