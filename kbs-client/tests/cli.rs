//! The `kbs-client` binary against an in-process cocoon-kbs on 127.0.0.1:
//! trustee's command lines, set-resource then get-resource round trip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cocoon_kbs::{KbsConfig, KbsServer};
use kbs_client::JwsSigningKey;

const COCO_DEV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../attestation/kbs/config/policy-coco-dev.rego"
);

async fn run(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbs-client"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_resource_then_get_resource_with_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let admin = JwsSigningKey::generate("EdDSA").unwrap();
    let admin_pub = dir.path().join("admin.pub");
    let admin_priv = dir.path().join("admin.key");
    std::fs::write(&admin_pub, admin.verifying_key().to_pem().unwrap()).unwrap();
    std::fs::write(&admin_priv, admin.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let mut config = KbsConfig::for_loopback(dir.path().join("res"));
    config.admin_public_key_file = Some(admin_pub);
    config.allow_sample = true; // default resource policy: sample refused
    let server = KbsServer::start(config).await.unwrap();
    let url = server.url();
    let secret: Vec<u8> = (0u8..=255).cycle().take(700).collect();
    let secret_file = dir.path().join("secret.bin");
    std::fs::write(&secret_file, &secret).unwrap();
    let sf = secret_file.to_str().unwrap();
    let key = admin_priv.to_str().unwrap();

    // Admin call without any token: refused.
    let (ok, _, err) = run(&[
        "--url",
        &url,
        "config",
        "set-resource",
        "--path",
        "repo/key/one",
        "--resource-file",
        sf,
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("AdminAuthAccess"), "{err}");

    // Locally signed admin token (--admin-key-file).
    let (ok, out, err) = run(&[
        "--url",
        &url,
        "config",
        "--admin-key-file",
        key,
        "set-resource",
        "--path",
        "repo/key/one",
        "--resource-file",
        sf,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Set resource success"), "{out}");

    // Default policy: sample evidence gets no resource.
    let (ok, _, err) = run(&["--url", &url, "get-resource", "--path", "repo/key/one"]).await;
    assert!(!ok);
    assert!(err.contains("PolicyDeny"), "{err}");
    assert!(err.contains("sample attester"), "fallback announced: {err}");

    // Token file (--admin-token-file), coco-dev policy.
    let token_file = dir.path().join("admin-token");
    std::fs::write(
        &token_file,
        kbs_client::jws::admin_token(&admin, "admin", "t", 60).unwrap(),
    )
    .unwrap();
    let (ok, out, err) = run(&[
        "--url",
        &url,
        "config",
        "--admin-token-file",
        token_file.to_str().unwrap(),
        "set-resource-policy",
        "--policy-file",
        COCO_DEV,
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Set resource policy success"), "{out}");

    let (ok, out, err) = run(&["--url", &url, "get-resource", "--path", "repo/key/one"]).await;
    assert!(ok, "{err}");
    assert_eq!(STANDARD.decode(out.trim()).unwrap(), secret);

    // attest prints a token the server's key verifies.
    let (ok, out, err) = run(&["--url", &url, "attest"]).await;
    assert!(ok, "{err}");
    let claims = server
        .state
        .token_key
        .verifying_key()
        .verify_jwt(out.trim(), kbs_client::jws::now_unix())
        .unwrap();
    assert!(claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"].is_object());

    // A missing resource: non-zero exit naming the error type.
    let (ok, _, err) = run(&["--url", &url, "get-resource", "--path", "repo/key/none"]).await;
    assert!(!ok);
    assert!(err.contains("ResourceNotFound"), "{err}");
    // A bad path never reaches the server.
    let (ok, _, err) = run(&["--url", &url, "get-resource", "--path", "../etc/passwd"]).await;
    assert!(!ok);
    assert!(err.contains("invalid resource URI"), "{err}");
    server.stop().await;
}
