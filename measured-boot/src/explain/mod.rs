//! Explaining measurement differences, for SEV-SNP and TDX.
//!
//! - [`snp`]: `diff(A, B)` over the SNP launch inputs (which input accounts for two
//!   different launch digests) and `explain_observed` (which single-input change
//!   reproduces an observed digest).
//! - [`tdx`]: the same for the TDX registers an input set determines (MRTD from the
//!   firmware, RTMR1 / RTMR2 from an OVMF direct boot, MRCONFIGID from initdata), and
//!   the explanation of observed registers from a quote, hex values or a CCEL event log.
//!
//! [`InputSet`] reads one input file (JSON or TOML) and decides its platform: a
//! `platform` (or `tee`) key of `"snp"` / `"tdx"`, otherwise the keys only one platform
//! has (`ovmf`, `vcpus`, ... for SNP; `firmware`, `page_add_order`, ... for TDX).
//! Files without either are SNP, as before TDX was supported.

use std::path::Path;

use crate::error::MeasureError;
use crate::snp::read_file;

pub mod snp;
pub mod tdx;

pub use snp::{
    DiffReport, Explanation, InputDifference, MeasurementInputs, ObservedReport, diff,
    explain_observed,
};
pub use tdx::{
    ObservedTdx, TdxDiffReport, TdxInputs, TdxObservedReport, TdxRegister, TdxRegisters, diff_tdx,
    explain_observed_tdx,
};

/// The TEE an input set describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// AMD SEV-SNP (launch digest, HOST_DATA).
    Snp,
    /// Intel TDX (MRTD, RTMR1/RTMR2, MRCONFIGID).
    Tdx,
}

impl Platform {
    /// The lower-case name used in input files (`"snp"`, `"tdx"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Snp => "snp",
            Self::Tdx => "tdx",
        }
    }
}

/// Keys only an SNP input set has.
const SNP_ONLY_KEYS: [&str; 5] = ["ovmf", "vcpus", "vcpu_type", "guest_features", "vmm_type"];
/// Keys only a TDX input set has.
const TDX_ONLY_KEYS: [&str; 4] = [
    "firmware",
    "page_add_order",
    "rtmr1_layout",
    "patched_kernel_memory",
];

/// One input set of `cocoon measure diff`, SNP or TDX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSet {
    /// SEV-SNP launch inputs (and initdata).
    Snp(MeasurementInputs),
    /// TDX inputs (firmware, direct boot, initdata).
    Tdx(TdxInputs),
}

/// The serialisation of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// JSON (the default).
    Json,
    /// TOML (files named `*.toml`).
    Toml,
}

impl InputSet {
    /// The platform of this set.
    pub fn platform(&self) -> Platform {
        match self {
            Self::Snp(_) => Platform::Snp,
            Self::Tdx(_) => Platform::Tdx,
        }
    }

