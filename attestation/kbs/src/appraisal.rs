//! Evidence → claims → appraisal → EAR token claims.
//!
//! Verification and appraisal are the `attestation` crate's ([`attestation::verify`],
//! [`attestation::appraise`]); this module binds them to the KBS protocol: the
//! expected report_data is recomputed from the session's nonce and the posted
//! tee-pubkey, initdata is checked against the hardware field, and the result is
//! shaped as an EAR (draft-ietf-rats-ear) claim set like trustee's. The
//! trustworthiness vector and status come from the attestation policy
//! ([`crate::attestation_policy`]), evaluated on [`Appraised::annotated_evidence`] and
//! [`Appraiser::policy_data`].

use attestation::tdx::QuoteCollateralV3;
use attestation::{AppraisalPolicy, Claims, ReferenceValues, Tee, VerifyOptions};
use kbs_types::{Attestation, TeePubKey};
use serde_json::{Value, json};
use sha2::Digest;

use crate::KbsError;
use crate::attestation_policy::PolicyAppraisal;

/// EAR profile; the same string as trustee so policies written for it carry over.
pub const EAR_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";

/// What the KBS verifies evidence against.
#[derive(Debug, Clone, Default)]
pub struct Appraiser {
    /// Reference values.
    pub reference: ReferenceValues,
    /// Appraisal policy (allow_sample, allow_debug, ...).
    pub policy: AppraisalPolicy,
    /// TDX collateral candidates.
    pub tdx_collateral: Vec<QuoteCollateralV3>,
}

/// Verified evidence that matched the reference values.
#[derive(Debug, Clone)]
pub struct Appraised {
    /// Verified claims.
    pub claims: Claims,
    /// Reference keys compared (all matched) and those left unchecked.
    pub reference: attestation::Appraisal,
    /// Init-data table as JSON (when init-data was sent and matched).
    pub init_data_claims: Value,
    /// Digest of the init-data sent with sample evidence, which has no hardware field to
    /// carry it (trustee's sample verifier reports it the same way); `None` otherwise.
    pub sample_init_data: Option<Vec<u8>>,
}

fn fail(reason: impl std::fmt::Display) -> KbsError {
    KbsError::Attestation(reason.to_string())
}

/// Check the tee-pubkey is one the KBS can encrypt to.
pub fn check_tee_pubkey(key: &TeePubKey) -> Result<(), KbsError> {
    match key {
        TeePubKey::EC { crv, alg, .. } if crv == "P-256" && alg == "ECDH-ES+A256KW" => Ok(()),
        TeePubKey::RSA { alg, .. } if alg == "RSA-OAEP-256" => Ok(()),
        other => Err(fail(format!(
            "tee-pubkey {} not supported (EC P-256 ECDH-ES+A256KW or RSA RSA-OAEP-256)",
            serde_json::to_string(other).unwrap_or_default()
        ))),
    }
}

impl Appraiser {
    /// Verify `attestation` for `tee` with the session's `nonce`, then appraise.
    /// CPU-bound: call from a blocking thread.
    pub fn appraise(
        &self,
        tee: Tee,
        nonce: &str,
        hash: attestation::HashAlgorithm,
        attestation: &Attestation,
    ) -> Result<Appraised, KbsError> {
        if attestation.runtime_data.nonce != nonce {
            return Err(fail(
                "runtime-data nonce is not the session's challenge nonce",
            ));
        }
        if !attestation.tee_evidence.additional_evidence.is_empty() {
            return Err(fail("additional (device) evidence is not supported"));
        }
        check_tee_pubkey(&attestation.runtime_data.tee_pubkey)?;
        let expected = attestation::runtime_data_digest(
            nonce,
            &attestation.runtime_data.tee_pubkey,
            &attestation.tee_evidence.additional_evidence,
            hash,
        )
        .map_err(fail)?;
        let evidence =
            serde_json::to_vec(&attestation.tee_evidence.primary_evidence).map_err(fail)?;
        let claims = self.verify(tee, &evidence, &expected)?;
        let appraisal =
            attestation::appraise(&claims, &self.reference, &self.policy).map_err(fail)?;
        let (init_data_claims, digest) = match &attestation.init_data {
            Some(init) => check_init_data(&claims, &init.format, &init.body)?,
            None => (Value::Null, Vec::new()),
        };
        let sample_init_data = (claims.tee == Tee::Sample && !digest.is_empty()).then_some(digest);
        Ok(Appraised {
            claims,
            reference: appraisal,
            init_data_claims,
            sample_init_data,
        })
    }

