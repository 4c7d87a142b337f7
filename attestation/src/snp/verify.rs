//! SNP verification: signature over the received bytes, chain, TCB/hwID match, policy.

use std::collections::BTreeMap;

use p384::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};

use super::certs::{VekKind, VerifiedVek, verify_vek_chain};
use super::report::{Product, SigningKey, SnpReport, SnpTcb, policy_bits};
use crate::{AttestationError, Claims, Tee};

/// What a verifier accepts beyond authenticity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpPolicy {
    /// Accept a guest whose policy allows debugging.
    pub allow_debug: bool,
    /// Accept a guest whose policy allows SMT.
    pub allow_smt: bool,
    /// Accept a guest that may be associated with a migration agent.
    pub allow_migration_agent: bool,
    /// Minimum REPORTED_TCB, component-wise.
    pub min_tcb: Option<SnpTcb>,
    /// Highest accepted VMPL (0 is most privileged).
    pub max_vmpl: Option<u32>,
}

impl Default for SnpPolicy {
    /// Strict: no debug, no migration agent; SMT allowed (CoCo's usual setting).
    fn default() -> Self {
        Self {
            allow_debug: false,
            allow_smt: true,
            allow_migration_agent: false,
            min_tcb: None,
            max_vmpl: None,
        }
    }
}

impl SnpPolicy {
    /// Authenticity only: every policy check off.
    pub fn permissive() -> Self {
        Self {
            allow_debug: true,
            allow_smt: true,
            allow_migration_agent: true,
            min_tcb: None,
            max_vmpl: None,
        }
    }
}

/// Inputs for one SNP verification.
#[derive(Debug, Clone, Copy)]
pub struct SnpVerifyInput<'a> {
    /// The received report bytes (1184).
    pub report: &'a [u8],
    /// The VCEK/VLEK, DER.
    pub vek: &'a [u8],
    /// Optional (intermediate, ARK) chain; the embedded AMD chain is used when None.
    pub chain: Option<&'a [Vec<u8>]>,
    /// Verification time, Unix seconds.
    pub now: i64,
}

fn product_for(report: &SnpReport, chain: &VerifiedVek) -> Result<Product, AttestationError> {
    if let Some((family, model, _)) = report.cpuid()
        && let Some(from_cpuid) = Product::from_cpuid(family, model)
        && from_cpuid != chain.product
    {
        return Err(AttestationError::CertificateChain(format!(
            "report CPUID {family:#x}/{model:#x} is {} but the VEK chains to {}",
            from_cpuid.name(),
            chain.product.name()
        )));
    }
    Ok(chain.product)
}

