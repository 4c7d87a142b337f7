//! Image security policy against a real registry: `reject`, `insecureAcceptAnything` and
//! `sigstoreSigned` with cosign-format signatures (simple-signing payload signed by
//! `openssl dgst -sha256 -sign` with a P-256 key, pushed as the `sha256-<digest>.sig` OCI
//! artifact the way cosign stores it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use common::*;
use guest_image::policy::{COSIGN_PAYLOAD_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION, Policy};
use guest_image::registry::RegistryClient;
use guest_image::{ImageError, Platform, PullOptions, pull_image};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;

async fn push_signature(
    host: &str,
    repo: &str,
    digest: &str,
    key: &Path,
    identity: &str,
    work: &Path,
) {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string();
    let payload_path = work.join("payload.json");
    fs::write(&payload_path, &payload).unwrap();
    let sig_path = work.join("payload.sig");
    run(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg("-out")
        .arg(&sig_path)
        .arg(&payload_path));
    let sig = base64::engine::general_purpose::STANDARD.encode(fs::read(&sig_path).unwrap());
    push_signature_artifact(host, repo, digest, payload.into_bytes(), sig).await;
}

/// Push `payload` with the signature annotation `sig` (base64) as the cosign artifact
/// `sha256-<hex>.sig` of `digest` in `repo`.
async fn push_signature_artifact(
    host: &str,
    repo: &str,
    digest: &str,
    payload: Vec<u8>,
    sig: String,
) {
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![host.to_owned()]),
        ..ClientConfig::default()
    });
    let tag = format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap());
    let reference: oci_client::Reference = format!("{host}/{repo}:{tag}").parse().unwrap();
    let annotations = BTreeMap::from([(COSIGN_SIGNATURE_ANNOTATION.to_owned(), sig)]);
    let layer = ImageLayer::new(
        payload,
        COSIGN_PAYLOAD_MEDIA_TYPE.to_owned(),
        Some(annotations),
    );
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".to_owned(),
        None,
    );
    client
        .push(&reference, &[layer], config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap();
}

fn write_policy(dir: &Path, host: &str, pubkey: &Path) -> Arc<Policy> {
    let json = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            format!("{host}/open"): [{"type": "insecureAcceptAnything"}],
            format!("{host}/signed"): [{"type": "sigstoreSigned", "keyPath": pubkey.to_str().unwrap()}],
        }}
    });
    let path = dir.join("policy.json");
    fs::write(&path, json.to_string()).unwrap();
    Arc::new(Policy::from_file(&path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reject_accept_and_cosign_signatures() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let registry = Registry::start();
    let host = registry.host.clone();
    registry.push(&layout, "busybox", "open:latest", &[]);
    registry.push(&layout, "busybox", "signed:latest", &[]);
    registry.push(&layout, "busybox", "other:latest", &[]);
    let (key, pubkey) = openssl_keypair(w, "cosign", "P-256");
    let (wrong_key, _) = openssl_keypair(w, "wrong", "P-256");
    let policy = write_policy(w, &host, &pubkey);
    let options = PullOptions {
        insecure_registries: vec![host.clone()],
        policy: Some(policy),
        ..PullOptions::default()
    };
    let out = w.join("out");
    fs::create_dir_all(&out).unwrap();

    pull_image(&format!("{host}/open:latest"), &out.join("open"), &options)
        .await
        .unwrap();
    let err = pull_image(
        &format!("{host}/other:latest"),
        &out.join("other"),
        &options,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("reject")),
        "{err}"
    );

    // No signature yet.
    let err = pull_image(&format!("{host}/signed:latest"), &out.join("s1"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("no signature")),
        "{err}"
    );

    let digest = run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{host}/signed:latest")))
    .trim()
    .to_owned();
    // Signed by the wrong key: refused.
    push_signature(
        &host,
        "signed",
        &digest,
        &wrong_key,
        &format!("{host}/signed:latest"),
        w,
    )
    .await;
    let err = pull_image(&format!("{host}/signed:latest"), &out.join("s2"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("does not verify")),
        "{err}"
    );

    // Signed by the right key but for another repository: refused by signedIdentity.
    push_signature(
        &host,
        "signed",
        &digest,
        &key,
        &format!("{host}/elsewhere:latest"),
        w,
    )
    .await;
    let err = pull_image(&format!("{host}/signed:latest"), &out.join("s3"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("identity")),
        "{err}"
    );

    // Correct signature: accepted.
    push_signature(
        &host,
        "signed",
        &digest,
        &key,
        &format!("{host}/signed:latest"),
        w,
    )
    .await;
    let pulled = pull_image(&format!("{host}/signed:latest"), &out.join("ok"), &options)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    let mut left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, vec!["ok", "open"]);
}

/// A signature made by cosign itself, published as test data by sigstore-rs (see
/// `tests/data/cosign/README.md`), verifies with our verifier through the registry path: the
/// artifact is fetched, the payload's sha256 checked, the ECDSA signature verified, the
/// digest and the identity compared. Any change to the payload bytes breaks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_cosign_signature_verifies() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign");
    let payload = fs::read(data.join("sigstore-rs-busybox.payload.json")).unwrap();
    let sig = fs::read_to_string(data.join("sigstore-rs-busybox.sig.b64"))
        .unwrap()
        .trim()
        .to_owned();
    let key = data.join("sigstore-rs-busybox.pub");
    let signed: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let digest = signed["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed_repo = signed["critical"]["identity"]["docker-reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(signed_repo, "registry-testing.svc.lan/busybox");

    let registry = Registry::start();
    let host = registry.host.clone();
    // Also installs the rustls crypto provider the pushing client needs.
    let client =
        RegistryClient::try_new(std::slice::from_ref(&host), None, Platform::default()).unwrap();
    push_signature_artifact(&host, "busybox", &digest, payload.clone(), sig.clone()).await;
    let policy = |identity: serde_json::Value| {
        let json = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {format!("{host}/busybox"): [{
                "type": "sigstoreSigned", "keyPath": key.to_str().unwrap(),
                "signedIdentity": identity
            }]}}
        });
        Policy::from_json(json.to_string().as_bytes()).unwrap()
    };
    let reference = RegistryClient::parse_reference(&format!("{host}/busybox:latest")).unwrap();
    let exact = policy(serde_json::json!({
        "type": "exactRepository", "dockerRepository": signed_repo
    }));
    exact.check(&client, &reference, &digest).await.unwrap();

    // The default identity rule wants the pulled repository (127.0.0.1:<port>/busybox).
    let err = policy(serde_json::json!({"type": "matchRepoDigestOrExact"}))
        .check(&client, &reference, &digest)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("identity")),
        "{err}"
    );

    // One byte of the payload changed (the digest it names): the signature no longer
    // verifies. Pushed for that digest so the artifact is found.
    let other = format!("sha256:{}", "0".repeat(64));
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace(&digest, &other)
        .into_bytes();
    push_signature_artifact(&host, "busybox", &other, tampered, sig).await;
    let err = exact.check(&client, &reference, &other).await.unwrap_err();
    assert!(
        matches!(&err, ImageError::PolicyDenied { reason, .. } if reason.contains("does not verify")),
        "{err}"
    );
}
