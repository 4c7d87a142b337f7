//! Evidence producers behind one [`Attester`] trait. All TEE device access of the
//! project lives in this module.
//!
//! Detection ([`detect_tee`]) never falls back to the sample attester: the caller
//! decides with [`select_attester`] and [`SampleFallback`]; a TEE runtime class must
//! use [`SampleFallback::Forbid`], so a missing device is an error.

pub mod snp;
pub mod tdx;
pub mod tsm;

#[cfg(feature = "sample")]
pub mod sample;

use std::path::{Path, PathBuf};

use crate::{AttestationError, Tee};

/// Produces evidence binding `report_data` (at most 64 bytes; zero-padded by the attester).
pub trait Attester: Send + Sync {
    /// The TEE this attester speaks for.
    fn tee(&self) -> Tee;
    /// Evidence JSON in CoCo's format for this TEE.
    fn evidence(&self, report_data: &[u8]) -> Result<String, AttestationError>;
}

/// Where detection looks; [`DetectPaths::default`] is the real system.
#[derive(Debug, Clone)]
pub struct DetectPaths {
    /// configfs-tsm report directory.
    pub tsm_report_root: PathBuf,
    /// TDX guest device.
    pub tdx_guest_dev: PathBuf,
    /// SNP guest device.
    pub sev_guest_dev: PathBuf,
    /// SNP guest platform device (sysfs).
    pub sev_guest_platform: PathBuf,
    /// TDX guest misc device (sysfs).
    pub tdx_guest_sysfs: PathBuf,
}

impl Default for DetectPaths {
    fn default() -> Self {
        Self {
            tsm_report_root: PathBuf::from(tsm::TSM_REPORT_ROOT),
            tdx_guest_dev: PathBuf::from("/dev/tdx_guest"),
            sev_guest_dev: PathBuf::from("/dev/sev-guest"),
            sev_guest_platform: PathBuf::from("/sys/devices/platform/sev-guest"),
            tdx_guest_sysfs: PathBuf::from("/sys/devices/virtual/misc/tdx_guest"),
        }
    }
}

fn exists(p: &Path) -> bool {
    p.exists()
}

/// Detect the TEE on this machine (TDX first, then SNP). Returns None when there
/// is none; it never answers [`Tee::Sample`].
pub fn detect_tee() -> Option<Tee> {
    detect_tee_at(&DetectPaths::default())
}

/// [`detect_tee`] with injectable paths.
pub fn detect_tee_at(paths: &DetectPaths) -> Option<Tee> {
    let tsm = exists(&paths.tsm_report_root);
    let tee = if tsm && (exists(&paths.tdx_guest_dev) || exists(&paths.tdx_guest_sysfs)) {
        Some(Tee::Tdx)
    } else if exists(&paths.sev_guest_dev) || exists(&paths.sev_guest_platform) {
        Some(Tee::Snp)
    } else {
        None
    };
    tracing::debug!(?tee, "TEE detection");
    tee
}

/// What to do when no TEE is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFallback {
    /// Error out (every TEE runtime class).
    Forbid,
    /// Use the sample attester (coco-dev, developer tools); logged at warn level.
    Allow,
}

/// Pick the attester for `requested` (or the detected TEE when None).
pub fn select_attester(
    requested: Option<Tee>,
    fallback: SampleFallback,
) -> Result<Box<dyn Attester>, AttestationError> {
    let tee = match requested.or_else(detect_tee) {
        Some(t) => t,
        None if fallback == SampleFallback::Allow => Tee::Sample,
        None => return Err(AttestationError::NoTee),
    };
    match tee {
        Tee::Tdx => Ok(Box::new(tdx::TdxAttester::new())),
        Tee::Snp => Ok(Box::new(snp::SnpAttester::new())),
        Tee::Sample => sample_attester(requested.is_some() || fallback == SampleFallback::Allow),
    }
}

#[cfg(feature = "sample")]
fn sample_attester(allowed: bool) -> Result<Box<dyn Attester>, AttestationError> {
    if !allowed {
        return Err(AttestationError::NoTee);
    }
    tracing::warn!("no TEE: using the sample attester (evidence carries no hardware signature)");
    Ok(Box::new(sample::SampleAttester))
}

#[cfg(not(feature = "sample"))]
fn sample_attester(_allowed: bool) -> Result<Box<dyn Attester>, AttestationError> {
    Err(AttestationError::Unsupported(
        "sample attester (crate feature `sample` is off)".into(),
    ))
}

/// Pad report_data to the 64-byte hardware field; error when longer.
pub(crate) fn pad64(report_data: &[u8]) -> Result<[u8; 64], AttestationError> {
    if report_data.len() > 64 {
        return Err(AttestationError::malformed(
            "report_data",
            format!("{} bytes, the hardware field holds 64", report_data.len()),
        ));
    }
    let mut out = [0u8; 64];
    out[..report_data.len()].copy_from_slice(report_data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_never_returns_sample() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let mut paths = DetectPaths {
            tsm_report_root: p("tsm/report"),
            tdx_guest_dev: p("tdx_guest"),
            sev_guest_dev: p("sev-guest"),
            sev_guest_platform: p("platform-sev-guest"),
            tdx_guest_sysfs: p("sysfs-tdx"),
        };
        assert_eq!(detect_tee_at(&paths), None);
        std::fs::create_dir_all(p("tsm/report")).unwrap();
        assert_eq!(detect_tee_at(&paths), None, "tsm alone is not TDX");
        std::fs::write(p("sev-guest"), b"").unwrap();
        assert_eq!(detect_tee_at(&paths), Some(Tee::Snp));
        std::fs::write(p("tdx_guest"), b"").unwrap();
        assert_eq!(detect_tee_at(&paths), Some(Tee::Tdx));
        paths.tsm_report_root = p("missing");
        assert_eq!(detect_tee_at(&paths), Some(Tee::Snp));
    }

    #[test]
    fn pad64_rules() {
        assert_eq!(pad64(&[1, 2]).unwrap()[..3], [1, 2, 0]);
        assert!(pad64(&[0u8; 65]).is_err());
    }
}
