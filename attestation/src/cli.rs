//! The `cocoon attest verify` seam: clap arguments and a runner returning the claims JSON.

use std::path::{Path, PathBuf};

use crate::snp::SnpTcb;
use crate::snp::certs::{cert_from_der_or_pem, pem_chain_to_der};
use crate::tdx::parse_collateral_json;
use crate::{
    AppraisalPolicy, AttestationError, ReferenceValues, SnpPolicy, TdxPolicy, Tee, VerifyOptions,
    appraise, verify,
};

/// Arguments of `attest verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// TEE that produced the evidence: snp, tdx or sample.
    #[arg(long, value_parser = ["snp", "tdx", "sample"])]
    pub tee: String,
    /// Evidence: the raw SNP report / TDX quote, or CoCo's JSON evidence.
    #[arg(long)]
    pub evidence: PathBuf,
    /// SNP VCEK/VLEK certificate (DER or PEM); default: from the JSON evidence.
    #[arg(long)]
    pub vek: Option<PathBuf>,
    /// SNP ASK/ASVK + ARK chain (PEM); default: the embedded AMD chain.
    #[arg(long)]
    pub chain: Option<PathBuf>,
    /// TDX collateral JSON (dcap-qvl QuoteCollateralV3 shape, hex byte fields).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, RFC 3339 (default: now).
    #[arg(long)]
    pub now: Option<String>,
    /// Policies: no-debug, no-smt, no-migration-agent, tcb-uptodate,
    /// min-tcb=BL.TEE.SNP.UCODE (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub policy: Vec<String>,
    /// Reference values JSON (snp_launch_measurement, snp_host_data, tdx_mrtd, tdx_rtmr0..3,
    /// tdx_mrconfigid, init_data).
    #[arg(long)]
    pub reference_values: Option<PathBuf>,
    /// Expected report_data, hex (padded/truncated to 64 bytes for TDX/SNP).
    #[arg(long)]
    pub report_data: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, AttestationError> {
    std::fs::read(path).map_err(|e| AttestationError::io(path, e))
}

fn parse_min_tcb(text: &str) -> Result<SnpTcb, AttestationError> {
    let parts = text
        .split('.')
        .map(|p| p.parse::<u8>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AttestationError::malformed("min-tcb policy", format!("{text:?}: {e}")))?;
    match parts.as_slice() {
        [bl, tee, snp, ucode] => Ok(SnpTcb {
            bootloader: *bl,
            tee: *tee,
            snp: *snp,
            microcode: *ucode,
            fmc: None,
        }),
        [bl, tee, snp, ucode, fmc] => Ok(SnpTcb {
            bootloader: *bl,
            tee: *tee,
            snp: *snp,
            microcode: *ucode,
            fmc: Some(*fmc),
        }),
        _ => Err(AttestationError::malformed(
            "min-tcb policy",
            format!("{text:?}: expected BL.TEE.SNP.UCODE[.FMC]"),
        )),
    }
}

/// Build the verifier options from the arguments (files are read here).
pub fn options_from_args(
    args: &VerifyArgs,
) -> Result<(Tee, VerifyOptions, AppraisalPolicy), AttestationError> {
    let tee: Tee = args.tee.parse()?;
    let mut snp = SnpPolicy::permissive();
    let mut tdx = TdxPolicy {
        allow_debug: true,
        accepted_tcb_statuses: Vec::new(),
    };
    let mut appraisal = AppraisalPolicy {
        allow_sample: true,
        allow_debug: true,
        ..AppraisalPolicy::default()
    };
    for item in args
        .policy
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
    {
        match item {
            "no-debug" => {
                snp.allow_debug = false;
                tdx.allow_debug = false;
                appraisal.allow_debug = false;
            }
            "no-smt" => snp.allow_smt = false,
            "no-migration-agent" => snp.allow_migration_agent = false,
            "tcb-uptodate" => tdx.accepted_tcb_statuses = vec!["UpToDate".into()],
            other => match other.strip_prefix("min-tcb=") {
                Some(v) => snp.min_tcb = Some(parse_min_tcb(v)?),
                None => {
                    return Err(AttestationError::Unsupported(format!(
                        "policy {other:?} (known: no-debug, no-smt, no-migration-agent, tcb-uptodate, min-tcb=BL.TEE.SNP.UCODE)"
                    )));
                }
            },
        }
    }
    let now = args
        .now
        .as_deref()
        .map(crate::time::parse_rfc3339)
        .transpose()?;
    let vek = args
        .vek
        .as_deref()
        .map(read)
        .transpose()?
        .map(|b| cert_from_der_or_pem(&b))
        .transpose()?;
    let chain = args
        .chain
        .as_deref()
        .map(read)
        .transpose()?
        .map(|b| pem_chain_to_der(&b))
        .transpose()?;
    let collateral = args
        .collateral
        .as_deref()
        .map(read)
        .transpose()?
        .map(|b| parse_collateral_json(&b))
        .transpose()?;
    let options = VerifyOptions {
        now,
        vek,
        chain,
        collateral,
        tdx_root_ca: None,
        snp_policy: snp,
        tdx_policy: tdx,
    };
    Ok((tee, options, appraisal))
}

/// Run `attest verify`: the claims as pretty JSON when the evidence is accepted.
pub fn run_verify(args: &VerifyArgs) -> Result<String, AttestationError> {
    let (tee, options, appraisal) = options_from_args(args)?;
    let evidence = read(&args.evidence)?;
    let expected = args
        .report_data
        .as_deref()
        .map(|h| hex::decode(h.trim()).map_err(|e| AttestationError::malformed("--report-data", e)))
        .transpose()?;
    let claims = verify(tee, &evidence, &options, expected.as_deref())?;
    let reference = match &args.reference_values {
        Some(path) => ReferenceValues::from_json(&read(path)?)?,
        None => ReferenceValues::default(),
    };
    appraise(&claims, &reference, &appraisal)?;
    Ok(claims.to_json_pretty())
}