    /// The attestation policy's `data`: `{"reference": <reference values>,
    /// "appraisal": {"matched": [key], "unchecked": [key]}}`.
    pub fn policy_data(&self, appraised: &Appraised) -> Value {
        json!({
            "reference": &self.reference,
            "appraisal": {
                "matched": &appraised.reference.matched,
                "unchecked": &appraised.reference.unchecked,
            },
        })
    }

    /// Verifier options under the configured policy: the SNP and TDX verifiers
    /// refuse a debuggable guest unless `allow_debug` is set (other SNP checks keep
    /// their strict defaults). `now` overrides the clock (tests).
    fn verify_options(&self, now: Option<i64>) -> VerifyOptions {
        VerifyOptions {
            now,
            snp_policy: attestation::SnpPolicy {
                allow_debug: self.policy.allow_debug,
                ..attestation::SnpPolicy::default()
            },
            tdx_policy: attestation::TdxPolicy {
                allow_debug: self.policy.allow_debug,
                ..attestation::TdxPolicy::default()
            },
            ..VerifyOptions::default()
        }
    }

    fn verify(&self, tee: Tee, evidence: &[u8], expected: &[u8]) -> Result<Claims, KbsError> {
        self.verify_at(tee, evidence, expected, None)
    }

    /// [`Appraiser::verify`] at `now` (None: the system clock). TDX evidence is tried
    /// against each configured collateral in turn.
    fn verify_at(
        &self,
        tee: Tee,
        evidence: &[u8],
        expected: &[u8],
        now: Option<i64>,
    ) -> Result<Claims, KbsError> {
        let mut options = self.verify_options(now);
        if tee != Tee::Tdx || self.tdx_collateral.is_empty() {
            return attestation::verify(tee, evidence, &options, Some(expected)).map_err(fail);
        }
        let mut last = None;
        for collateral in &self.tdx_collateral {
            options.collateral = Some(collateral.clone());
            match attestation::verify(tee, evidence, &options, Some(expected)) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(fail(last.map(|e| e.to_string()).unwrap_or_default()))
    }
}

/// Initdata (`format = "toml"`): parse, hash with its declared algorithm, compare
/// with the hardware field (TDX MRCONFIGID, SNP HOST_DATA; zero-padded/truncated as
/// the Kata shim binds it). Sample evidence has no such field: the claims are
/// reported but bound to nothing. Returns the table as JSON and the digest.
fn check_init_data(
    claims: &Claims,
    format: &str,
    body: &str,
) -> Result<(Value, Vec<u8>), KbsError> {
    if format != "toml" {
        return Err(fail(format!("init-data format {format:?} (expected toml)")));
    }
    let doc: toml::Table = toml::from_str(body).map_err(|e| fail(format!("init-data: {e}")))?;
    if doc.get("version").and_then(|v| v.as_str()) != Some("0.1.0") {
        return Err(fail("init-data version must be \"0.1.0\""));
    }
    let digest = match doc.get("algorithm").and_then(|v| v.as_str()) {
        Some("sha256") => sha2::Sha256::digest(body.as_bytes()).to_vec(),
        Some("sha384") => sha2::Sha384::digest(body.as_bytes()).to_vec(),
        Some("sha512") => sha2::Sha512::digest(body.as_bytes()).to_vec(),
        other => return Err(fail(format!("init-data algorithm {other:?} not supported"))),
    };
    if claims.tee != Tee::Sample {
        let field = claims
            .init_data
            .as_ref()
            .ok_or_else(|| fail("evidence has no init-data field"))?;
        let mut want = digest.clone();
        want.resize(field.len(), 0);
        if &want != field {
            return Err(fail(format!(
                "init-data digest {} does not match the evidence's {}",
                hex::encode(&digest),
                hex::encode(field)
            )));
        }
    }
    let data = doc
        .get("data")
        .cloned()
        .unwrap_or(toml::Value::Table(Default::default()));
    Ok((serde_json::to_value(data).map_err(fail)?, digest))
}

impl Appraised {
    /// The verified claims as trustee shapes them: `{<tee>: claims, report_data,
    /// init_data, init_data_claims, runtime_data_claims{nonce, tee-pubkey}}`. The
    /// attestation policy's `input` and the token's `ear.veraison.annotated-evidence`.
    pub fn annotated_evidence(&self, attestation: &Attestation) -> Value {
        let c = &self.claims;
        json!({
            c.tee.as_str(): tee_claims(c),
            "report_data": hex::encode(&c.report_data),
            "init_data": c.init_data.as_ref().or(self.sample_init_data.as_ref()).map(hex::encode),
            "init_data_claims": self.init_data_claims,
            "runtime_data_claims": {
                "nonce": attestation.runtime_data.nonce,
                "tee-pubkey": attestation.runtime_data.tee_pubkey,
            },
        })
    }
}

fn tee_claims(c: &Claims) -> Value {
    if c.tee == Tee::Sample {
        json!({
            "svn": c.fields.get("svn").cloned().unwrap_or_default(),
            "report_data": hex::encode(&c.report_data),
        })
    } else {
        let mut v = serde_json::to_value(&c.fields).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("tcb_status".into(), c.tcb_status.clone().into());
            obj.insert("debug".into(), c.debug.into());
            obj.insert("advisory_ids".into(), json!(c.advisory_ids));
        }
        v
    }
}

