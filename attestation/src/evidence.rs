//! Evidence formats exactly as CoCo's attestation-agent sends them
//! (`guest-components: attestation-agent/attester/src/{tdx,snp,sample}`), and
//! detection of the raw-binary vs JSON forms on the verifier side.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};
use sev::parser::ByteParser as _;

use crate::AttestationError;

/// The TEEs this crate handles. Serialises with the KBS protocol names
/// (`"tdx"`, `"snp"`, `"sample"`), identical to `kbs_types::Tee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tee {
    /// Intel TDX (quote through configfs-tsm).
    Tdx,
    /// AMD SEV-SNP (report through /dev/sev-guest).
    Snp,
    /// No TEE: CoCo's "sample" evidence, for coco-dev only.
    Sample,
}

impl Tee {
    /// The KBS protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Tdx => "tdx",
            Tee::Snp => "snp",
            Tee::Sample => "sample",
        }
    }

    /// Size of the hardware REPORTDATA field (None: no fixed field, compare exactly).
    pub fn report_data_len(self) -> Option<usize> {
        match self {
            Tee::Tdx | Tee::Snp => Some(64),
            Tee::Sample => None,
        }
    }
}

impl std::fmt::Display for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Tee {
    type Err = AttestationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tdx" => Ok(Tee::Tdx),
            "snp" => Ok(Tee::Snp),
            "sample" => Ok(Tee::Sample),
            other => Err(AttestationError::Unsupported(format!(
                "TEE {other:?} (expected tdx, snp or sample)"
            ))),
        }
    }
}

impl From<Tee> for kbs_types::Tee {
    fn from(tee: Tee) -> Self {
        match tee {
            Tee::Tdx => kbs_types::Tee::Tdx,
            Tee::Snp => kbs_types::Tee::Snp,
            Tee::Sample => kbs_types::Tee::Sample,
        }
    }
}

impl TryFrom<kbs_types::Tee> for Tee {
    type Error = AttestationError;
    fn try_from(tee: kbs_types::Tee) -> Result<Self, Self::Error> {
        match tee {
            kbs_types::Tee::Tdx => Ok(Tee::Tdx),
            kbs_types::Tee::Snp => Ok(Tee::Snp),
            kbs_types::Tee::Sample => Ok(Tee::Sample),
            other => Err(AttestationError::Unsupported(format!("TEE {other:?}"))),
        }
    }
}

/// TDX evidence: `{"cc_eventlog": b64|null, "quote": b64}` (standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TdxEvidence {
    /// Base64 of the CCEL ACPI table data (the firmware event log), if readable.
    pub cc_eventlog: Option<String>,
    /// Base64 of the TD quote.
    pub quote: String,
}

/// SNP evidence: `{"attestation_report": <sev crate serde>, "cert_chain": [...]|null}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnpEvidence {
    /// The report in the `sev` crate's serde form (what trustee deserialises).
    pub attestation_report: AttestationReport,
    /// Certificates returned by SNP_GET_EXT_REPORT (VCEK/VLEK, possibly ASK/ARK).
    pub cert_chain: Option<Vec<CertTableEntry>>,
}

/// Sample evidence: `{"svn":"1","report_data":"<b64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleEvidence {
    /// Security version number, a decimal string.
    pub svn: String,
    /// Standard base64 of the report_data bytes.
    pub report_data: String,
}

/// Which certificate an SNP evidence's cert table carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnpCertKind {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// AMD SEV Key (or ASVK).
    Ask,
    /// AMD Root Key.
    Ark,
}

/// SNP evidence reduced to what the verifier needs.
#[derive(Debug, Clone)]
pub struct SnpInput {
    /// The 1184-byte report. For the JSON form these are the bytes re-encoded
    /// from the `sev` serde fields (reserved fields zero, as trustee does).
    pub report: Vec<u8>,
    /// Certificates found in the evidence (DER), by kind.
    pub certs: Vec<(SnpCertKind, Vec<u8>)>,
    /// True when `report` was rebuilt from the JSON form.
    pub from_json: bool,
}

/// TDX evidence reduced to what the verifier needs.
#[derive(Debug, Clone)]
pub struct TdxInput {
    /// The raw quote bytes.
    pub quote: Vec<u8>,
    /// The CCEL event log, if the evidence carried one.
    pub cc_eventlog: Option<Vec<u8>>,
}

fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn b64(what: &str, text: &str) -> Result<Vec<u8>, AttestationError> {
    B64.decode(text.trim())
        .map_err(|e| AttestationError::malformed(what, format!("bad base64: {e}")))
}

