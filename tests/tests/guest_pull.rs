//! In-guest image pull end to end, in one TCG guest: Debian's `docker-registry` and an
//! in-process `cocoon-kbs` on host loopback, reached from the guest only through QEMU's
//! restricted user network (`guestfwd` 10.0.2.100:5000 -> registry, 10.0.2.101:8080 -> KBS).
//! The agent pulls, verifies, decrypts (layer KEK released by the KBS after sample
//! attestation, coco-dev) and unpacks the image inside the guest, and runs it.
//!
//! Scenarios: a plain image runs; an encrypted image under the KBS's default resource policy
//! (sample evidence refused) fails CreateContainer with the KBS's reason and leaves no
//! plaintext layer or unpacked tree in the guest's /run and /tmp (searched for a marker only
//! the encrypted image holds); after switching the KBS to the coco-dev policy the same image
//! is decrypted (the same search now finds the marker in its unpacked tree only) and runs.
//!
//! A second guest (`image_policy_from_the_kbs_gates_pulls_inside_the_guest`) boots with
//! `agent.image_policy=kbs:///default/policy/images`: the agent fetches that
//! containers-policy.json from the KBS (coco-dev resource policy) through the data hub for
//! every pull. Default `reject`; `<registry>/plain` accepts anything; `<registry>/signed`
//! needs a cosign signature by a test-generated P-256 key given inline (`keyData`). A plain
//! image and a cosign-signed image run; the signed image's content under an unscoped
//! repository or signed by another key, and an unsigned image in the signed repository, are
//! refused at CreateContainer with the policy's reason, before any of their blobs is fetched
//! and without leaving an unpacked tree; a KBS that refuses or lacks the policy resource
//! fails every pull, naming the policy's URI (no fallback to accepting).
//!
//! Needs the guest image (`COCOON_GUEST_DIR`), docker-registry, skopeo, umoci, busybox-static,
//! tar, openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../agent/agent/tests/common/mod.rs"]
mod common;
#[path = "../../guest-components/image/tests/common/mod.rs"]
mod image_common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use agent_protocol::AgentClient;
use agent_protocol::types::*;
use base64::Engine as _;
use cocoon_kbs::{KbsConfig, KbsServer};
use cocoon_tests::{coco_dev_config, guest_dir};
use guest_image::ocicrypt::cipher::encrypt_stream;
use guest_image::ocicrypt::keyprovider::wrap_packet;
use guest_image::policy::{COSIGN_PAYLOAD_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION};
use runtime_qemu::sandbox::{BootOptions, Sandbox};

const REGISTRY_IN_GUEST: &str = "10.0.2.100:5000";
const KBS_IN_GUEST: &str = "http://10.0.2.101:8080";
const KID: &str = "kbs:///default/key/busybox-kek";
const COCO_DEV_POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../attestation/kbs/config/policy-coco-dev.rego"
);

/// Text only the marked image holds (the encrypted image; in the policy test, the unsigned
/// one), in its last layer, an uncompressed tar, so a leftover plaintext layer or unpacked
/// tree contains it verbatim.
const MARKER: &str = "only-in-the-marked-image-5c1e";
/// A grep pattern matching [`MARKER`] but not itself (the inspecting container's own
/// arguments are in the guest too).
const MARKER_PATTERN: &str = "only-in-the-marked-image-5c1[e]";

/// Appends an uncompressed layer holding `/secret/marker` ([`MARKER`]) to `layout`'s image.
fn add_marker_layer(layout: &Path, work: &Path) {
    let src = work.join("marker-src");
    fs::create_dir_all(src.join("secret")).unwrap();
    fs::write(src.join("secret/marker"), MARKER).unwrap();
    let tar = work.join("marker.tar");
    image_common::run(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("secret"),
    );
    let layer = fs::read(&tar).unwrap();
    image_common::edit_manifest(layout, |layout, manifest| {
        let digest = image_common::write_blob(layout, &layer);
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest, "size": layer.len(),
            }));
        // An uncompressed layer's diff_id is its own digest.
        let config_hex =
            manifest["config"]["digest"].as_str().unwrap()["sha256:".len()..].to_owned();
        let mut config = image_common::read_json(&layout.join("blobs/sha256").join(config_hex));
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(digest.into());
        let bytes = serde_json::to_vec(&config).unwrap();
        manifest["config"]["digest"] = image_common::write_blob(layout, &bytes).into();
        manifest["config"]["size"] = bytes.len().into();
    });
}

