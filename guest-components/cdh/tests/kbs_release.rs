//! The data hub against an in-process `cocoon-kbs` on 127.0.0.1 with sample evidence: a layer
//! key is released under the coco-dev resource policy and unwraps a real attestation-agent
//! key-provider packet; the default policy refuses it; TEE classes never fall back to sample.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use attestation::Tee;
use attestation::attester::DetectPaths;
use cocoon_kbs::{KbsConfig, KbsServer};
use confidential_data_hub::{CdhConfig, CdhError, ConfidentialDataHub, TeeClass};
use guest_image::ocicrypt::keyprovider::wrap_packet;
use guest_image::ocicrypt::{
    ANNOTATION_KEYS_ATTESTATION_AGENT, ANNOTATION_PUBOPTS, DecryptionKeys, OcicryptError, layer_key,
};
use kbs_client::{KbsClientError, KbsErrorType};

const COCO_DEV_POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../attestation/kbs/config/policy-coco-dev.rego"
);
const KID: &str = "kbs:///default/key/image-kek";

/// Detection paths under an empty directory: no TEE device, whatever the host has.
fn no_tee(dir: &Path) -> DetectPaths {
    DetectPaths {
        tsm_report_root: dir.join("tsm"),
        tdx_guest_dev: dir.join("tdx-guest"),
        sev_guest_dev: dir.join("sev-guest"),
        sev_guest_platform: dir.join("sev-guest-platform"),
        tdx_guest_sysfs: dir.join("tdx_guest"),
    }
}

async fn start_kbs(dir: &Path, coco_dev_policy: bool, kek: &[u8]) -> KbsServer {
    let resources = dir.join("resources");
    std::fs::create_dir_all(resources.join("default/key")).unwrap();
    std::fs::write(resources.join("default/key/image-kek"), kek).unwrap();
    let mut config = KbsConfig::for_loopback(resources);
    // Attestation accepts sample evidence; release depends on the resource policy.
    config.allow_sample = true;
    if coco_dev_policy {
        config.resource_policy_file = Some(COCO_DEV_POLICY.into());
    }
    KbsServer::start(config).await.unwrap()
}

fn hub(url: &str, class: TeeClass, dir: &Path) -> Result<ConfidentialDataHub, CdhError> {
    let mut config = CdhConfig::new(url, class);
    config.detect_paths = no_tee(dir);
    ConfidentialDataHub::new(&config)
}

/// Annotations of one layer whose private options are wrapped under `KID` with `kek`.
fn keyprovider_annotations(kek: &[u8; 32]) -> BTreeMap<String, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let privopts = format!(
        r#"{{"symkey":"{}","digest":"sha256:00","cipheroptions":{{"nonce":"{}"}}}}"#,
        b64.encode([0x11u8; 32]),
        b64.encode([0x22u8; 16])
    );
    let pubopts = format!(
        r#"{{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"{}","cipheroptions":{{}}}}"#,
        b64.encode([0x33u8; 32])
    );
    let packet = wrap_packet(KID, kek, &[7u8; 12], privopts.as_bytes()).unwrap();
    BTreeMap::from([
        (ANNOTATION_KEYS_ATTESTATION_AGENT.to_owned(), packet),
        (ANNOTATION_PUBOPTS.to_owned(), b64.encode(pubopts)),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coco_dev_policy_releases_the_layer_key_to_sample_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let kek = [0x5au8; 32];
    let server = start_kbs(dir.path(), true, &kek).await;
    let hub = hub(&server.url(), TeeClass::CocoDev, dir.path()).unwrap();
    assert_eq!(hub.tee(), Tee::Sample);

    let key = hub.get_resource(KID).await.unwrap();
    assert_eq!(&key[..], &kek[..]);

    // Through guest-image's KeyResolver seam: the packet unwraps with the released key.
    let keys = DecryptionKeys {
        private_keys: Vec::new(),
        resolver: Some(Arc::new(hub)),
    };
    let layer = layer_key(&keyprovider_annotations(&kek), &keys)
        .await
        .unwrap();
    assert_eq!(layer.plaintext_digest(), Some("sha256:00"));

    // A packet wrapped with another KEK does not unwrap with the released key.
    let err = layer_key(&keyprovider_annotations(&[1u8; 32]), &keys)
        .await
        .unwrap_err();
    assert!(matches!(err, OcicryptError::NoMatchingKey(_)), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_refuses_sample_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let kek = [0x5au8; 32];
    let server = start_kbs(dir.path(), false, &kek).await;
    let hub = hub(&server.url(), TeeClass::CocoDev, dir.path()).unwrap();
    let err = hub.get_resource(KID).await.unwrap_err();
    match &err {
        CdhError::Kbs(e @ KbsClientError::Kbs { .. }) => {
            assert_eq!(e.kbs_error_type(), Some(&KbsErrorType::PolicyDeny), "{err}")
        }
        other => panic!("expected a KBS policy refusal, got {other}"),
    }
    // Through the resolver seam the refusal names the key and the reason.
    let keys = DecryptionKeys {
        private_keys: Vec::new(),
        resolver: Some(Arc::new(hub)),
    };
    let err = layer_key(&keyprovider_annotations(&kek), &keys)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OcicryptError::KeyResolver(..)), "{text}");
    assert!(text.contains(KID) && text.contains("PolicyDeny"), "{text}");
    server.stop().await;
}

