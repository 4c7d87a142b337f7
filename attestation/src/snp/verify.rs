//! SNP verification: signature over the received bytes, chain, TCB/hwID match, policy.

use std::collections::BTreeMap;

use p384::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};

use super::certs::{VekExtensions, VekKind, VerifiedVek, verify_vek_chain};
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

/// The VEK's TCB extensions must equal REPORTED_TCB; a VCEK's hwID must equal
/// CHIP_ID (whole, or its first 8 bytes on Turin); a VLEK carries no hwID.
fn check_vek_matches_report(
    report: &SnpReport,
    kind: VekKind,
    ext: &VekExtensions,
    reported: &SnpTcb,
) -> Result<(), AttestationError> {
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
    match kind {
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

/// Guest policy bits (debug, SMT, migration agent), minimum REPORTED_TCB and VMPL.
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
    check_vek_matches_report(&report, chain.kind, &chain.extensions, &reported)?;
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

#[cfg(test)]
mod tests {
    //! The checks after the report signature, run directly on parsed fixture values
    //! (a modified report cannot be re-signed, so `verify_snp` would stop earlier).
    use super::*;
    use crate::snp::certs::AmdCert;

    /// A parsed fixture: report, product, VEK kind and extensions, REPORTED_TCB.
    struct Fixture {
        bytes: Vec<u8>,
        product: Product,
        kind: VekKind,
        ext: VekExtensions,
    }

    impl Fixture {
        fn load(dir: &str, vek_file: &str, product: Product) -> Self {
            let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/snp")
                .join(dir);
            let bytes = std::fs::read(base.join("report.bin")).unwrap();
            let cert = AmdCert::from_der(&std::fs::read(base.join(vek_file)).unwrap()).unwrap();
            let kind = match cert.subject_cn().as_str() {
                "SEV-VLEK" => VekKind::Vlek,
                _ => VekKind::Vcek,
            };
            Self {
                ext: cert.vek_extensions().unwrap(),
                bytes,
                product,
                kind,
            }
        }

        fn report(&self) -> SnpReport {
            SnpReport::parse(&self.bytes).unwrap()
        }

        /// The report with `edit` applied to its bytes (signature no longer valid).
        fn edited(&self, edit: impl FnOnce(&mut [u8])) -> SnpReport {
            let mut b = self.bytes.clone();
            edit(&mut b);
            SnpReport::parse(&b).unwrap()
        }

        fn reported(&self, report: &SnpReport) -> SnpTcb {
            SnpTcb::decode(report.reported_tcb_raw(), self.product)
        }

        fn vek_check(
            &self,
            report: &SnpReport,
            ext: &VekExtensions,
        ) -> Result<(), AttestationError> {
            check_vek_matches_report(report, self.kind, ext, &self.reported(report))
        }

        fn policy_check(
            &self,
            report: &SnpReport,
            policy: &SnpPolicy,
        ) -> Result<(), AttestationError> {
            check_policy(report, &self.reported(report), policy)
        }
    }

    fn virtee() -> Fixture {
        Fixture::load("milan-vcek-virtee", "vcek.der", Product::Milan)
    }
    fn gosev() -> Fixture {
        Fixture::load("milan-vcek-gosevguest", "vcek.der", Product::Milan)
    }
    fn vlek() -> Fixture {
        Fixture::load("milan-vlek-trustee-aws", "vlek.der", Product::Milan)
    }
    fn genoa() -> Fixture {
        Fixture::load("genoa-vcek-trustee-coco", "vcek.der", Product::Genoa)
    }

    fn tcb_err(r: Result<(), AttestationError>, needle: &str) {
        match r {
            Err(AttestationError::Tcb(m)) => assert!(m.contains(needle), "{needle:?} not in {m:?}"),
            other => panic!("expected a TCB error naming {needle:?}, got {other:?}"),
        }
    }

    fn policy_err(r: Result<(), AttestationError>, needle: &str) {
        match r {
            Err(AttestationError::Policy(m)) => {
                assert!(m.contains(needle), "{needle:?} not in {m:?}")
            }
            other => panic!("expected a policy error naming {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn every_fixture_vek_matches_its_report() {
        for f in [virtee(), gosev(), vlek(), genoa()] {
            let r = f.report();
            f.vek_check(&r, &f.ext).unwrap();
            f.policy_check(&r, &SnpPolicy::permissive()).unwrap();
        }
    }

    #[test]
    fn vek_tcb_extension_differing_from_reported_tcb_is_refused() {
        for f in [virtee(), vlek(), genoa()] {
            let r = f.report();
            type Field = fn(&mut VekExtensions) -> &mut Option<u8>;
            let fields: [(&str, Field); 4] = [
                ("bootloader", |e| &mut e.bootloader),
                ("tee", |e| &mut e.tee),
                ("snp", |e| &mut e.snp),
                ("microcode", |e| &mut e.microcode),
            ];
            for (name, field) in fields {
                let mut ext = f.ext.clone();
                let v = field(&mut ext);
                *v = v.map(|x| x.wrapping_add(1));
                tcb_err(f.vek_check(&r, &ext), &format!("VEK {name} SPL"));
                let mut ext = f.ext.clone();
                *field(&mut ext) = None;
                tcb_err(f.vek_check(&r, &ext), &format!("VEK {name} SPL None"));
            }
            // An FMC SPL on a pre-Turin VEK has no REPORTED_TCB counterpart.
            let ext = VekExtensions {
                fmc: Some(0),
                ..f.ext.clone()
            };
            tcb_err(f.vek_check(&r, &ext), "VEK fmc SPL");
        }
        // REPORTED_TCB changed in the report, certificate untouched (Milan layout:
        // byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode).
        let f = virtee();
        for (off, name) in [(0, "bootloader"), (1, "tee"), (6, "snp"), (7, "microcode")] {
            let r = f.edited(|b| b[0x180 + off] ^= 0x01);
            tcb_err(
                f.vek_check(&r, &f.ext),
                &format!("report REPORTED_TCB {name}"),
            );
        }
        // Another chip's genuine VCEK: its TCB values differ from this report's.
        let other = gosev();
        tcb_err(
            f.vek_check(&f.report(), &other.ext),
            "VEK bootloader SPL Some(2)",
        );
    }

    #[test]
    fn vcek_hwid_differing_from_chip_id_is_refused() {
        let f = virtee();
        for off in [0usize, 7, 8, 63] {
            let r = f.edited(|b| b[0x1A0 + off] ^= 0x01);
            tcb_err(f.vek_check(&r, &f.ext), "VCEK hwID");
        }
        // Another chip's hwID with this report's TCB values.
        let other = gosev();
        let ext = VekExtensions {
            hwid: other.ext.hwid.clone(),
            ..f.ext.clone()
        };
        tcb_err(f.vek_check(&f.report(), &ext), "!= report CHIP_ID");
        // No hwID at all.
        let ext = VekExtensions {
            hwid: None,
            ..f.ext.clone()
        };
        tcb_err(f.vek_check(&f.report(), &ext), "VCEK has no hwID");
        // Turin-style 8-byte hwID: compared with the first 8 bytes of CHIP_ID.
        let r = f.report();
        let short = VekExtensions {
            hwid: Some(r.chip_id()[..8].to_vec()),
            ..f.ext.clone()
        };
        f.vek_check(&r, &short).unwrap();
        let r = f.edited(|b| b[0x1A0 + 3] ^= 0x80);
        tcb_err(f.vek_check(&r, &short), "VCEK hwID");
        // Any other length is refused.
        let odd = VekExtensions {
            hwid: Some(vec![0; 32]),
            ..f.ext.clone()
        };
        tcb_err(f.vek_check(&f.report(), &odd), "hwID has 32 bytes");
    }

    #[test]
    fn vlek_with_a_hwid_is_refused() {
        let f = vlek();
        let ext = VekExtensions {
            hwid: Some(vec![0; 64]),
            ..f.ext.clone()
        };
        tcb_err(f.vek_check(&f.report(), &ext), "VLEK carries a hwID");
    }

    #[test]
    fn migration_agent_policy_bit_is_refused_unless_allowed() {
        let f = virtee();
        // POLICY bit 18 (MIGRATE_MA) is bit 2 of byte 0x0A.
        let r = f.edited(|b| b[0x0A] |= 0x04);
        assert_ne!(r.policy() & policy_bits::MIGRATE_MA, 0);
        policy_err(f.policy_check(&r, &SnpPolicy::default()), "migration agent");
        let allow = SnpPolicy {
            allow_migration_agent: true,
            ..SnpPolicy::default()
        };
        f.policy_check(&r, &allow).unwrap();
        f.policy_check(&f.report(), &SnpPolicy::default()).unwrap();
    }

    #[test]
    fn smt_policy_bit_is_refused_when_smt_is_not_allowed() {
        let f = virtee();
        let no_smt = SnpPolicy {
            allow_smt: false,
            ..SnpPolicy::default()
        };
        // The fixture's policy 0x30000 has SMT (bit 16) set.
        policy_err(f.policy_check(&f.report(), &no_smt), "allows SMT");
        let r = f.edited(|b| b[0x0A] &= !0x01);
        assert_eq!(r.policy() & policy_bits::SMT, 0);
        f.policy_check(&r, &no_smt).unwrap();
    }

    #[test]
    fn debug_policy_bit_is_refused_unless_allowed() {
        let f = gosev();
        policy_err(f.policy_check(&f.report(), &SnpPolicy::default()), "DEBUG");
        let allow = SnpPolicy {
            allow_debug: true,
            ..SnpPolicy::default()
        };
        f.policy_check(&f.report(), &allow).unwrap();
    }

    #[test]
    fn vmpl_above_the_maximum_is_refused() {
        // The AWS VLEK report was taken at VMPL 1.
        let f = vlek();
        let max0 = SnpPolicy {
            max_vmpl: Some(0),
            ..SnpPolicy::default()
        };
        policy_err(
            f.policy_check(&f.report(), &max0),
            "VMPL 1 above the maximum 0",
        );
        let max1 = SnpPolicy {
            max_vmpl: Some(1),
            ..SnpPolicy::default()
        };
        f.policy_check(&f.report(), &max1).unwrap();
        let v = virtee();
        v.policy_check(&v.report(), &max0).unwrap();
        let r = v.edited(|b| b[0x30] = 3);
        policy_err(v.policy_check(&r, &max1), "VMPL 3 above the maximum 1");
    }

    #[test]
    fn minimum_tcb_above_the_reported_tcb_is_refused() {
        // virtee REPORTED_TCB: bl=3 tee=0 snp=8 ucode=115.
        let f = virtee();
        let r = f.report();
        let exact = f.reported(&r);
        assert_eq!(exact.to_string(), "bl=3 tee=0 snp=8 ucode=115");
        let with = |min: SnpTcb| SnpPolicy {
            min_tcb: Some(min),
            ..SnpPolicy::default()
        };
        f.policy_check(&r, &with(exact)).unwrap();
        f.policy_check(&r, &with(SnpTcb::default())).unwrap();
        for above in [
            SnpTcb {
                bootloader: 4,
                ..exact
            },
            SnpTcb { tee: 1, ..exact },
            SnpTcb { snp: 9, ..exact },
            SnpTcb {
                microcode: 116,
                ..exact
            },
            SnpTcb {
                fmc: Some(1),
                ..exact
            },
        ] {
            policy_err(
                f.policy_check(&r, &with(above)),
                &format!("REPORTED_TCB {exact} is below the minimum {above}"),
            );
        }
    }
}
