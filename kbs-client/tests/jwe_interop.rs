//! JWE checked against an independent implementation: Python `jwcrypto`
//! (pip install jwcrypto). Both directions, EC P-256 ECDH-ES+A256KW and
//! RSA-OAEP-256, A256GCM, flattened JSON serialisation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use kbs_client::{TeeKeyAlgorithm, TeeKeyPair, jwe};

const PY: &str = r#"
import sys, json
from jwcrypto import jwk, jwe
mode, keyfile = sys.argv[1], sys.argv[2]
key = jwk.JWK.from_pem(open(keyfile, 'rb').read())
data = sys.stdin.buffer.read()
if mode == 'decrypt':
    t = jwe.JWE()
    t.deserialize(data.decode(), key=key)
    sys.stdout.write(t.payload.hex())
else:
    pub = json.loads(key.export_public())
    alg = 'ECDH-ES+A256KW' if pub['kty'] == 'EC' else 'RSA-OAEP-256'
    t = jwe.JWE(data, protected=json.dumps({'alg': alg, 'enc': 'A256GCM'}))
    t.add_recipient(jwk.JWK(**pub))
    sys.stdout.write(t.serialize(compact=False))
"#;

fn python() -> String {
    std::env::var("KBS_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn jwcrypto(mode: &str, key_pem: &str, input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key.pem");
    std::fs::write(&keyfile, key_pem).unwrap();
    let mut child = Command::new(python())
        .args(["-c", PY, mode, keyfile.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with jwcrypto is needed (pip install jwcrypto)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jwcrypto {mode} failed (pip install jwcrypto): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn both_directions(alg: TeeKeyAlgorithm) {
    let key = TeeKeyPair::generate(alg).unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let secret: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();

    // Ours (the KBS side, as cocoon-kbs uses it) -> jwcrypto decrypts.
    let ours = serde_json::to_vec(&jwe::encrypt(&key.public_jwk(), &secret).unwrap()).unwrap();
    let hex_out = jwcrypto("decrypt", &pem, &ours);
    assert_eq!(String::from_utf8(hex_out).unwrap(), hex::encode(&secret));

    // jwcrypto encrypts to our public key -> our client decrypts.
    let theirs = jwcrypto("encrypt", &pem, &secret);
    assert_eq!(key.decrypt(&theirs).unwrap().as_slice(), secret.as_slice());
    // And a flipped byte in their ciphertext is detected by us.
    let mut v: serde_json::Value = serde_json::from_slice(&theirs).unwrap();
    let ct = v["ciphertext"].as_str().unwrap().to_string();
    let mut chars: Vec<char> = ct.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    let swapped: String = chars.into_iter().collect();
    v["ciphertext"] = swapped.into();
    assert!(key.decrypt(&serde_json::to_vec(&v).unwrap()).is_err());
}

#[test]
fn jwe_ec_p256_interoperates_with_jwcrypto() {
    both_directions(TeeKeyAlgorithm::EcP256);
}

#[test]
fn jwe_rsa_oaep_256_interoperates_with_jwcrypto() {
    both_directions(TeeKeyAlgorithm::RsaOaep256);
}
