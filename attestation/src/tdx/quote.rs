//! TDX quote and collateral inputs.

use serde::Deserialize;

use crate::AttestationError;

pub use dcap_qvl::QuoteCollateralV3;

/// Collateral in dcap-qvl's `QuoteCollateralV3` JSON shape with byte fields as hex
/// strings (`root_ca_crl`, `pck_crl`, `tcb_info_signature`, `qe_identity_signature`)
/// and `tcb_info` / `qe_identity` as the exact signed JSON text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollateralJson {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
    #[serde(default)]
    pck_certificate_chain: Option<String>,
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, AttestationError> {
    hex::decode(text.trim())
        .map_err(|e| AttestationError::malformed("TDX collateral", format!("{field}: {e}")))
}

/// Parse collateral JSON (see the fixture README for the shape).
pub fn parse_collateral_json(bytes: &[u8]) -> Result<QuoteCollateralV3, AttestationError> {
    let c: CollateralJson = serde_json::from_slice(bytes)
        .map_err(|e| AttestationError::malformed("TDX collateral", e))?;
    Ok(QuoteCollateralV3 {
        pck_crl_issuer_chain: c.pck_crl_issuer_chain,
        root_ca_crl: unhex("root_ca_crl", &c.root_ca_crl)?,
        pck_crl: unhex("pck_crl", &c.pck_crl)?,
        tcb_info_issuer_chain: c.tcb_info_issuer_chain,
        tcb_info: c.tcb_info,
        tcb_info_signature: unhex("tcb_info_signature", &c.tcb_info_signature)?,
        qe_identity_issuer_chain: c.qe_identity_issuer_chain,
        qe_identity: c.qe_identity,
        qe_identity_signature: unhex("qe_identity_signature", &c.qe_identity_signature)?,
        pck_certificate_chain: c.pck_certificate_chain,
    })
}

/// A signed body from Intel PCS (`{"tcbInfo": {...}, "signature": "<hex>"}` or
/// `{"enclaveIdentity": {...}, "signature": "<hex>"}`): the exact signed JSON text
/// of the inner object and the raw r||s signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcsSignedBody {
    /// The inner object's text, byte for byte as Intel signed it.
    pub body: String,
    /// The 64-byte ECDSA P-256 signature.
    pub signature: Vec<u8>,
}

#[derive(Deserialize)]
struct PcsResponse<'a> {
    #[serde(rename = "tcbInfo", borrow, default)]
    tcb_info: Option<&'a serde_json::value::RawValue>,
    #[serde(rename = "enclaveIdentity", borrow, default)]
    enclave_identity: Option<&'a serde_json::value::RawValue>,
    signature: String,
}

/// Parse a raw Intel PCS TCB-info or QE-identity response body without
/// re-serialising the signed part; pair it with [`QuoteCollateralV3::tcb_info`]
/// or [`QuoteCollateralV3::qe_identity`].
pub fn parse_pcs_signed_body(bytes: &[u8]) -> Result<PcsSignedBody, AttestationError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| AttestationError::malformed("Intel PCS response", e))?;
    let resp: PcsResponse<'_> = serde_json::from_str(text)
        .map_err(|e| AttestationError::malformed("Intel PCS response", e))?;
    let body = match (resp.tcb_info, resp.enclave_identity) {
        (Some(b), None) | (None, Some(b)) => b.get().to_string(),
        _ => {
            return Err(AttestationError::malformed(
                "Intel PCS response",
                "expected exactly one of tcbInfo / enclaveIdentity",
            ));
        }
    };
    Ok(PcsSignedBody {
        body,
        signature: unhex("signature", &resp.signature)?,
    })
}

/// The quote header fields needed before verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteHeader {
    /// 4 or 5 for TDX.
    pub version: u16,
    /// 2 = ECDSA-256 with P-256.
    pub attestation_key_type: u16,
    /// 0x81 for TDX.
    pub tee_type: u32,
}

/// Read the 48-byte quote header (no signature checks).
pub fn parse_header(quote: &[u8]) -> Result<QuoteHeader, AttestationError> {
    if quote.len() < 48 {
        return Err(AttestationError::malformed(
            "TDX quote",
            format!("{} bytes, shorter than the 48-byte header", quote.len()),
        ));
    }
    let header = QuoteHeader {
        version: u16::from_le_bytes([quote[0], quote[1]]),
        attestation_key_type: u16::from_le_bytes([quote[2], quote[3]]),
        tee_type: u32::from_le_bytes([quote[4], quote[5], quote[6], quote[7]]),
    };
    if header.tee_type != 0x81 {
        return Err(AttestationError::malformed(
            "TDX quote",
            format!("TEE type {:#x} is not TDX (0x81)", header.tee_type),
        ));
    }
    if !matches!(header.version, 4 | 5) {
        return Err(AttestationError::malformed(
            "TDX quote",
            format!("version {} (only 4 and 5)", header.version),
        ));
    }
    Ok(header)
}
