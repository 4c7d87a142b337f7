//! `report_data` exactly as KBS protocol 0.4.0 binds it
//! (`guest-components: kbs_protocol/src/client/rcar_client.rs`, mirrored by trustee):
//!
//! `H(JCS({"additional-evidence": <string>, "nonce": <string>, "tee-pubkey": <JWK>}))`
//! with `H` the challenge's selected hash (SHA-384 by default) and `JCS` the
//! RFC 8785 canonical JSON. TDX and SNP zero-pad it to 64 bytes.

pub use kbs_types::{HashAlgorithm, TeePubKey};

use crate::{AttestationError, Tee};

/// Canonical JSON (RFC 8785) of the primary runtime data.
pub fn primary_runtime_data_json(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>, AttestationError> {
    let value = serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    });
    serde_json_canonicalizer::to_vec(&value)
        .map_err(|e| AttestationError::malformed("runtime data", e))
}

/// The digest that KBS 0.4.0 expects in the evidence: `H(JCS(primary runtime data))`.
/// `additional_evidence` is `""` when there are no additional (device) attesters.
pub fn runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
    hash: HashAlgorithm,
) -> Result<Vec<u8>, AttestationError> {
    Ok(hash.digest(&primary_runtime_data_json(
        nonce,
        tee_pubkey,
        additional_evidence,
    )?))
}

/// The report data that additional (device) attesters get: `H(JCS({"nonce","tee-pubkey"}))`.
pub fn device_runtime_data_digest(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    hash: HashAlgorithm,
) -> Result<Vec<u8>, AttestationError> {
    let value = serde_json::json!({ "nonce": nonce, "tee-pubkey": tee_pubkey });
    let bytes = serde_json_canonicalizer::to_vec(&value)
        .map_err(|e| AttestationError::malformed("runtime data", e))?;
    Ok(hash.digest(&bytes))
}

/// What an attester of `tee` puts into the hardware field for `digest`:
/// zero-padded to 64 bytes for TDX/SNP (error if longer), unchanged for sample.
pub fn hardware_report_data(tee: Tee, digest: &[u8]) -> Result<Vec<u8>, AttestationError> {
    match tee.report_data_len() {
        Some(len) if digest.len() > len => Err(AttestationError::malformed(
            "report_data",
            format!("{} bytes, the {tee} field holds {len}", digest.len()),
        )),
        Some(len) => {
            let mut out = digest.to_vec();
            out.resize(len, 0);
            Ok(out)
        }
        None => Ok(digest.to_vec()),
    }
}

/// The value a verifier compares with the evidence for an expected report_data:
/// padded with zeros or truncated to 64 bytes for TDX/SNP (as trustee does),
/// unchanged (exact compare) for sample.
pub fn expected_hardware_value(tee: Tee, expected: &[u8]) -> Vec<u8> {
    match tee.report_data_len() {
        Some(len) => {
            let mut out = expected.to_vec();
            out.resize(len, 0);
            out
        }
        None => expected.to_vec(),
    }
}

/// Compare the evidence's report_data with the expected value under the rule of `tee`.
pub fn check_report_data(tee: Tee, found: &[u8], expected: &[u8]) -> Result<(), AttestationError> {
    let want = expected_hardware_value(tee, expected);
    if want.as_slice() == found {
        Ok(())
    } else {
        Err(AttestationError::ReportDataMismatch {
            expected: hex::encode(want),
            found: hex::encode(found),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ec_key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "AAAA".into(),
            y: "BBBB".into(),
        }
    }

    // Oracle: Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    // and hashlib, run once by hand; these inputs have no numbers, so it equals JCS.
    #[test]
    fn canonical_json_and_digest_match_python_oracle() {
        let json = primary_runtime_data_json("bm9uY2U=", &ec_key(), "").unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"AAAA","y":"BBBB"}}"#
        );
        let d = runtime_data_digest("bm9uY2U=", &ec_key(), "", HashAlgorithm::Sha384).unwrap();
        assert_eq!(
            hex::encode(&d),
            "d20490d30e5f16cba693abc1ca3c31ed977d2722d0adf01a980972d16913dc38f103c1f12abf477df0523af2b12e4b43"
        );
        let d512 = runtime_data_digest("bm9uY2U=", &ec_key(), "", HashAlgorithm::Sha512).unwrap();
        assert_eq!(&hex::encode(&d512)[..16], "573ddd6a846dda24");
        let rsa = TeePubKey::RSA {
            alg: "RSA-OAEP-256".into(),
            k_mod: "nn".into(),
            k_exp: "AQAB".into(),
        };
        let d =
            runtime_data_digest("n", &rsa, "{\"gpu\":\"e\u{e9}\"}", HashAlgorithm::Sha384).unwrap();
        assert_eq!(
            hex::encode(d),
            "4cb23fe062b2e38cf79470aaefd895d0bf8dc96326a759e08a842f9f2bdddd94fc98f12d0aaa447b4e242cab01f003c0"
        );
    }

    #[test]
    fn padding_and_truncation_rules() {
        let d = [7u8; 48];
        let hw = hardware_report_data(Tee::Snp, &d).unwrap();
        assert_eq!(hw.len(), 64);
        assert_eq!(&hw[48..], &[0u8; 16]);
        assert_eq!(hardware_report_data(Tee::Sample, &d).unwrap(), d.to_vec());
        assert!(hardware_report_data(Tee::Tdx, &[0u8; 65]).is_err());
        check_report_data(Tee::Tdx, &hw, &d).unwrap();
        // A 65+ byte expected value is truncated to 64 for TDX/SNP.
        let mut long = hw.clone();
        long.push(9);
        check_report_data(Tee::Snp, &hw, &long).unwrap();
        // Sample compares exactly: the padded form does not match the 48-byte digest.
        assert!(matches!(
            check_report_data(Tee::Sample, &hw, &d),
            Err(AttestationError::ReportDataMismatch { .. })
        ));
        check_report_data(Tee::Sample, &d, &d).unwrap();
        let mut other = d;
        other[0] ^= 1;
        assert!(check_report_data(Tee::Tdx, &hw, &other).is_err());
    }
}