/// The EAR claim set of a token: the policy's appraisal of `annotated_evidence`.
pub fn ear_claims(
    appraisal: &PolicyAppraisal,
    annotated_evidence: Value,
    iat: i64,
    lifetime_secs: i64,
) -> Value {
    json!({
        "eat_profile": EAR_PROFILE,
        "iat": iat,
        "exp": iat + lifetime_secs,
        "ear.verifier-id": {
            "developer": "https://github.com/cocoon",
            "build": concat!("cocoon-kbs ", env!("CARGO_PKG_VERSION")),
        },
        "submods": {
            "cpu0": {
                "ear.status": appraisal.status.as_str(),
                "ear.trustworthiness-vector": appraisal.vector_json(),
                "ear.appraisal-policy-id": appraisal.policy_id,
                "ear.veraison.annotated-evidence": annotated_evidence,
            },
        },
    })
}

/// JSON pointer of the tee-pubkey in an EAR token (trustee's `TOKEN_TEE_PUBKEY_PATH_EAR`).
pub const TEE_PUBKEY_POINTER: &str =
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey";

/// The tee-pubkey of verified token claims.
pub fn tee_pubkey_of(claims: &Value) -> Result<TeePubKey, KbsError> {
    let v = claims
        .pointer(TEE_PUBKEY_POINTER)
        .ok_or_else(|| KbsError::TokenVerifier("token carries no tee-pubkey".into()))?;
    serde_json::from_value(v.clone())
        .map_err(|e| KbsError::TokenVerifier(format!("token tee-pubkey: {e}")))
}

#[cfg(test)]
mod tests {
    //! Real fixture evidence (attestation/tests/data) through the KBS verifier, at the
    //! recorded times and with the recorded report_data.
    use super::*;
    use std::path::PathBuf;

    fn data(rel: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data")
            .join(rel)
    }

    fn read(rel: &str) -> Vec<u8> {
        std::fs::read(data(rel)).unwrap()
    }

    fn expected(dir: &str) -> Value {
        serde_json::from_slice(&read(&format!("{dir}/expected.json"))).unwrap()
    }

    fn hex_of(e: &Value, key: &str) -> Vec<u8> {
        hex::decode(e[key].as_str().unwrap()).unwrap()
    }

    fn appraiser(allow_debug: bool) -> Appraiser {
        Appraiser {
            policy: AppraisalPolicy {
                allow_debug,
                ..AppraisalPolicy::default()
            },
            ..Appraiser::default()
        }
    }