impl TdxEvidence {
    /// Build the JSON evidence from a quote and optional event log.
    pub fn new(quote: &[u8], cc_eventlog: Option<&[u8]>) -> Self {
        Self {
            cc_eventlog: cc_eventlog.map(|e| B64.encode(e)),
            quote: B64.encode(quote),
        }
    }
}

impl SnpEvidence {
    /// Build the CoCo JSON evidence from the raw report bytes and the cert table.
    pub fn from_report_bytes(
        report: &[u8],
        cert_chain: Option<Vec<CertTableEntry>>,
    ) -> Result<Self, AttestationError> {
        let attestation_report = AttestationReport::from_bytes(report)
            .map_err(|e| AttestationError::malformed("SNP report", e))?;
        Ok(Self {
            attestation_report,
            cert_chain,
        })
    }
}

impl SampleEvidence {
    /// Sample evidence carrying `report_data` (svn "1").
    pub fn new(report_data: &[u8]) -> Self {
        Self {
            svn: "1".into(),
            report_data: B64.encode(report_data),
        }
    }

    /// The decoded report_data.
    pub fn report_data_bytes(&self) -> Result<Vec<u8>, AttestationError> {
        b64("sample evidence report_data", &self.report_data)
    }
}

/// Parse SNP evidence given either as the raw 1184-byte report or as CoCo's JSON form.
pub fn parse_snp_evidence(bytes: &[u8]) -> Result<SnpInput, AttestationError> {
    if !looks_like_json(bytes) {
        return Ok(SnpInput {
            report: bytes.to_vec(),
            certs: Vec::new(),
            from_json: false,
        });
    }
    let evidence: SnpEvidence = serde_json::from_slice(bytes)
        .map_err(|e| AttestationError::malformed("SNP JSON evidence", e))?;
    let report = evidence
        .attestation_report
        .to_bytes()
        .map_err(|e| AttestationError::malformed("SNP JSON evidence attestation_report", e))?
        .to_vec();
    let mut certs = Vec::new();
    for entry in evidence.cert_chain.unwrap_or_default() {
        let kind = match entry.cert_type {
            CertType::VCEK => SnpCertKind::Vcek,
            CertType::VLEK => SnpCertKind::Vlek,
            CertType::ASK => SnpCertKind::Ask,
            CertType::ARK => SnpCertKind::Ark,
            _ => continue,
        };
        certs.push((kind, entry.data));
    }
    Ok(SnpInput {
        report,
        certs,
        from_json: true,
    })
}

/// Parse TDX evidence given either as the raw quote or as CoCo's JSON form.
pub fn parse_tdx_evidence(bytes: &[u8]) -> Result<TdxInput, AttestationError> {
    if !looks_like_json(bytes) {
        return Ok(TdxInput {
            quote: bytes.to_vec(),
            cc_eventlog: None,
        });
    }
    let evidence: TdxEvidence = serde_json::from_slice(bytes)
        .map_err(|e| AttestationError::malformed("TDX JSON evidence", e))?;
    Ok(TdxInput {
        quote: b64("TDX evidence quote", &evidence.quote)?,
        cc_eventlog: evidence
            .cc_eventlog
            .as_deref()
            .map(|e| b64("TDX evidence cc_eventlog", e))
            .transpose()?,
    })
}

/// Parse sample evidence (JSON only).
pub fn parse_sample_evidence(bytes: &[u8]) -> Result<SampleEvidence, AttestationError> {
    let evidence: SampleEvidence = serde_json::from_slice(bytes)
        .map_err(|e| AttestationError::malformed("sample evidence", e))?;
    evidence.report_data_bytes()?;
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_names_match_kbs_types() {
        for tee in [Tee::Tdx, Tee::Snp, Tee::Sample] {
            let ours = serde_json::to_string(&tee).unwrap();
            let theirs = serde_json::to_string(&kbs_types::Tee::from(tee)).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours, format!("\"{}\"", tee.as_str()));
            assert_eq!(Tee::try_from(kbs_types::Tee::from(tee)).unwrap(), tee);
        }
        assert!(Tee::try_from(kbs_types::Tee::Cca).is_err());
    }

    #[test]
    fn tdx_and_sample_json_shapes() {
        let tdx = TdxEvidence::new(b"quote", None);
        assert_eq!(
            serde_json::to_string(&tdx).unwrap(),
            r#"{"cc_eventlog":null,"quote":"cXVvdGU="}"#
        );
        let parsed = parse_tdx_evidence(serde_json::to_string(&tdx).unwrap().as_bytes()).unwrap();
        assert_eq!(parsed.quote, b"quote");
        let sample = SampleEvidence::new(b"xxxx");
        assert_eq!(
            serde_json::to_string(&sample).unwrap(),
            r#"{"svn":"1","report_data":"eHh4eA=="}"#
        );
    }
}
