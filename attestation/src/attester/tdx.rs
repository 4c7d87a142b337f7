//! TDX attester: quote through configfs-tsm, CCEL event log from ACPI.

use std::path::PathBuf;

use super::tsm::{TSM_REPORT_ROOT, TsmReport};
use super::{Attester, pad64};
use crate::evidence::TdxEvidence;
use crate::{AttestationError, Tee};

/// The CCEL ACPI table data (firmware event log).
pub const CCEL_PATH: &str = "/sys/firmware/acpi/tables/data/CCEL";

/// Produces `{"cc_eventlog": b64|null, "quote": b64}`.
#[derive(Debug)]
pub struct TdxAttester {
    tsm: TsmReport,
    ccel_path: PathBuf,
}

impl Default for TdxAttester {
    fn default() -> Self {
        Self::new()
    }
}

impl TdxAttester {
    /// The real system paths.
    pub fn new() -> Self {
        Self::with_paths(TsmReport::new(TSM_REPORT_ROOT, "tdx_guest"), CCEL_PATH)
    }

    /// Injected configfs-tsm requester and CCEL path (tests, unusual mounts).
    pub fn with_paths(tsm: TsmReport, ccel_path: impl Into<PathBuf>) -> Self {
        Self {
            tsm,
            ccel_path: ccel_path.into(),
        }
    }
}

impl Attester for TdxAttester {
    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    fn evidence(&self, report_data: &[u8]) -> Result<String, AttestationError> {
        let inblob = pad64(report_data)?;
        let quote = self.tsm.request(&inblob)?;
        let ccel = match std::fs::read(&self.ccel_path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(path = %self.ccel_path.display(), error = %e, "no CCEL event log");
                None
            }
        };
        serde_json::to_string(&TdxEvidence::new(&quote, ccel.as_deref()))
            .map_err(|e| AttestationError::malformed("TDX evidence", e))
    }
}
