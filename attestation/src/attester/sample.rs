//! The sample attester (no TEE): `{"svn":"1","report_data":"<b64>"}`. Only for
//! coco-dev and developer tools; reachable through [`super::select_attester`] only
//! with [`super::SampleFallback::Allow`] or an explicit request.

use super::Attester;
use crate::evidence::SampleEvidence;
use crate::{AttestationError, Tee};

/// CoCo's sample attester.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleAttester;

impl Attester for SampleAttester {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    fn evidence(&self, report_data: &[u8]) -> Result<String, AttestationError> {
        serde_json::to_string(&SampleEvidence::new(report_data))
            .map_err(|e| AttestationError::malformed("sample evidence", e))
    }
}
