//! TDX quote verification with dcap-qvl (PCK chain to the Intel SGX root, CRLs,
//! QE report and identity, TCB info matching, collateral validity at `now`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::quote::{QuoteCollateralV3, parse_header};
use crate::time::format_rfc3339;
use crate::{AttestationError, Claims, Tee};

/// Intel SGX Root CA (DER), the trust anchor of every PCK chain. See roots/PROVENANCE.md.
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("../../roots/intel_sgx_root_ca.der");

/// TD_ATTRIBUTES bit 0: DEBUG.
const TD_ATTR_DEBUG: u8 = 0x01;

/// What a TDX verifier accepts beyond authenticity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TdxPolicy {
    /// Accept a TD with the DEBUG attribute.
    pub allow_debug: bool,
    /// Accepted TCB statuses (e.g. `["UpToDate"]`); empty accepts every status
    /// dcap-qvl does not reject (it always rejects Revoked and unmatched TCBs).
    pub accepted_tcb_statuses: Vec<String>,
}

/// Inputs for one TDX verification.
#[derive(Debug, Clone, Copy)]
pub struct TdxVerifyInput<'a> {
    /// The raw quote (v4 or v5).
    pub quote: &'a [u8],
    /// Collateral matching the quote's FMSPC.
    pub collateral: &'a QuoteCollateralV3,
    /// Verification time, Unix seconds.
    pub now: i64,
    /// Trust anchor (DER); the embedded Intel SGX Root CA when None.
    pub root_ca_der: Option<&'a [u8]>,
}

/// Map dcap-qvl's error text to this crate's error kinds.
fn classify<E: std::fmt::Display>(err: &E, now: i64) -> AttestationError {
    let text = format!("{err:#}");
    let lower = text.to_lowercase();
    if lower.contains("decode quote") || lower.contains("not enough data") {
        AttestationError::malformed("TDX quote", text)
    } else if lower.contains("expired")
        || lower.contains("in the future")
        || lower.contains("notvalidyet")
        || lower.contains("not valid yet")
    {
        AttestationError::Validity {
            now: format_rfc3339(now),
            reason: text,
        }
    } else if lower.contains("signature") {
        AttestationError::Signature(text)
    } else if lower.contains("tcb") || lower.contains("fmspc") {
        AttestationError::Tcb(text)
    } else if lower.contains("debug")
        || lower.contains("td attributes")
        || lower.contains("migration")
    {
        AttestationError::Policy(text)
    } else {
        AttestationError::CertificateChain(text)
    }
}

/// Judge TD_ATTRIBUTES under `policy`: a TD with DEBUG (bit 0) is refused unless
/// the policy allows debug. Returns whether DEBUG is set.
fn check_td_attributes(
    td_attributes: &[u8; 8],
    policy: &TdxPolicy,
) -> Result<bool, AttestationError> {
    let debug = td_attributes[0] & TD_ATTR_DEBUG != 0;
    if debug && !policy.allow_debug {
        return Err(AttestationError::Policy(format!(
            "TD_ATTRIBUTES {} has DEBUG set (the policy refuses debuggable TDs)",
            hex::encode(td_attributes)
        )));
    }
    Ok(debug)
}