    /// Reads an input file: TOML when it is named `*.toml`, JSON otherwise.
    pub fn read(path: &Path) -> Result<Self, MeasureError> {
        let bytes = read_file("inputs", path)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            MeasureError::InvalidInput(format!("{}: inputs are not UTF-8: {e}", path.display()))
        })?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => InputFormat::Toml,
            _ => InputFormat::Json,
        };
        Self::parse(text, format)
            .map_err(|e| MeasureError::InvalidInput(format!("{}: {}", path.display(), bare(e))))
    }

    /// Parses the text of an input file.
    pub fn parse(text: &str, format: InputFormat) -> Result<Self, MeasureError> {
        let value: serde_json::Value = match format {
            InputFormat::Json => serde_json::from_str(text).map_err(|e| {
                MeasureError::InvalidInput(format!("not a measurement-inputs JSON: {e}"))
            })?,
            InputFormat::Toml => toml::from_str(text).map_err(|e| {
                MeasureError::InvalidInput(format!("not a measurement-inputs TOML: {e}"))
            })?,
        };
        Self::from_value(value)
    }

    /// Builds an input set from a parsed document (see the module documentation for how
    /// the platform is chosen). Mixing keys of both platforms is an error.
    pub fn from_value(value: serde_json::Value) -> Result<Self, MeasureError> {
        let serde_json::Value::Object(mut map) = value else {
            return Err(MeasureError::InvalidInput(
                "measurement inputs must be an object (a JSON object or a TOML table)".into(),
            ));
        };
        let declared = declared_platform(&mut map)?;
        let present = |keys: &[&'static str]| -> Vec<&'static str> {
            keys.iter()
                .copied()
                .filter(|k| map.contains_key(*k))
                .collect()
        };
        let snp_keys = present(&SNP_ONLY_KEYS);
        let tdx_keys = present(&TDX_ONLY_KEYS);
        let platform = match declared {
            Some(p) => p,
            None if !tdx_keys.is_empty() => Platform::Tdx,
            None => Platform::Snp,
        };
        let (foreign, foreign_platform) = match platform {
            Platform::Snp => (&tdx_keys, Platform::Tdx),
            Platform::Tdx => (&snp_keys, Platform::Snp),
        };
        if !foreign.is_empty() {
            let own = match platform {
                Platform::Snp => &snp_keys,
                Platform::Tdx => &tdx_keys,
            };
            let why = match declared {
                Some(_) => format!("declared platform {:?}", platform.name()),
                None => format!("{} keys ({})", platform.name(), own.join(", ")),
            };
            return Err(MeasureError::InvalidInput(format!(
                "the inputs mix SNP and TDX: {why} together with {} keys ({}); \
                 one file describes one platform",
                foreign_platform.name(),
                foreign.join(", ")
            )));
        }
        let value = serde_json::Value::Object(map);
        match platform {
            Platform::Snp => serde_json::from_value(value).map(Self::Snp).map_err(|e| {
                MeasureError::InvalidInput(format!("not valid SNP measurement inputs: {e}"))
            }),
            Platform::Tdx => serde_json::from_value(value).map(Self::Tdx).map_err(|e| {
                MeasureError::InvalidInput(format!("not valid TDX measurement inputs: {e}"))
            }),
        }
    }
}

/// Removes the `platform` / `tee` keys and returns the platform they name, if any.
fn declared_platform(
    map: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Platform>, MeasureError> {
    let mut found: Option<Platform> = None;
    for key in ["platform", "tee"] {
        let Some(v) = map.remove(key) else { continue };
        let name = v.as_str().ok_or_else(|| {
            MeasureError::InvalidInput(format!("`{key}` must be a string (\"snp\" or \"tdx\")"))
        })?;
        let p = match name.to_ascii_lowercase().as_str() {
            "snp" | "sev-snp" | "sev_snp" => Platform::Snp,
            "tdx" => Platform::Tdx,
            other => {
                return Err(MeasureError::InvalidInput(format!(
                    "`{key}` = {other:?} is not a known platform (\"snp\" or \"tdx\")"
                )));
            }
        };
        if found.is_some_and(|f| f != p) {
            return Err(MeasureError::InvalidInput(
                "`platform` and `tee` name different platforms".into(),
            ));
        }
        found = Some(p);
    }
    Ok(found)
}

/// The message of an [`MeasureError::InvalidInput`] without its prefix, so that a path
/// can be put in front of it; other errors as displayed.
fn bare(e: MeasureError) -> String {
    match e {
        MeasureError::InvalidInput(m) => m,
        other => other.to_string(),
    }
}

/// `Some(v)` as `{v:?}`, `None` as `(none)`.
pub(crate) fn show<T: std::fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{v:?}"),
        None => "(none)".to_string(),
    }
}

/// Command-line variants worth trying: trailing space, console arguments, no command
/// line at all. The base itself is not among them.
pub(crate) fn cmdline_variants(base: Option<&str>) -> Vec<Option<String>> {
    let b = base.unwrap_or("");
    let mut v: Vec<Option<String>> = vec![
        None,
        Some(format!("{b} ")),
        Some(b.trim_end().to_string()),
        Some(b.trim().to_string()),
        Some(format!("{b} console=ttyS0").trim_start().to_string()),
        Some(format!("{b} console=hvc0").trim_start().to_string()),
        Some(format!("console=ttyS0 {b}").trim_end().to_string()),
        Some(format!("console=hvc0 {b}").trim_end().to_string()),
    ];
    let without_console: Vec<&str> = b
        .split(' ')
        .filter(|w| !w.starts_with("console=") && !w.starts_with("earlyprintk"))
        .collect();
    v.push(Some(without_console.join(" ")));
    v.retain(|c| c.as_deref().unwrap_or("") != b);
    v.sort();
    v.dedup();
    v
}