    /// SNP evidence as the guest posts it: CoCo JSON with the VCEK in the cert table.
    /// Returns (evidence, report_data, a time inside the VCEK's validity).
    fn snp_evidence(dir: &str) -> (Vec<u8>, Vec<u8>, i64) {
        let e = expected(dir);
        let report = read(&format!("{dir}/report.bin"));
        let vek = read(&format!("{dir}/{}", e["vek_file"].as_str().unwrap()));
        let evidence = attestation::SnpEvidence::from_report_bytes(&report, None).unwrap();
        let mut v = serde_json::to_value(&evidence).unwrap();
        v["cert_chain"] = json!([{ "cert_type": e["vek_type"], "data": vek }]);
        let t = |i: usize| attestation::time::parse_rfc3339(e["vek_valid"][i].as_str().unwrap());
        let (from, to) = (t(0).unwrap(), t(1).unwrap());
        (
            serde_json::to_vec(&v).unwrap(),
            hex_of(&e, "report_data"),
            from + (to - from) / 2,
        )
    }

    /// TDX evidence JSON, its collateral, report_data and recorded `now`.
    fn tdx_evidence(dir: &str) -> (Vec<u8>, QuoteCollateralV3, Vec<u8>, i64) {
        let e = expected(dir);
        let quote = read(&format!("{dir}/quote.bin"));
        let evidence = attestation::TdxEvidence::new(&quote, None);
        let collateral =
            attestation::tdx::parse_collateral_json(&read(&format!("{dir}/collateral.json")))
                .unwrap();
        (
            serde_json::to_vec(&evidence).unwrap(),
            collateral,
            hex_of(&e, "report_data"),
            e["verification"]["now_unix"].as_i64().unwrap(),
        )
    }

    fn initdata(algorithm: &str) -> String {
        format!(
            "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"policy.rego\" = \"package agent_policy\"\n"
        )
    }

    #[test]
    fn snp_fixture_evidence_is_accepted_with_its_report_data() {
        for dir in ["snp/milan-vcek-virtee", "snp/genoa-vcek-trustee-coco"] {
            let (evidence, rd, now) = snp_evidence(dir);
            let claims = appraiser(false)
                .verify_at(Tee::Snp, &evidence, &rd, Some(now))
                .unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(claims.report_data, rd, "{dir}");
            assert_eq!(
                claims.measurement,
                Some(hex_of(&expected(dir), "measurement")),
                "{dir}"
            );
            assert!(!claims.debug);
            // Another nonce binding is refused.
            let mut other = rd.clone();
            other[0] ^= 1;
            let err = appraiser(false)
                .verify_at(Tee::Snp, &evidence, &other, Some(now))
                .unwrap_err();
            assert!(err.to_string().contains("report_data mismatch"), "{err}");
        }
    }

    #[test]
    fn allow_debug_reaches_the_snp_verifier() {
        // The go-sev-guest report's guest policy allows debugging (0xb0000).
        let (evidence, rd, now) = snp_evidence("snp/milan-vcek-gosevguest");
        let err = appraiser(false)
            .verify_at(Tee::Snp, &evidence, &rd, Some(now))
            .unwrap_err();
        assert!(err.to_string().contains("DEBUG"), "{err}");
        let a = appraiser(true);
        let claims = a
            .verify_at(Tee::Snp, &evidence, &rd, Some(now))
            .unwrap_or_else(|e| panic!("allow_debug = true: {e}"));
        assert!(claims.debug);
        attestation::appraise(&claims, &a.reference, &a.policy).unwrap();
    }

    #[test]
    fn allow_debug_reaches_the_tdx_verifier_policy() {
        // No fixture quote has TD DEBUG set: check the options handed to the verifier.
        for allow in [false, true] {
            let o = appraiser(allow).verify_options(Some(1));
            assert_eq!(o.tdx_policy.allow_debug, allow);
            assert_eq!(o.snp_policy.allow_debug, allow);
            assert_eq!(o.now, Some(1));
            // The other SNP checks keep their strict defaults.
            assert!(!o.snp_policy.allow_migration_agent);
        }
    }