/// Verify a TDX quote and return its claims.
pub fn verify_tdx(
    input: TdxVerifyInput<'_>,
    policy: &TdxPolicy,
) -> Result<Claims, AttestationError> {
    let header = parse_header(input.quote)?;
    let now = u64::try_from(input.now)
        .map_err(|_| AttestationError::malformed("verification time", "before 1970"))?;
    let root = input.root_ca_der.unwrap_or(INTEL_SGX_ROOT_CA_DER);
    // Debug is judged below by our own policy so the error names the policy.
    let verifier = dcap_qvl::verify::QuoteVerifier::new(root.to_vec()).allow_debug(true);
    let verified = verifier
        .verify(input.quote, input.collateral, now)
        .map_err(|e| classify(&e, input.now))?;
    let td = verified
        .report
        .as_td10()
        .ok_or_else(|| AttestationError::malformed("TDX quote", "body is not a TD report"))?;
    let debug = check_td_attributes(&td.td_attributes, policy)?;
    if !policy.accepted_tcb_statuses.is_empty()
        && !policy.accepted_tcb_statuses.contains(&verified.status)
    {
        return Err(AttestationError::Tcb(format!(
            "TCB status {} not in accepted {:?}",
            verified.status, policy.accepted_tcb_statuses
        )));
    }
    let parsed = dcap_qvl::quote::Quote::parse(input.quote)
        .map_err(|e| AttestationError::malformed("TDX quote", e))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
        .map_err(|e| AttestationError::malformed("TDX PCK certificate", e))?;

    let mut f = BTreeMap::new();
    f.insert("quote_version".into(), header.version.to_string());
    f.insert(
        "attestation_key_type".into(),
        header.attestation_key_type.to_string(),
    );
    f.insert("tee_tcb_svn".into(), hex::encode(td.tee_tcb_svn));
    f.insert("mr_seam".into(), hex::encode(td.mr_seam));
    f.insert("mr_signer_seam".into(), hex::encode(td.mr_signer_seam));
    f.insert("seam_attributes".into(), hex::encode(td.seam_attributes));
    f.insert("td_attributes".into(), hex::encode(td.td_attributes));
    f.insert("xfam".into(), hex::encode(td.xfam));
    f.insert("mr_td".into(), hex::encode(td.mr_td));
    f.insert("mr_config_id".into(), hex::encode(td.mr_config_id));
    f.insert("mr_owner".into(), hex::encode(td.mr_owner));
    f.insert("mr_owner_config".into(), hex::encode(td.mr_owner_config));
    f.insert("rtmr0".into(), hex::encode(td.rt_mr0));
    f.insert("rtmr1".into(), hex::encode(td.rt_mr1));
    f.insert("rtmr2".into(), hex::encode(td.rt_mr2));
    f.insert("rtmr3".into(), hex::encode(td.rt_mr3));
    f.insert("report_data".into(), hex::encode(td.report_data));
    f.insert("fmspc".into(), hex::encode(fmspc));
    f.insert("ppid".into(), hex::encode(&verified.ppid));
    f.insert(
        "platform_tcb_status".into(),
        verified.platform_status.status.to_string(),
    );
    f.insert(
        "qe_tcb_status".into(),
        verified.qe_status.status.to_string(),
    );
    if let Some(td15) = verified.report.as_td15() {
        f.insert("tee_tcb_svn2".into(), hex::encode(td15.tee_tcb_svn2));
        f.insert("mr_service_td".into(), hex::encode(td15.mr_service_td));
    }
    tracing::debug!(status = %verified.status, version = header.version, "TDX quote verified");
    Ok(Claims {
        tee: Tee::Tdx,
        measurement: Some(td.mr_td.to_vec()),
        rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3]
            .iter()
            .map(hex::encode)
            .collect(),
        init_data: Some(td.mr_config_id.to_vec()),
        report_data: td.report_data.to_vec(),
        tcb_status: verified.status.clone(),
        advisory_ids: verified.advisory_ids.clone(),
        debug,
        platform_id: Some(fmspc.to_vec()),
        fields: f,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TD_ATTRIBUTES of a real quote, as dcap-qvl parses them.
    fn fixture_td_attributes(set: &str) -> [u8; 8] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tdx")
            .join(set)
            .join("quote.bin");
        let quote = dcap_qvl::quote::Quote::parse(&std::fs::read(path).unwrap()).unwrap();
        quote.report.as_td10().unwrap().td_attributes
    }

    #[test]
    fn fixture_attributes_pass_the_strict_policy() {
        for set in ["v4-uptodate-dcapqvl", "v5-uptodate-gotdxguest"] {
            let attrs = fixture_td_attributes(set);
            assert_eq!(hex::encode(attrs), "0000001000000000", "{set}");
            assert!(!check_td_attributes(&attrs, &TdxPolicy::default()).unwrap());
        }
    }

    #[test]
    fn debug_attribute_is_refused_unless_the_policy_allows_it() {
        let mut attrs = fixture_td_attributes("v4-uptodate-dcapqvl");
        attrs[0] |= TD_ATTR_DEBUG;
        match check_td_attributes(&attrs, &TdxPolicy::default()) {
            Err(AttestationError::Policy(m)) => {
                assert!(m.contains("0100001000000000") && m.contains("DEBUG"), "{m}")
            }
            other => panic!("expected a DEBUG policy error, got {other:?}"),
        }
        let allow = TdxPolicy {
            allow_debug: true,
            ..TdxPolicy::default()
        };
        assert!(check_td_attributes(&attrs, &allow).unwrap());
        // Other TUD bits are not DEBUG.
        assert!(
            !check_td_attributes(&[0xFE, 0, 0, 0x10, 0, 0, 0, 0], &TdxPolicy::default()).unwrap()
        );
    }
}
