//! The `KbsClient` library against an external KBS, such as trustee's own `kbs`
//! (run it by hand against a trustee `kbs` started with its builtin AS). Skipped (passes with a notice) unless
//! `KBS_INTEROP_URL` is set; CI has no trustee build, so this is a manual test.
//!
//! Environment:
//! - `KBS_INTEROP_URL`: base URL, e.g. `http://127.0.0.1:18080`;
//! - `KBS_INTEROP_ADMIN_TOKEN_FILE`: the KBS's admin JWT (EdDSA with a `role` claim);
//! - `KBS_INTEROP_PREFIX`: resource repository name to use (default `cocoon-interop`).
//!
//! The KBS must accept sample evidence at attestation (trustee's builtin AS does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kbs_client::{
    KbsAdminClient, KbsClientBuilder, KbsErrorType, ResourceUri, SampleFallback, TeeKeyAlgorithm,
};

const ALLOW_RESOURCE_PLUGIN: &[u8] =
    b"package policy\n\ndefault allow := false\n\nallow if data.plugin == \"resource\"\n";
const DENY_ALL: &[u8] = b"package policy\n\ndefault allow := false\n";

fn env() -> Option<(String, String, String)> {
    let url = std::env::var("KBS_INTEROP_URL").ok()?;
    let token_file = std::env::var("KBS_INTEROP_ADMIN_TOKEN_FILE")
        .expect("KBS_INTEROP_URL is set: KBS_INTEROP_ADMIN_TOKEN_FILE must be too");
    let token = std::fs::read_to_string(&token_file)
        .unwrap_or_else(|e| panic!("{token_file}: {e}"))
        .trim()
        .to_string();
    let prefix = std::env::var("KBS_INTEROP_PREFIX").unwrap_or_else(|_| "cocoon-interop".into());
    Some((url, token, prefix))
}

fn uri(p: &str) -> ResourceUri {
    ResourceUri::from_resource_path(p).unwrap()
}

#[tokio::test]
async fn library_against_external_kbs() {
    let Some((url, token, prefix)) = env() else {
        eprintln!("KBS_INTEROP_URL not set: external KBS interop test skipped");
        return;
    };
    let admin = KbsAdminClient::new(&url, Some(token), &[]).unwrap();
    let anonymous = KbsAdminClient::new(&url, None, &[]).unwrap();
    let path = format!("{prefix}/key/one");
    let secret: Vec<u8> = (0u8..=255).rev().cycle().take(333).collect();

    // Admin auth: anonymous refused, the admin token accepted.
    let e = anonymous
        .set_resource(&path, b"x".to_vec())
        .await
        .unwrap_err();
    eprintln!("anonymous set-resource: {e}");
    assert_eq!(e.status(), Some(401), "{e}");
    admin.set_resource(&path, secret.clone()).await.unwrap();

    // Deny-all policy: PolicyDeny after a successful attestation, no re-attest loop.
    admin.set_resource_policy(DENY_ALL).await.unwrap();
    let mut ec = KbsClientBuilder::new(&url)
        .sample_fallback(SampleFallback::Allow)
        .build()
        .unwrap();
    let token = ec.attest().await.unwrap();
    assert_eq!(token.split('.').count(), 3, "a compact JWT: {token}");
    let e = ec.get_resource(&uri(&path)).await.unwrap_err();
    assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny), "{e}");
    assert_eq!(ec.handshakes(), 1);

    // Allow the resource plugin: EC P-256 and RSA-OAEP-256 tee keys both decrypt.
    admin
        .set_resource_policy(ALLOW_RESOURCE_PLUGIN)
        .await
        .unwrap();
    assert_eq!(
        ec.get_resource(&uri(&path)).await.unwrap().as_slice(),
        &secret[..]
    );
    let mut rsa = KbsClientBuilder::new(&url)
        .sample_fallback(SampleFallback::Allow)
        .key_algorithm(TeeKeyAlgorithm::RsaOaep256)
        .build()
        .unwrap();
    assert_eq!(
        rsa.get_resource(&uri(&path)).await.unwrap().as_slice(),
        &secret[..]
    );

    // The token alone (bearer, no cookie) from a second client holding the same key.
    let bearer_client = KbsClientBuilder::new(&url)
        .sample_fallback(SampleFallback::Allow)
        .tee_key(kbs_client::TeeKeyPair::from_pem(&ec.tee_key().to_pkcs8_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let got = bearer_client
        .get_resource_with_token(&uri(&path), &token)
        .await
        .unwrap();
    assert_eq!(got.as_slice(), &secret[..]);
    // ... but not with another client's key: the KBS encrypts to the token's key.
    let other = KbsClientBuilder::new(&url)
        .sample_fallback(SampleFallback::Allow)
        .build()
        .unwrap();
    assert!(
        other
            .get_resource_with_token(&uri(&path), &token)
            .await
            .is_err()
    );

    // Unknown resource: an error naming it, no secret.
    let e = ec
        .get_resource(&uri(&format!("{prefix}/key/absent")))
        .await
        .unwrap_err();
    eprintln!("absent resource: {e}");
    assert!(e.status().is_some_and(|s| s >= 400), "{e}");

    // Delete, then the resource is gone.
    admin.delete_resource(&path).await.unwrap();
    assert!(ec.get_resource(&uri(&path)).await.is_err());
}
