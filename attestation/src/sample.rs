//! The sample "verifier": there is nothing to check cryptographically; it only
//! exposes report_data. Accepting sample evidence at all is the caller's policy
//! decision (see [`crate::AppraisalPolicy::allow_sample`]).

use std::collections::BTreeMap;

use crate::evidence::SampleEvidence;
use crate::{AttestationError, Claims, Tee};

/// Turn sample evidence into claims (no signature exists to verify).
pub fn verify_sample(evidence: &SampleEvidence) -> Result<Claims, AttestationError> {
    let report_data = evidence.report_data_bytes()?;
    tracing::warn!("sample evidence accepted for inspection: it carries no hardware signature");
    let mut fields = BTreeMap::new();
    fields.insert("svn".into(), evidence.svn.clone());
    fields.insert("report_data".into(), hex::encode(&report_data));
    Ok(Claims {
        tee: Tee::Sample,
        measurement: None,
        rtmrs: Vec::new(),
        init_data: None,
        report_data,
        tcb_status: "None".into(),
        advisory_ids: Vec::new(),
        debug: false,
        platform_id: None,
        fields,
    })
}
