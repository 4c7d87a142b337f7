//! SNP attester: SNP_GET_EXT_REPORT on /dev/sev-guest through the `sev` crate.

use super::{Attester, pad64};
use crate::evidence::SnpEvidence;
use crate::{AttestationError, Tee};

/// Produces `{"attestation_report": ..., "cert_chain": [...]|null}` as CoCo does.
#[derive(Debug, Default)]
pub struct SnpAttester {
    vmpl: u32,
}

impl SnpAttester {
    /// Requests reports at VMPL 0, as CoCo's attester does.
    pub fn new() -> Self {
        Self { vmpl: 0 }
    }
}

impl Attester for SnpAttester {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &[u8]) -> Result<String, AttestationError> {
        let data = pad64(report_data)?;
        let mut firmware = sev::firmware::guest::Firmware::open()
            .map_err(|e| AttestationError::Device(format!("/dev/sev-guest: {e}")))?;
        let (report, certs) = firmware
            .get_ext_report(None, Some(data), Some(self.vmpl))
            .map_err(|e| AttestationError::Device(format!("SNP_GET_EXT_REPORT: {e}")))?;
        let evidence = SnpEvidence::from_report_bytes(&report, certs)?;
        serde_json::to_string(&evidence).map_err(|e| AttestationError::malformed("SNP evidence", e))
    }
}
