//! One entry point for all TEEs: evidence bytes (raw or CoCo JSON) -> claims.

use crate::evidence::{SnpCertKind, parse_sample_evidence, parse_snp_evidence, parse_tdx_evidence};
use crate::report_data::check_report_data;
use crate::snp::{SnpPolicy, SnpVerifyInput, verify_snp};
use crate::tdx::{QuoteCollateralV3, TdxPolicy, TdxVerifyInput, verify_tdx};
use crate::{AttestationError, Claims, Tee};

/// Everything besides the evidence that verification may need.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Verification time (Unix seconds); the system clock when None.
    pub now: Option<i64>,
    /// SNP VCEK/VLEK (DER); taken from the evidence's cert table when None.
    pub vek: Option<Vec<u8>>,
    /// SNP (intermediate, ARK) chain, DER; embedded AMD chain when None.
    pub chain: Option<Vec<Vec<u8>>>,
    /// TDX collateral (required for TDX).
    pub collateral: Option<QuoteCollateralV3>,
    /// TDX trust anchor override (DER); Intel SGX Root CA when None.
    pub tdx_root_ca: Option<Vec<u8>>,
    /// SNP policy.
    pub snp_policy: SnpPolicy,
    /// TDX policy.
    pub tdx_policy: TdxPolicy,
}

/// Verify `evidence` for `tee` and, when given, compare its report_data with
/// `expected_report_data` (padded/truncated to 64 bytes for TDX/SNP, exact for sample).
pub fn verify(
    tee: Tee,
    evidence: &[u8],
    options: &VerifyOptions,
    expected_report_data: Option<&[u8]>,
) -> Result<Claims, AttestationError> {
    let now = options.now.unwrap_or_else(crate::time::now_unix);
    let claims = match tee {
        Tee::Snp => {
            let input = parse_snp_evidence(evidence)?;
            let vek = match &options.vek {
                Some(v) => v.clone(),
                None => input
                    .certs
                    .iter()
                    .find(|(k, _)| matches!(k, SnpCertKind::Vcek | SnpCertKind::Vlek))
                    .map(|(_, d)| d.clone())
                    .ok_or_else(|| {
                        AttestationError::MissingInput(
                            "SNP evidence carries no VCEK/VLEK; supply one".into(),
                        )
                    })?,
            };
            verify_snp(
                SnpVerifyInput {
                    report: &input.report,
                    vek: &vek,
                    chain: options.chain.as_deref(),
                    now,
                },
                &options.snp_policy,
            )?
        }
        Tee::Tdx => {
            let input = parse_tdx_evidence(evidence)?;
            let collateral = options.collateral.as_ref().ok_or_else(|| {
                AttestationError::MissingInput("TDX verification needs collateral".into())
            })?;
            verify_tdx(
                TdxVerifyInput {
                    quote: &input.quote,
                    collateral,
                    now,
                    root_ca_der: options.tdx_root_ca.as_deref(),
                },
                &options.tdx_policy,
            )?
        }
        Tee::Sample => crate::sample::verify_sample(&parse_sample_evidence(evidence)?)?,
    };
    if let Some(expected) = expected_report_data {
        check_report_data(tee, &claims.report_data, expected)?;
    }
    Ok(claims)
}
