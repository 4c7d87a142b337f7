//! Reference values and appraisal of claims against them.
//!
//! The JSON map uses exactly the keys the measured-boot crate emits
//! (`measured-boot/src/refvalues.rs`): `snp_launch_measurement`, `snp_host_data`,
//! `tdx_mrtd`, `tdx_rtmr0`..`tdx_rtmr3`, `tdx_mrconfigid` (raw field values, exact
//! compare) and `init_data` (the initdata digest, zero-padded or truncated to the
//! HOST_DATA / MRCONFIGID field as the Kata shim binds it). Each key maps to a list of
//! accepted hex values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AttestationError, Claims, Tee};

/// Accepted reference keys.
pub const REFERENCE_KEYS: [&str; 9] = [
    "snp_launch_measurement",
    "snp_host_data",
    "tdx_mrtd",
    "tdx_mrconfigid",
    "tdx_rtmr0",
    "tdx_rtmr1",
    "tdx_rtmr2",
    "tdx_rtmr3",
    "init_data",
];

/// Accepted values per reference key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReferenceValues(pub BTreeMap<String, Vec<String>>);

impl ReferenceValues {
    /// Parse the JSON map; unknown keys and non-hex values are errors.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        let values: Self = serde_json::from_slice(bytes)
            .map_err(|e| AttestationError::malformed("reference values", e))?;
        values.validate()?;
        Ok(values)
    }

    /// Check keys and hex values.
    pub fn validate(&self) -> Result<(), AttestationError> {
        for (key, list) in &self.0 {
            if !REFERENCE_KEYS.contains(&key.as_str()) {
                return Err(AttestationError::malformed(
                    "reference values",
                    format!("unknown key {key:?} (known: {})", REFERENCE_KEYS.join(", ")),
                ));
            }
            for v in list {
                hex::decode(v).map_err(|e| {
                    AttestationError::malformed("reference values", format!("{key}: {v:?}: {e}"))
                })?;
            }
        }
        Ok(())
    }
}

/// How strictly to appraise. The default is strict: sample and debug refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppraisalPolicy {
    /// Every key that applies to the claims' TEE must be present in the reference values.
    pub require_all: bool,
    /// Accept sample evidence at all (coco-dev only).
    pub allow_sample: bool,
    /// Accepted TDX TCB statuses (empty: any status the verifier accepted).
    pub accepted_tcb_statuses: Vec<String>,
    /// Accept a debuggable guest.
    pub allow_debug: bool,
}

/// One field that did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The reference key or policy item (e.g. `tdx_rtmr2`, `tcb_status`).
    pub field: String,
    /// The value in the claims (hex or text; empty when absent).
    pub found: String,
    /// What was accepted.
    pub expected: Vec<String>,
}

/// A successful appraisal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    /// Keys that were compared and matched.
    pub matched: Vec<String>,
    /// Keys that apply to this TEE but had no reference value (only when not `require_all`).
    pub unchecked: Vec<String>,
}

pub(crate) fn describe(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(|m| {
            format!(
                "{} = {:?} not in [{}]",
                m.field,
                m.found,
                m.expected.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Fit a reference init-data digest to the hardware field as the Kata shim does
/// (zero-pad shorter, truncate longer).
fn fit(value: &[u8], len: usize) -> Vec<u8> {
    let mut v = value.to_vec();
    v.resize(len, 0);
    v
}

/// The claim value for a reference key, if the key applies to this TEE.
fn claim_for(claims: &Claims, key: &str) -> Option<Vec<u8>> {
    let rtmr = |i: usize| {
        claims
            .rtmrs
            .get(i)
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default()
    };
    match (claims.tee, key) {
        (Tee::Snp, "snp_launch_measurement") | (Tee::Tdx, "tdx_mrtd") => {
            Some(claims.measurement.clone().unwrap_or_default())
        }
        (Tee::Tdx, "tdx_rtmr0") => Some(rtmr(0)),
        (Tee::Tdx, "tdx_rtmr1") => Some(rtmr(1)),
        (Tee::Tdx, "tdx_rtmr2") => Some(rtmr(2)),
        (Tee::Tdx, "tdx_rtmr3") => Some(rtmr(3)),
        (Tee::Snp, "snp_host_data")
        | (Tee::Tdx, "tdx_mrconfigid")
        | (Tee::Tdx | Tee::Snp, "init_data") => Some(claims.init_data.clone().unwrap_or_default()),
        _ => None,
    }
}

/// Compare claims with reference values under `policy`; every mismatching field is reported.
pub fn appraise(
    claims: &Claims,
    reference: &ReferenceValues,
    policy: &AppraisalPolicy,
) -> Result<Appraisal, AttestationError> {
    reference.validate()?;
    let mut mismatches = Vec::new();
    let mut matched = Vec::new();
    let mut unchecked = Vec::new();

    if claims.tee == Tee::Sample && !policy.allow_sample {
        mismatches.push(Mismatch {
            field: "tee".into(),
            found: "sample".into(),
            expected: vec!["tdx".into(), "snp".into()],
        });
    }
    if claims.debug && !policy.allow_debug {
        mismatches.push(Mismatch {
            field: "debug".into(),
            found: "true".into(),
            expected: vec!["false".into()],
        });
    }
    if claims.tee == Tee::Tdx
        && !policy.accepted_tcb_statuses.is_empty()
        && !policy.accepted_tcb_statuses.contains(&claims.tcb_status)
    {
        mismatches.push(Mismatch {
            field: "tcb_status".into(),
            found: claims.tcb_status.clone(),
            expected: policy.accepted_tcb_statuses.clone(),
        });
    }

    for key in REFERENCE_KEYS {
        let Some(found) = claim_for(claims, key) else {
            continue;
        };
        let Some(accepted) = reference.0.get(key) else {
            if policy.require_all {
                mismatches.push(Mismatch {
                    field: key.into(),
                    found: hex::encode(&found),
                    expected: Vec::new(),
                });
            } else {
                unchecked.push(key.to_string());
            }
            continue;
        };
        let ok = accepted.iter().any(|v| {
            let want = hex::decode(v).unwrap_or_default();
            if key == "init_data" {
                fit(&want, found.len()) == found
            } else {
                want == found
            }
        });
        if ok {
            matched.push(key.to_string());
        } else {
            mismatches.push(Mismatch {
                field: key.into(),
                found: hex::encode(&found),
                expected: accepted.iter().map(|v| v.to_lowercase()).collect(),
            });
        }
    }
    if mismatches.is_empty() {
        Ok(Appraisal { matched, unchecked })
    } else {
        Err(AttestationError::Appraisal(mismatches))
    }
}