#[test]
fn tee_classes_without_their_device_are_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    for class in [TeeClass::Tdx, TeeClass::Snp] {
        let err = hub("http://127.0.0.1:9", class, dir.path()).unwrap_err();
        assert!(
            matches!(err, CdhError::NoTeeDevice { class: c } if c == class),
            "{err}"
        );
        assert!(err.to_string().contains("no sample fallback"), "{err}");
    }
    // With an SNP device present, a TDX class refuses it too.
    std::fs::write(dir.path().join("sev-guest"), b"").unwrap();
    let err = hub("http://127.0.0.1:9", TeeClass::Tdx, dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            CdhError::TeeMismatch {
                found: Tee::Snp,
                ..
            }
        ),
        "{err}"
    );
}

/// A resource policy releasing only to a token whose init-data digest is `hex` and whose
/// init-data claims carry a `cdh.toml`.
fn init_data_policy(hex: &str) -> String {
    format!(
        "package policy\n\ndefault allow := false\n\nallow if {{\n\tev := input.submods.cpu0[\"ear.veraison.annotated-evidence\"]\n\tev.init_data == \"{hex}\"\n\tev.init_data_claims[\"cdh.toml\"]\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initdata_plaintext_reaches_the_kbs_and_its_token_carries_the_digest() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let toml = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://127.0.0.1:1\"\n'''\n";
    let digest = hex::encode(sha2::Sha384::digest(toml.as_bytes()));
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(resources.join("default/key")).unwrap();
    std::fs::write(resources.join("default/key/image-kek"), [7u8; 32]).unwrap();
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, init_data_policy(&digest)).unwrap();
    let mut config = KbsConfig::for_loopback(resources);
    config.allow_sample = true;
    config.resource_policy_file = Some(policy);
    let server = KbsServer::start(config).await.unwrap();

    let with = |init_data: Option<&str>| {
        let mut config = CdhConfig::new(server.url(), TeeClass::CocoDev);
        config.detect_paths = no_tee(dir.path());
        config.init_data = init_data.map(str::to_owned);
        ConfidentialDataHub::new(&config).unwrap()
    };
    // The exact bytes: released.
    let key = with(Some(toml)).get_resource(KID).await.unwrap();
    assert_eq!(&key[..], &[7u8; 32]);
    // One byte more (another digest), or no initdata at all: refused by the same policy.
    for other in [Some(format!("{toml}\n")), None] {
        let err = with(other.as_deref()).get_resource(KID).await.unwrap_err();
        assert!(err.to_string().contains("PolicyDeny"), "{other:?}: {err}");
    }
    // Malformed initdata is refused at attestation, before any policy.
    let err = with(Some("version = \"0.1.0\"\nalgorithm = \"md5\"\n"))
        .get_resource(KID)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("init-data algorithm"), "{err}");
    server.stop().await;
}