/// Re-encrypt every layer of `layout` (ocicrypt AES-256-CTR-HMAC-SHA256) and wrap each
/// layer's options as a CoCo attestation-agent key-provider packet under `KID` with `kek`.
fn encrypt_with_keyprovider(layout: &Path, kek: &[u8; 32]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    image_common::edit_manifest(layout, |layout, manifest| {
        for (i, layer) in manifest["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let digest = layer["digest"].as_str().unwrap().to_owned();
            let hex = digest.strip_prefix("sha256:").unwrap();
            let plain = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
            let symkey = [0x21 + i as u8; 32];
            let nonce = [0x61 + i as u8; 16];
            let mut ct = Vec::new();
            let hmac = encrypt_stream(&symkey, &nonce, &plain[..], &mut ct).unwrap();
            let privopts = serde_json::json!({
                "symkey": b64.encode(symkey), "digest": digest,
                "cipheroptions": {"nonce": b64.encode(nonce)}
            });
            let pubopts = serde_json::json!({
                "cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64.encode(hmac), "cipheroptions": {}
            });
            let packet = wrap_packet(
                KID,
                kek,
                &[i as u8 + 1; 12],
                privopts.to_string().as_bytes(),
            )
            .unwrap();
            let media = layer["mediaType"].as_str().unwrap().to_owned();
            layer["mediaType"] = format!("{media}+encrypted").into();
            layer["digest"] = image_common::write_blob(layout, &ct).into();
            layer["size"] = ct.len().into();
            layer["annotations"] = serde_json::json!({
                "org.opencontainers.image.enc.keys.provider.attestation-agent": packet,
                "org.opencontainers.image.enc.pubopts": b64.encode(pubopts.to_string()),
            });
        }
    });
}

/// Runs `args` in a container of `image`, with `binds` (guest path, container path) bind
/// mounted read-only; returns (stdout, exit status).
async fn run_container(
    c: &AgentClient,
    cid: &str,
    image: &str,
    args: &[&str],
    binds: &[(&str, &str)],
) -> Result<(String, i32), agent_protocol::ClientError> {
    let mut req = common::create_req(cid, image, args);
    for (source, destination) in binds {
        // Plain (not recursive) binds: the guest's tmpfs contents without the mounts on it.
        // An `rbind` of /run would also carry this container's own rootfs submounts (its
        // /proc, /sys, /dev), and a recursive grep then blocks forever reading /proc/kmsg.
        req.oci.as_mut().unwrap().mounts.push(Mount {
            destination: (*destination).into(),
            source: (*source).into(),
            kind: "bind".into(),
            options: vec!["bind".into(), "ro".into()],
        });
    }
    c.create_container(req).await?;
    Ok(common::start_collect_remove(c, cid).await)
}

/// What the guest's /run and /tmp (both tmpfs: image staging, unpacked rootfs and blob cache
/// live there) hold: (every path, the files containing [`MARKER`]).
async fn inspect_guest(c: &AgentClient, cid: &str) -> (String, Vec<String>) {
    let script = format!(
        "find /guest-run /guest-tmp; echo ==grep==; \
         find /guest-run /guest-tmp -type f -exec grep -l '{MARKER_PATTERN}' {{}} +; true"
    );
    let (out, status) = run_container(
        c,
        cid,
        "cocoon-baked:busybox",
        &["/bin/sh", "-c", &script],
        &[("/run", "/guest-run"), ("/tmp", "/guest-tmp")],
    )
    .await
    .unwrap();
    assert_eq!(status, 0, "{out}");
    let (listing, hits) = out.split_once("==grep==\n").expect("inspect output");
    (
        listing.to_owned(),
        hits.lines().map(str::to_owned).collect(),
    )
}

