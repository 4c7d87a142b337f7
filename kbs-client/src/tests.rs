use attestation::attester::sample::SampleAttester;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};

use crate::protocol::{HttpResponse, session_cookie};
use crate::*;

#[test]
fn concat_kdf_rfc7518_appendix_c() {
    // RFC 7518 Appendix C: Z, alg A128GCM, apu "Alice", apv "Bob", 128 bits.
    let z = [
        158u8, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110,
        163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
    ];
    let k = jwe::concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 128);
    assert_eq!(B64URL.encode(k.as_slice()), "VqqN6vgjbSBcIijNcacQGg");
    // Oracle: Python `cryptography` ConcatKDFHash(SHA256, 32, otherinfo) over Z = 0..31.
    let z: Vec<u8> = (0u8..32).collect();
    assert_eq!(
        hex::encode(jwe::concat_kdf_256(&z, "ECDH-ES+A256KW").as_ref()),
        "ead36a3ab953bb6e5a6709471c0fd35fcc62cf920994cede2f3aa2544e9f47ac"
    );
}

fn roundtrip(alg: TeeKeyAlgorithm) {
    let key = TeeKeyPair::generate(alg).unwrap();
    let secret = b"the key encryption key, 32 bytes".to_vec();
    let jwe = jwe::encrypt(&key.public_jwk(), &secret).unwrap();
    let text = serde_json::to_vec(&jwe).unwrap();
    assert_eq!(key.decrypt(&text).unwrap().as_slice(), secret.as_slice());

    // Another key cannot decrypt.
    let other = TeeKeyPair::generate(alg).unwrap();
    assert!(other.decrypt(&text).is_err());

    // Any change to the ciphertext, tag or protected header is detected.
    let mut v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let ct = B64URL.decode(v["ciphertext"].as_str().unwrap()).unwrap();
    let mut flipped = ct.clone();
    flipped[0] ^= 1;
    v["ciphertext"] = B64URL.encode(&flipped).into();
    assert!(key.decrypt(&serde_json::to_vec(&v).unwrap()).is_err());
    v["ciphertext"] = B64URL.encode(&ct).into();
    let header = B64URL.decode(v["protected"].as_str().unwrap()).unwrap();
    let mut h: serde_json::Value = serde_json::from_slice(&header).unwrap();
    h["kid"] = "x".into();
    let original_protected = v["protected"].clone();
    v["protected"] = B64URL.encode(h.to_string()).into();
    assert!(key.decrypt(&serde_json::to_vec(&v).unwrap()).is_err());
    v["protected"] = original_protected;
    assert_eq!(
        key.decrypt(&serde_json::to_vec(&v).unwrap())
            .unwrap()
            .as_slice(),
        secret.as_slice()
    );
}

#[test]
fn jwe_roundtrip_ec_p256() {
    roundtrip(TeeKeyAlgorithm::EcP256);
}

#[test]
fn jwe_roundtrip_rsa_oaep_256() {
    roundtrip(TeeKeyAlgorithm::RsaOaep256);
}