fn check_vek_matches_report(
    report: &SnpReport,
    chain: &VerifiedVek,
    reported: &SnpTcb,
) -> Result<(), AttestationError> {
    let ext = &chain.extensions;
    let pairs = [
        ("bootloader", ext.bootloader, Some(reported.bootloader)),
        ("tee", ext.tee, Some(reported.tee)),
        ("snp", ext.snp, Some(reported.snp)),
        ("microcode", ext.microcode, Some(reported.microcode)),
        ("fmc", ext.fmc, reported.fmc),
    ];
    for (name, cert, rep) in pairs {
        match (cert, rep) {
            (Some(c), Some(r)) if c == r => {}
            (None, None) => {}
            (c, r) => {
                return Err(AttestationError::Tcb(format!(
                    "VEK {name} SPL {c:?} != report REPORTED_TCB {name} {r:?}"
                )));
            }
        }
    }
    match chain.kind {
        VekKind::Vcek => {
            let hwid = ext
                .hwid
                .as_ref()
                .ok_or_else(|| AttestationError::Tcb("VCEK has no hwID extension".into()))?;
            let chip = report.chip_id();
            let matches = match hwid.len() {
                64 => hwid.as_slice() == chip,
                8 => &chip[..8] == hwid.as_slice(),
                n => {
                    return Err(AttestationError::Tcb(format!("VCEK hwID has {n} bytes")));
                }
            };
            if !matches {
                return Err(AttestationError::Tcb(format!(
                    "VCEK hwID {} != report CHIP_ID {}",
                    hex::encode(hwid),
                    hex::encode(chip)
                )));
            }
        }
        VekKind::Vlek => {
            if ext.hwid.is_some() {
                return Err(AttestationError::Tcb(
                    "VLEK carries a hwID extension".into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_policy(
    report: &SnpReport,
    reported: &SnpTcb,
    policy: &SnpPolicy,
) -> Result<(), AttestationError> {
    let bits = report.policy();
    if bits & policy_bits::DEBUG != 0 && !policy.allow_debug {
        return Err(AttestationError::Policy(format!(
            "guest policy {bits:#x} allows debugging (DEBUG bit 19)"
        )));
    }
    if bits & policy_bits::SMT != 0 && !policy.allow_smt {
        return Err(AttestationError::Policy(format!(
            "guest policy {bits:#x} allows SMT"
        )));
    }
    if bits & policy_bits::MIGRATE_MA != 0 && !policy.allow_migration_agent {
        return Err(AttestationError::Policy(format!(
            "guest policy {bits:#x} allows a migration agent"
        )));
    }
    if let Some(min) = &policy.min_tcb
        && !reported.at_least(min)
    {
        return Err(AttestationError::Policy(format!(
            "REPORTED_TCB {reported} is below the minimum {min}"
        )));
    }
    if let Some(max) = policy.max_vmpl
        && report.vmpl() > max
    {
        return Err(AttestationError::Policy(format!(
            "VMPL {} above the maximum {max}",
            report.vmpl()
        )));
    }
    Ok(())
}

/// Verify an SNP report and return its claims.
///
/// Order: parse, chain (incl. validity at `now`), report signature over the
/// received bytes 0x000..0x29F, key-kind / TCB / hwID match, then policy.
pub fn verify_snp(
    input: SnpVerifyInput<'_>,
    policy: &SnpPolicy,
) -> Result<Claims, AttestationError> {
    let report = SnpReport::parse(input.report)?;
    let chain = verify_vek_chain(input.vek, input.chain, input.now)?;
    let expected_kind = match report.signing_key()? {
        SigningKey::Vcek => VekKind::Vcek,
        SigningKey::Vlek => VekKind::Vlek,
        SigningKey::None => {
            return Err(AttestationError::Signature(
                "report is unsigned (SIGNING_KEY = 7)".into(),
            ));
        }
    };
    if expected_kind != chain.kind {
        return Err(AttestationError::CertificateChain(format!(
            "report is signed by a {expected_kind:?} but a {:?} certificate was given",
            chain.kind
        )));
    }
    let key = chain.vek.p384_key()?;
    let (r, s) = report.signature_rs()?;
    let signature = p384::ecdsa::Signature::from_scalars(r, s)
        .map_err(|e| AttestationError::Signature(format!("invalid signature scalars: {e}")))?;
    key.verify(report.signed_bytes(), &signature).map_err(|_| {
        AttestationError::Signature("VEK does not sign the attestation report bytes".into())
    })?;
    let product = product_for(&report, &chain)?;
    let reported = SnpTcb::decode(report.reported_tcb_raw(), product);
    check_vek_matches_report(&report, &chain, &reported)?;
    check_policy(&report, &reported, policy)?;
    tracing::debug!(product = product.name(), kind = ?chain.kind, "SNP report verified");
    Ok(snp_claims(&report, product, &chain, &reported))
}

fn snp_claims(
    report: &SnpReport,
    product: Product,
    chain: &VerifiedVek,
    reported: &SnpTcb,
) -> Claims {
    let mut f = BTreeMap::new();
    let tcb = |raw: [u8; 8]| SnpTcb::decode(raw, product).to_string();
    f.insert("version".into(), report.version().to_string());
    f.insert("guest_svn".into(), report.guest_svn().to_string());
    f.insert("policy".into(), format!("{:#x}", report.policy()));
    f.insert("family_id".into(), hex::encode(report.family_id()));
    f.insert("image_id".into(), hex::encode(report.image_id()));
    f.insert("vmpl".into(), report.vmpl().to_string());
    f.insert("sig_algo".into(), report.sig_algo().to_string());
    f.insert("current_tcb".into(), tcb(report.current_tcb_raw()));
    f.insert("reported_tcb".into(), reported.to_string());
    f.insert("committed_tcb".into(), tcb(report.committed_tcb_raw()));
    f.insert("launch_tcb".into(), tcb(report.launch_tcb_raw()));
    f.insert(
        "platform_info".into(),
        format!("{:#x}", report.platform_info()),
    );
    f.insert("key_info".into(), format!("{:#x}", report.key_info()));
    f.insert("measurement".into(), hex::encode(report.measurement()));
    f.insert("host_data".into(), hex::encode(report.host_data()));
    f.insert("id_key_digest".into(), hex::encode(report.id_key_digest()));
    f.insert(
        "author_key_digest".into(),
        hex::encode(report.author_key_digest()),
    );
    f.insert("report_id".into(), hex::encode(report.report_id()));
    f.insert("report_id_ma".into(), hex::encode(report.report_id_ma()));
    f.insert("chip_id".into(), hex::encode(report.chip_id()));
    let (maj, min, build) = report.current_version();
    f.insert("firmware_version".into(), format!("{maj}.{min}.{build}"));
    if let Some((fam, model, step)) = report.cpuid() {
        f.insert("cpuid".into(), format!("{fam:#x}/{model:#x}/{step}"));
    }
    f.insert("product".into(), product.name().into());
    f.insert(
        "signing_key".into(),
        match chain.kind {
            VekKind::Vcek => "VCEK",
            VekKind::Vlek => "VLEK",
        }
        .into(),
    );
    if let Some(csp) = &chain.extensions.csp_id {
        f.insert("csp_id".into(), csp.clone());
    }
    Claims {
        tee: Tee::Snp,
        measurement: Some(report.measurement().to_vec()),
        rtmrs: Vec::new(),
        init_data: Some(report.host_data().to_vec()),
        report_data: report.report_data().to_vec(),
        tcb_status: "VekMatchesReport".into(),
        advisory_ids: Vec::new(),
        debug: report.policy() & policy_bits::DEBUG != 0,
        platform_id: Some(report.chip_id().to_vec()),
        fields: f,
    }
}