    #[test]
    fn tdx_fixture_evidence_is_accepted_with_its_report_data() {
        let (v4, v4_coll, v4_rd, v4_now) = tdx_evidence("tdx/v4-uptodate-dcapqvl");
        let (v5, v5_coll, v5_rd, v5_now) = tdx_evidence("tdx/v5-uptodate-gotdxguest");
        // Both collaterals configured: each quote verifies with its own.
        let a = Appraiser {
            tdx_collateral: vec![v5_coll, v4_coll],
            ..appraiser(false)
        };
        for (dir, evidence, rd, now) in [
            ("tdx/v4-uptodate-dcapqvl", &v4, &v4_rd, v4_now),
            ("tdx/v5-uptodate-gotdxguest", &v5, &v5_rd, v5_now),
        ] {
            let claims = a
                .verify_at(Tee::Tdx, evidence, rd, Some(now))
                .unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert_eq!(&claims.report_data, rd, "{dir}");
            assert_eq!(claims.tcb_status, "UpToDate", "{dir}");
            assert_eq!(claims.measurement, Some(hex_of(&expected(dir), "mr_td")));
        }
        // Without collateral TDX evidence cannot be verified.
        let err = appraiser(false)
            .verify_at(Tee::Tdx, &v4, &v4_rd, Some(v4_now))
            .unwrap_err();
        assert!(err.to_string().contains("collateral"), "{err}");
    }

    #[test]
    fn init_data_is_compared_with_host_data_and_mrconfigid() {
        let (snp, snp_rd, snp_now) = snp_evidence("snp/milan-vcek-virtee");
        let snp_claims = appraiser(false)
            .verify_at(Tee::Snp, &snp, &snp_rd, Some(snp_now))
            .unwrap();
        let host_data = hex_of(&expected("snp/milan-vcek-virtee"), "host_data");
        assert_eq!(snp_claims.init_data.as_ref(), Some(&host_data));
        let (tdx, coll, tdx_rd, tdx_now) = tdx_evidence("tdx/v4-uptodate-dcapqvl");
        let tdx_claims = Appraiser {
            tdx_collateral: vec![coll],
            ..appraiser(false)
        }
        .verify_at(Tee::Tdx, &tdx, &tdx_rd, Some(tdx_now))
        .unwrap();
        let mrconfigid = hex_of(&expected("tdx/v4-uptodate-dcapqvl"), "mr_config_id");
        assert_eq!(tdx_claims.init_data.as_ref(), Some(&mrconfigid));

        // The fixtures' HOST_DATA / MRCONFIGID are zero: a real initdata digest mismatches,
        // and the error names both values.
        for (claims, field, alg) in [
            (&snp_claims, &host_data, "sha256"),
            (&snp_claims, &host_data, "sha384"),
            (&tdx_claims, &mrconfigid, "sha384"),
            (&tdx_claims, &mrconfigid, "sha512"),
        ] {
            let body = initdata(alg);
            let digest = match alg {
                "sha256" => sha2::Sha256::digest(body.as_bytes()).to_vec(),
                "sha384" => sha2::Sha384::digest(body.as_bytes()).to_vec(),
                _ => sha2::Sha512::digest(body.as_bytes()).to_vec(),
            };
            let err = check_init_data(claims, "toml", &body)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "init-data digest {} does not match the evidence's {}",
                    hex::encode(&digest),
                    hex::encode(field)
                )),
                "{alg}: {err}"
            );
            // The same claims carrying the digest, zero-padded / truncated to the field
            // as the shim binds it, are accepted.
            let mut bound = digest.clone();
            bound.resize(field.len(), 0);
            let matching = Claims {
                init_data: Some(bound),
                ..(*claims).clone()
            };
            let (table, d) = check_init_data(&matching, "toml", &body).unwrap();
            assert_eq!(d, digest);
            assert_eq!(table, json!({ "policy.rego": "package agent_policy" }));
        }
        // Malformed init-data is refused before any comparison.
        assert!(check_init_data(&snp_claims, "json", &initdata("sha256")).is_err());
        assert!(check_init_data(&snp_claims, "toml", &initdata("md5")).is_err());
    }
}