#[test]
fn tee_key_pem_roundtrip_and_jwk_shape() {
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let again = TeeKeyPair::from_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
    let jwk = serde_json::to_value(key.public_jwk()).unwrap();
    assert_eq!(jwk, serde_json::to_value(again.public_jwk()).unwrap());
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ECDH-ES+A256KW");
    assert_eq!(B64URL.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    assert!(TeeKeyPair::from_pem("not a key").is_err());
}

#[test]
fn jwt_sign_verify_and_refusals() {
    let now = jws::now_unix();
    for alg in ["EdDSA", "ES256"] {
        let key = JwsSigningKey::generate(alg).unwrap();
        let vk = key.verifying_key();
        let tok = key
            .sign_jwt(&serde_json::json!({"role": "admin", "exp": now + 60}))
            .unwrap();
        assert_eq!(vk.verify_jwt(&tok, now).unwrap()["role"], "admin");
        // Expired.
        assert!(vk.verify_jwt(&tok, now + 61).is_err());
        // Other key.
        let other = JwsSigningKey::generate(alg).unwrap().verifying_key();
        assert!(other.verify_jwt(&tok, now).is_err());
        // Payload swapped: signature no longer matches.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged_payload = B64URL.encode(r#"{"role":"root","exp":99999999999}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(vk.verify_jwt(&forged, now).is_err());
        // alg none.
        let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(vk.verify_jwt(&none, now).is_err());
    }
    // alg confusion: an EdDSA token presented to an ES256 key.
    let ed = JwsSigningKey::generate("EdDSA").unwrap();
    let es = JwsSigningKey::generate("ES256").unwrap().verifying_key();
    let tok = ed.sign_jwt(&serde_json::json!({"exp": now + 60})).unwrap();
    assert!(es.verify_jwt(&tok, now).is_err());
    // No exp.
    let tok = ed.sign_jwt(&serde_json::json!({"role": "admin"})).unwrap();
    assert!(ed.verifying_key().verify_jwt(&tok, now).is_err());
}

#[test]
fn admin_token_has_trustee_claims() {
    let key = JwsSigningKey::generate("EdDSA").unwrap();
    let tok = jws::admin_token(&key, "admin", "cocoon", 300).unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(tok.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT"}));
    let claims = key
        .verifying_key()
        .verify_jwt(&tok, jws::now_unix())
        .unwrap();
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["iss"], "cocoon");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn handshake_state_machine_builds_the_protocol_messages() {
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let mut hs = Handshake::new(attestation::Tee::Sample, Some("version = \"0.1.0\"".into()));
    let auth = hs.auth_request().unwrap();
    assert_eq!(auth.path, "/kbs/v0/auth");
    let req: serde_json::Value = serde_json::from_slice(&auth.body).unwrap();
    assert_eq!(req["version"], "0.4.0");
    assert_eq!(req["tee"], "sample");
    assert!(hs.auth_request().is_err(), "second auth_request refused");

    let nonce = STANDARD.encode([7u8; 32]);
    let challenge = format!(r#"{{"nonce":"{nonce}","extra-params":""}}"#);
    let resp = response(
        200,
        &[(
            "Set-Cookie",
            "kbs-session-id=abc123; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
        )],
        &challenge,
    );
    let attest = hs.on_auth_response(&resp, &SampleAttester, &key).unwrap();
    assert_eq!(attest.path, "/kbs/v0/attest");
    assert!(
        attest
            .headers
            .contains(&("Cookie".into(), "kbs-session-id=abc123".into()))
    );
    let body: serde_json::Value = serde_json::from_slice(&attest.body).unwrap();
    assert_eq!(body["runtime-data"]["nonce"], nonce.as_str());
    assert_eq!(body["init-data"]["format"], "toml");
    assert_eq!(body["tee-evidence"]["additional_evidence"], "");
    // report_data = SHA-384(JCS({additional-evidence, nonce, tee-pubkey})).
    let expected = attestation::runtime_data_digest(
        &nonce,
        &key.public_jwk(),
        "",
        attestation::HashAlgorithm::Sha384,
    )
    .unwrap();
    let rd = body["tee-evidence"]["primary_evidence"]["report_data"]
        .as_str()
        .unwrap();
    assert_eq!(STANDARD.decode(rd).unwrap(), expected);

    let claims = B64URL.encode(r#"{"exp":4102444800}"#);
    let token = format!("e30.{claims}.sig");
    let done = hs
        .on_attest_response(&response(200, &[], &format!(r#"{{"token":"{token}"}}"#)))
        .unwrap();
    assert_eq!(done.cookie, "abc123");
    assert_eq!(done.expires_at, Some(4102444800));
    assert!(!done.is_expired(jws::now_unix(), 5));
    assert!(done.is_expired(4102444800 - 3, 5));
}

#[test]
fn handshake_maps_errors_and_needs_a_cookie() {
    let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
    let mut hs = Handshake::new(attestation::Tee::Sample, None);
    hs.auth_request().unwrap();
    let e = hs
        .on_auth_response(
            &response(200, &[], r#"{"nonce":"n","extra-params":""}"#),
            &SampleAttester,
            &key,
        )
        .unwrap_err();
    assert!(matches!(e, KbsClientError::Protocol(_)), "{e}");

    let mut hs = Handshake::new(attestation::Tee::Sample, None);
    hs.auth_request().unwrap();
    let body = r#"{"type":"https://github.com/confidential-containers/kbs/errors/AttestationError","detail":"KBS Client Protocol Version Mismatch"}"#;
    let e = hs
        .on_auth_response(&response(401, &[], body), &SampleAttester, &key)
        .unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::AttestationError));

    assert_eq!(
        session_cookie(&response(
            200,
            &[
                ("set-cookie", "other=1"),
                ("set-cookie", "kbs-session-id=z; Path=/")
            ],
            ""
        )),
        Some("z".into())
    );
    // Selected hash algorithm.
    assert_eq!(
        protocol::selected_hash(&serde_json::json!({"selected-hash-algorithm": "SHA512"})).unwrap(),
        attestation::HashAlgorithm::Sha512
    );
    assert!(
        protocol::selected_hash(&serde_json::json!({"selected-hash-algorithm": "md5"})).is_err()
    );
}
