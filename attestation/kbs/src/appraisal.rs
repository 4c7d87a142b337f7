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

    fn verify(&self, tee: Tee, evidence: &[u8], expected: &[u8]) -> Result<Claims, KbsError> {
        let mut options = VerifyOptions {
            snp_policy: attestation::SnpPolicy::default(),
            ..VerifyOptions::default()
        };
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