async fn configure_network(c: &AgentClient) {
    c.update_interface(UpdateInterfaceRequest {
        interface: Some(Interface {
            name: "eth0".into(),
            mtu: 1500,
            ip_addresses: vec![IPAddress {
                family: IPFamily::V4,
                address: "10.0.2.15".into(),
                mask: "24".into(),
            }],
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    c.update_routes(UpdateRoutesRequest {
        routes: Some(Routes {
            routes: vec![Route {
                gateway: "10.0.2.2".into(),
                device: "eth0".into(),
                ..Default::default()
            }],
        }),
    })
    .await
    .unwrap();
}

/// Boots a coco-dev guest that pulls images itself: kernel parameters for guest pull
/// through the KBS (plus `extra_params`), the registry and the KBS reached through
/// restricted user networking (10.0.2.100:5000, 10.0.2.101:8080), guest network set up.
async fn boot_pull_guest(
    guest: &Path,
    state: &Path,
    id: &str,
    extra_params: &str,
    registry_port: u16,
    kbs_port: u16,
) -> (Sandbox, AgentClient) {
    let mut cfg = coco_dev_config(guest, state);
    cfg.hypervisor.qemu.kernel_params = format!(
        "agent.guest_pull=true agent.aa_kbc_params=cc_kbc::{KBS_IN_GUEST} \
         agent.tee_class=coco-dev agent.insecure_registries={REGISTRY_IN_GUEST} {extra_params}"
    );
    let forward = |addr: &str, guest_port, host_port| runtime_qemu::GuestForward {
        guest_addr: addr.parse().unwrap(),
        guest_port,
        host_port,
    };
    let opts = BootOptions {
        id: id.into(),
        network: Some(runtime_qemu::UserNetwork {
            forwards: vec![
                forward("10.0.2.100", 5000, registry_port),
                forward("10.0.2.101", 8080, kbs_port),
            ],
            relay_busybox: "/usr/bin/busybox".into(),
        }),
        ..Default::default()
    };
    let sb = Sandbox::boot(&cfg, &opts, runtime_qemu::host::kvm_usable())
        .await
        .unwrap();
    let c = sb.agent().with_timeout(Some(Duration::from_secs(180)));
    configure_network(&c).await;
    (sb, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_decrypt_and_run_inside_the_guest() {
    let Some(guest) = guest_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Registry with a plain and a KBS-key-encrypted busybox image.
    let registry = image_common::Registry::start();
    let layout = image_common::build_busybox_image(w);
    registry.push(&layout, "busybox", "plain/busybox:latest", &[]);
    let enc = w.join("enc");
    image_common::copy_layout(&layout, &enc);
    add_marker_layer(&enc, w);
    let kek = [0x3cu8; 32];
    encrypt_with_keyprovider(&enc, &kek);
    registry.push(&enc, "busybox", "enc/busybox:latest", &[]);
    let registry_port: u16 = registry.host.rsplit(':').next().unwrap().parse().unwrap();

    // KBS holding the KEK; accepts sample evidence, default resource policy (refuses it).
    let resources = w.join("kbs");
    fs::create_dir_all(resources.join("default/key")).unwrap();
    fs::write(resources.join("default/key/busybox-kek"), kek).unwrap();
    let mut kbs_config = KbsConfig::for_loopback(resources);
    kbs_config.allow_sample = true;
    let kbs = KbsServer::start(kbs_config).await.unwrap();

    let state = tempfile::tempdir().unwrap();
    let (sb, c) = boot_pull_guest(
        &guest,
        state.path(),
        "guest-pull",
        "",
        registry_port,
        kbs.addr.port(),
    )
    .await;
    // The registry answers through the guestfwd (checked from a baked-rootfs container).
    let (out, status) = run_container(
        &c,
        "probe",
        "cocoon-baked:busybox",
        &[
            "/bin/sh",
            "-c",
            "wget -q -O - http://10.0.2.100:5000/v2/; echo; echo probe-done",
        ],
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", sb.console()));
    assert!(
        out.contains("{}") && status == 0,
        "registry not reachable: {out}"
    );

    // 1. Plain image: pulled in the guest (the baked tree has no /etc/app.conf).
    let plain = format!("{REGISTRY_IN_GUEST}/plain/busybox:latest");
    let (out, status) = run_container(
        &c,
        "plain",
        &plain,
        &["/bin/sh", "-c", "cat /etc/app.conf; echo; ls /opt/dir"],
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", sb.console()));
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("owned by app"), "{out}");
    assert!(
        out.contains("fresh") && !out.contains("old"),
        "opaque whiteout: {out}"
    );

    // 2. Encrypted image, default KBS policy: sample evidence gets no key.
    let encrypted = format!("{REGISTRY_IN_GUEST}/enc/busybox:latest");
    let err = run_container(&c, "enc-refused", &encrypted, &["/bin/true"], &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(KID) && text.contains("PolicyDeny"),
        "CreateContainer must say the KBS refused the key: {text}"
    );
    // No plaintext layer (nor any unpacked tree) of the refused image is left in the guest.
    let (listing, hits) = inspect_guest(&c, "inspect").await;
    assert!(
        listing.contains("/guest-run/cocoon/image-cache/") && listing.contains("/guest-tmp"),
        "the inspection does not see the guest's /run and /tmp: {listing}"
    );
    assert!(
        !listing.contains(".partial"),
        "staging leftovers of the refused pull: {listing}"
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.contains("/enc-refused") && !l.ends_with("/enc-refused")),
        "leftovers of the refused pull: {listing}"
    );
    assert!(hits.is_empty(), "plaintext of the refused image: {hits:?}");

    // 3. coco-dev policy: the key is released and the encrypted image is pulled, decrypted
    // and unpacked at CreateContainer.
    let rego = fs::read_to_string(COCO_DEV_POLICY).unwrap();
    kbs.state
        .set_resource_policy(policy::Policy::from_rego("resource-policy", &rego).unwrap());
    let req = common::create_req(
        "enc-ok",
        &encrypted,
        &[
            "/bin/sh",
            "-c",
            "echo decrypted-in-guest; cat /secret/marker; echo; cat /etc/app.conf",
        ],
    );
    c.create_container(req)
        .await
        .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", sb.console()));
    // The inspection sees plaintext where it is (the unpacked tree of the created
    // container), so its empty result above means something.
    let (_, hits) = inspect_guest(&c, "inspect2").await;
    assert_eq!(
        hits,
        ["/guest-run/kata-containers/enc-ok/image-rootfs/secret/marker"],
        "the decrypted tree must be (only) where the agent put it"
    );
    let (out, status) = common::start_collect_remove(&c, "enc-ok").await;
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("decrypted-in-guest") && out.contains(MARKER) && out.contains("owned by app"),
        "{out}"
    );

    sb.shutdown().await.unwrap();
    kbs.stop().await;
}

/// The manifest digest of the only image in OCI `layout` (what [`image_common::Registry::push_raw`]
/// stores, byte for byte).
fn layout_digest(layout: &Path) -> String {
    image_common::read_json(&layout.join("index.json"))["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs `digest` for `identity` with the P-256 key `key` the way cosign does (a simple-signing
/// payload; its DER ECDSA-SHA256 signature, base64, in the payload layer's annotation) and
/// pushes the artifact as `repo:sha256-<hex>.sig`. Returns the payload blob's digest.
fn push_cosign_signature(
    registry: &image_common::Registry,
    repo: &str,
    digest: &str,
    identity: &str,
    key: &Path,
    work: &Path,
) -> String {
    let dir = tempfile::tempdir_in(work).unwrap();
    let layout = dir.path();
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string();
    let payload_path = layout.join("payload.json");
    fs::write(&payload_path, &payload).unwrap();
    let sig_path = layout.join("payload.sig");
    image_common::run(
        std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key)
            .arg("-out")
            .arg(&sig_path)
            .arg(&payload_path),
    );
    let sig = base64::engine::general_purpose::STANDARD.encode(fs::read(&sig_path).unwrap());
    let config = b"{}";
    let config_digest = image_common::write_blob(layout, config);
    let payload_digest = image_common::write_blob(layout, payload.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config.len(),
        },
        "layers": [{
            "mediaType": COSIGN_PAYLOAD_MEDIA_TYPE,
            "digest": payload_digest, "size": payload.len(),
            "annotations": {COSIGN_SIGNATURE_ANNOTATION: sig},
        }],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = image_common::write_blob(layout, &bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": bytes.len(),
        }],
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let tag = format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap());
    registry.push_raw(layout, repo, &tag);
    payload_digest
}

/// The config blob's digest of the only image in OCI `layout`.
fn layout_config_digest(layout: &Path) -> String {
    let digest = layout_digest(layout);
    let manifest = image_common::read_json(
        &layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    );
    manifest["config"]["digest"].as_str().unwrap().to_owned()
}

/// Asserts nothing of the refused container `cid` (no unpacked tree, no staging) is in the
/// guest listing of [`inspect_guest`] (its empty container directory may be).
fn assert_no_leftovers(listing: &str, cid: &str) {
    let inside = format!("/{cid}/");
    assert!(
        !listing.lines().any(|l| l.contains(&inside)),
        "leftovers of the refused pull of {cid}: {listing}"
    );
}

/// CreateContainer of `image` as `cid`, which must fail; returns the error text.
async fn refused(c: &AgentClient, cid: &str, image: &str) -> String {
    match c
        .create_container(common::create_req(cid, image, &["/bin/sh", "-c", "true"]))
        .await
    {
        Ok(_) => panic!("CreateContainer of {image} succeeded; it must be refused"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_policy_from_the_kbs_gates_pulls_inside_the_guest() {
    const POLICY_URI: &str = "kbs:///default/policy/images";
    let Some(guest) = guest_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Registry: the busybox image as plain/busybox, signed/busybox (with a cosign signature),
    // other/busybox (signed too: only the scope refuses it) and signed/forged (signed by
    // another key); a different (marked) image as signed/busybox:unsigned, with no
    // signature. Pushed byte for byte, so the manifest digests are the layouts' and the
    // marker layer stays uncompressed.
    let registry = image_common::Registry::start();
    let layout = image_common::build_busybox_image(w);
    let digest = layout_digest(&layout);
    let config_digest = layout_config_digest(&layout);
    let (key, pubkey) = image_common::openssl_keypair(w, "cosign", "P-256");
    let (wrong_key, _) = image_common::openssl_keypair(w, "wrong", "P-256");
    registry.push_raw(&layout, "plain/busybox", "latest");
    registry.push_raw(&layout, "signed/busybox", "latest");
    registry.push_raw(&layout, "other/busybox", "latest");
    registry.push_raw(&layout, "signed/forged", "latest");
    let signed = format!("{REGISTRY_IN_GUEST}/signed/busybox:latest");
    let other = format!("{REGISTRY_IN_GUEST}/other/busybox:latest");
    let payload_digest =
        push_cosign_signature(&registry, "signed/busybox", &digest, &signed, &key, w);
    push_cosign_signature(&registry, "other/busybox", &digest, &other, &key, w);
    let forged = format!("{REGISTRY_IN_GUEST}/signed/forged:latest");
    push_cosign_signature(&registry, "signed/forged", &digest, &forged, &wrong_key, w);
    let marked = w.join("marked");
    image_common::copy_layout(&layout, &marked);
    add_marker_layer(&marked, w);
    let unsigned_digest = layout_digest(&marked);
    let unsigned_config = layout_config_digest(&marked);
    assert_ne!(unsigned_digest, digest);
    registry.push_raw(&marked, "signed/busybox", "unsigned");
    let registry_port: u16 = registry.host.rsplit(':').next().unwrap().parse().unwrap();

    // The image policy, with the public key inline (the guest has no key file).
    let b64 = base64::engine::general_purpose::STANDARD;
    let policy_json = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            format!("{REGISTRY_IN_GUEST}/plain"): [{"type": "insecureAcceptAnything"}],
            format!("{REGISTRY_IN_GUEST}/signed"): [{
                "type": "sigstoreSigned", "keyData": b64.encode(fs::read(&pubkey).unwrap())
            }],
        }}
    });
    // KBS holding it, releasing resources to sample evidence (coco-dev) from the start.
    let resources = w.join("kbs");
    let policy_file = resources.join("default/policy/images");
    fs::create_dir_all(policy_file.parent().unwrap()).unwrap();
    fs::write(&policy_file, policy_json.to_string()).unwrap();
    let mut kbs_config = KbsConfig::for_loopback(resources);
    kbs_config.allow_sample = true;
    kbs_config.resource_policy_file = Some(COCO_DEV_POLICY.into());
    let kbs = KbsServer::start(kbs_config).await.unwrap();

    let state = tempfile::tempdir().unwrap();
    let extra = format!("agent.image_policy={POLICY_URI}");
    let (sb, c) = boot_pull_guest(
        &guest,
        state.path(),
        "guest-pull-policy",
        &extra,
        registry_port,
        kbs.addr.port(),
    )
    .await;

    // 1. plain/: insecureAcceptAnything.
    let plain = format!("{REGISTRY_IN_GUEST}/plain/busybox:latest");
    let (out, status) = run_container(
        &c,
        "plain",
        &plain,
        &["/bin/sh", "-c", "echo plain-accepted; cat /etc/app.conf"],
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", sb.console()));
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("plain-accepted") && out.contains("owned by app"),
        "{out}"
    );

    // 2. signed/ with a valid signature by the policy's key: the guest fetched the
    // signature payload and accepted it.
    let (out, status) = run_container(
        &c,
        "signed",
        &signed,
        &["/bin/sh", "-c", "echo signed-accepted; cat /etc/app.conf"],
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", sb.console()));
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("signed-accepted") && out.contains("owned by app"),
        "{out}"
    );
    assert_eq!(
        registry.blob_gets("signed/busybox", &payload_digest),
        1,
        "the guest must have fetched the signature payload once"
    );

    // 3. The same (signed) content under a repository no scope names: the default `reject`.
    let text = refused(&c, "other-refused", &other).await;
    assert!(
        text.contains(&format!(
            "image {other} refused by policy: policy requirement `reject`"
        )),
        "CreateContainer must name the policy's reject: {text}"
    );

    // 4. An unsigned image in signed/: sigstoreSigned finds no signature.
    let unsigned = format!("{REGISTRY_IN_GUEST}/signed/busybox:unsigned");
    let text = refused(&c, "unsigned-refused", &unsigned).await;
    let sig_tag = format!(
        "sha256-{}.sig",
        unsigned_digest.strip_prefix("sha256:").unwrap()
    );
    assert!(
        text.contains(&format!(
            "image {unsigned} refused by policy: no signature {sig_tag}"
        )),
        "CreateContainer must name the missing signature: {text}"
    );

    // 5. signed/ with a signature by another key: refused.
    let text = refused(&c, "forged-refused", &forged).await;
    assert!(
        text.contains(&format!(
            "image {forged} refused by policy: no valid signature"
        )) && text.contains("signature does not verify with the policy key"),
        "CreateContainer must say the signature does not verify: {text}"
    );

    // Refused before any blob of theirs was fetched (the config blobs of the accepted
    // pulls were), and nothing of them is in the guest.
    assert_eq!(registry.blob_gets("plain/busybox", &config_digest), 1);
    assert_eq!(registry.blob_gets("signed/busybox", &config_digest), 1);
    assert_eq!(registry.blob_gets("other/busybox", &config_digest), 0);
    assert_eq!(registry.blob_gets("signed/forged", &config_digest), 0);
    assert_eq!(registry.blob_gets("signed/busybox", &unsigned_config), 0);
    // (The inspecting container's `cocoon-baked:` image is not subject to the policy.)
    let (listing, hits) = inspect_guest(&c, "inspect").await;
    assert!(
        listing.contains("/guest-run/cocoon/image-cache/")
            && listing.contains("/guest-run/kata-containers/inspect"),
        "the inspection does not see the guest's /run: {listing}"
    );
    assert!(
        !listing.contains(".partial"),
        "staging leftovers of the refused pulls: {listing}"
    );
    assert_no_leftovers(&listing, "other-refused");
    assert_no_leftovers(&listing, "unsigned-refused");
    assert_no_leftovers(&listing, "forged-refused");
    assert!(hits.is_empty(), "the refused unsigned image: {hits:?}");

    // 6. The KBS refuses the policy resource (its default resource policy refuses sample
    // evidence): even the image the policy accepts is not pulled.
    kbs.state.set_resource_policy(
        policy::Policy::from_rego("resource-policy", cocoon_kbs::DEFAULT_RESOURCE_POLICY).unwrap(),
    );
    let text = refused(&c, "policy-denied", &plain).await;
    assert!(
        text.contains(&format!(
            "agent.image_policy={POLICY_URI}: cannot fetch it from the KBS"
        )) && text.contains("PolicyDeny")
            && text.contains("resource default/policy/images refused by policy"),
        "CreateContainer must name the policy URI and the KBS's refusal: {text}"
    );

    // 7. The KBS has no such resource: the same.
    let rego = fs::read_to_string(COCO_DEV_POLICY).unwrap();
    kbs.state
        .set_resource_policy(policy::Policy::from_rego("resource-policy", &rego).unwrap());
    fs::remove_file(&policy_file).unwrap();
    let text = refused(&c, "policy-missing", &plain).await;
    assert!(
        text.contains(&format!(
            "agent.image_policy={POLICY_URI}: cannot fetch it from the KBS"
        )) && text.contains("ResourceNotFound")
            && text.contains("resource default/policy/images not found"),
        "CreateContainer must name the policy URI and the missing resource: {text}"
    );
    let (listing, _) = inspect_guest(&c, "inspect2").await;
    assert_no_leftovers(&listing, "policy-denied");
    assert_no_leftovers(&listing, "policy-missing");

    sb.shutdown().await.unwrap();
    kbs.stop().await;
}
