//! End-to-end pulls from Debian's docker-registry on 127.0.0.1 of images built by umoci and
//! pushed (and encrypted) by skopeo, compared with `umoci unpack` of the same image.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use common::*;
use guest_image::ocicrypt::OcicryptError;
use guest_image::ocicrypt::cipher::encrypt_stream;
use guest_image::ocicrypt::keyprovider::wrap_packet;
use guest_image::{ImageError, InMemoryKeyResolver, PrivateKey, PullOptions, pull_image};

fn opts(registry: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.host.clone()],
        ..PullOptions::default()
    }
}

/// Nothing but `allowed` names in `dir` (no staging or plaintext left behind).
fn assert_only(dir: &Path, allowed: &[&str]) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "leftovers in {}",
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_matches_umoci_unpack_and_config() {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start();
    let repo = registry.push(&layout, "busybox", "test/busybox:latest", &[]);

    let dest = work.path().join("out/rootfs");
    let cache = work.path().join("cache");
    let options = PullOptions {
        cache_dir: Some(cache.clone()),
        ..opts(&registry)
    };
    let pulled = pull_image(&format!("{repo}:latest"), &dest, &options)
        .await
        .unwrap();

    let reference = umoci_unpack(&layout, "busybox", &work.path().join("bundle"));
    let ours = describe_tree(&dest);
    let theirs = describe_tree(&reference);
    assert_eq!(ours, theirs);
    // The scenario really contains what it claims to test.
    assert!(ours["bin/sh"].starts_with("link -> busybox"));
    assert!(ours["bin/busybox"].contains("hardlinks=bin/busybox,bin/busybox-hard"));
    assert!(ours["bin/suid-tool"].starts_with("file 4755 0:0"));
    assert!(ours["etc/app.conf"].starts_with("file 640 1000:1000"));
    assert!(!ours.contains_key("etc/removed"));
    assert!(!ours.contains_key("opt/dir/old") && ours.contains_key("opt/dir/fresh"));

    assert_eq!(pulled.summary.layers, 5);
    assert_eq!(pulled.config.cmd, vec!["/bin/sh"]);
    assert_eq!(pulled.config.env, vec!["PATH=/bin"]);
    assert_eq!(pulled.config.working_dir.as_deref(), Some("/opt"));
    assert_eq!(pulled.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(pulled.config.architecture, "amd64");
    // The manifest digest is what the registry serves for the tag.
    let by_digest = work.path().join("out/by-digest");
    let again = pull_image(
        &format!("{repo}@{}", pulled.manifest_digest),
        &by_digest,
        &options,
    )
    .await
    .unwrap();
    assert_eq!(again.manifest_digest, pulled.manifest_digest);
    assert_eq!(describe_tree(&by_digest), theirs);
    assert_only(&work.path().join("out"), &["by-digest", "rootfs"]);
    // A non-empty destination is refused.
    let err = pull_image(&format!("{repo}:latest"), &dest, &options)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Destination { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_share_the_cache() {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start();
    let repo = registry.push(&layout, "busybox", "test/shared:latest", &[]);
    let cache = work.path().join("cache");
    let options = PullOptions {
        cache_dir: Some(cache.clone()),
        max_concurrent_downloads: 2,
        ..opts(&registry)
    };
    let image = format!("{repo}:latest");
    let (dest_a, dest_b) = (work.path().join("a"), work.path().join("b"));
    let (a, b) = tokio::join!(
        pull_image(&image, &dest_a, &options),
        pull_image(&image, &dest_b, &options)
    );
    assert_eq!(a.unwrap().manifest_digest, b.unwrap().manifest_digest);
    assert_eq!(
        describe_tree(&work.path().join("a")),
        describe_tree(&work.path().join("b"))
    );
    let blobs: Vec<_> = fs::read_dir(cache.join("blobs/sha256")).unwrap().collect();
    assert_eq!(
        blobs.len(),
        5,
        "one cached file per layer, no partial files"
    );
    // The registry's access log proves the dedup: each layer blob was downloaded once for
    // both pulls. The config (read into memory, not cached) was fetched by each pull, which
    // shows the log counts every GET.
    let index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read_json(
        &layout
            .join("blobs/sha256")
            .join(manifest_digest.strip_prefix("sha256:").unwrap()),
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5);
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            registry.blob_gets("test/shared", digest),
            1,
            "layer {digest} downloaded more than once (or not at all)"
        );
    }
    let config = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(registry.blob_gets("test/shared", config), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_blob_and_manifest_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start();
    let repo = registry.push(&layout, "busybox", "test/tamper:latest", &[]);
    let out = work.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let good = pull_image(
        &format!("{repo}:latest"),
        &out.join("good"),
        &opts(&registry),
    )
    .await
    .unwrap();

    // Manifest: the registry serves modified bytes for the pinned digest.
    let manifest_blob = registry.blob_data(&good.manifest_digest);
    let original = fs::read(&manifest_blob).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b" ");
    fs::write(&manifest_blob, &edited).unwrap();
    let err = pull_image(
        &format!("{repo}@{}", good.manifest_digest),
        &out.join("m"),
        &opts(&registry),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    fs::write(&manifest_blob, &original).unwrap();

    // Blob: flip one byte of the /bin layer.
    let manifest: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = registry.blob_data(&layer);
    let mut data = fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    fs::write(&blob, &data).unwrap();
    let err = pull_image(&format!("{repo}:latest"), &out.join("b"), &opts(&registry))
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, .. } => assert_eq!(expected, &layer),
        other => panic!("unexpected {other}"),
    }
    assert_only(&out, &["good"]);
}

/// Encrypt `layout:busybox` with skopeo into a new layout.
fn skopeo_encrypt(layout: &Path, out: &Path, keys: &[&Path]) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["copy", "--quiet"]);
    for k in keys {
        cmd.arg("--encryption-key")
            .arg(format!("jwe:{}", k.display()));
    }
    cmd.arg(format!("oci:{}:busybox", layout.display()))
        .arg(format!("oci:{}:busybox", out.display()));
    run(&mut cmd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_jwe_images_decrypt_with_rsa_and_ec_keys() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let expected = describe_tree(&umoci_unpack(&layout, "busybox", &w.join("bundle")));
    let registry = Registry::start();
    let (rsa, rsa_pub) = openssl_keypair(w, "rsa", "rsa");
    let (ec, ec_pub) = openssl_keypair(w, "ec", "p256-sec1");
    let (p384, p384_pub) = openssl_keypair(w, "p384", "P-384");
    let (p521, p521_pub) = openssl_keypair(w, "p521", "P-521");
    let (other, _) = openssl_keypair(w, "other", "rsa");

    let cases: [(&str, Vec<&Path>, &Path); 4] = [
        ("rsa", vec![&rsa_pub], &rsa),
        ("ec", vec![&ec_pub], &ec),
        // Two recipients: general JSON serialisation; the second recipient's key is used.
        ("multi", vec![&p384_pub, &rsa_pub], &rsa),
        ("p521", vec![&p521_pub], &p521),
    ];
    for (name, pubs, private) in cases {
        let enc = w.join(format!("enc-{name}"));
        skopeo_encrypt(&layout, &enc, &pubs);
        let repo = registry.push(&enc, "busybox", &format!("enc/{name}:latest"), &[]);
        let media = read_json(&enc.join("index.json"));
        let mdigest = media["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let manifest = read_json(
            &enc.join("blobs/sha256")
                .join(mdigest.strip_prefix("sha256:").unwrap()),
        );
        assert!(
            manifest["layers"][0]["mediaType"]
                .as_str()
                .unwrap()
                .ends_with("+encrypted")
        );

        let dest = w.join(format!("out-{name}"));
        let options = PullOptions {
            decryption_keys: vec![PrivateKey::from_pem_file(private).unwrap()],
            ..opts(&registry)
        };
        pull_image(&format!("{repo}:latest"), &dest, &options)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(describe_tree(&dest), expected, "{name}");
    }
    // The P-384 recipient of the two-recipient image works too.
    let options = PullOptions {
        decryption_keys: vec![PrivateKey::from_pem_file(&p384).unwrap()],
        ..opts(&registry)
    };
    pull_image(
        &format!("{}/enc/multi:latest", registry.host),
        &w.join("out-p384"),
        &options,
    )
    .await
    .unwrap();

    // Wrong key, and no key at all: clean errors, nothing written.
    let out = w.join("fail");
    fs::create_dir_all(&out).unwrap();
    let wrong = PullOptions {
        decryption_keys: vec![PrivateKey::from_pem_file(&other).unwrap()],
        ..opts(&registry)
    };
    let err = pull_image(
        &format!("{}/enc/rsa:latest", registry.host),
        &out.join("x"),
        &wrong,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Decrypt {
                source: OcicryptError::NoMatchingKey(_),
                ..
            }
        ),
        "{err}"
    );
    let err = pull_image(
        &format!("{}/enc/rsa:latest", registry.host),
        &out.join("x"),
        &opts(&registry),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Decrypt {
                source: OcicryptError::NoKeyConfigured { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("jwe"), "{err}");
    assert_only(&out, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_ciphertext_byte_fails_hmac_and_leaves_no_plaintext() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let (rsa, rsa_pub) = openssl_keypair(w, "rsa", "rsa");
    let enc = w.join("enc");
    skopeo_encrypt(&layout, &enc, &[&rsa_pub]);
    // Flip one byte in the first (largest, /bin) layer and fix up its digest so that only
    // the HMAC can notice.
    edit_manifest(&enc, |layout, manifest| {
        let digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
        let path = layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        let mut data = fs::read(path).unwrap();
        data[1000] ^= 0x80;
        manifest["layers"][0]["digest"] = write_blob(layout, &data).into();
    });
    let registry = Registry::start();
    let repo = registry.push(&enc, "busybox", "enc/tampered:latest", &[]);
    let out = w.join("out");
    let cache = w.join("out/cache");
    fs::create_dir_all(&cache).unwrap();
    let options = PullOptions {
        decryption_keys: vec![PrivateKey::from_pem_file(&rsa).unwrap()],
        cache_dir: Some(cache.clone()),
        max_concurrent_downloads: 1,
        ..opts(&registry)
    };
    let err = pull_image(&format!("{repo}:latest"), &out.join("rootfs"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Decrypt {
                index: 0,
                source: OcicryptError::HmacMismatch,
                ..
            }
        ),
        "{err}"
    );
    assert_only(&out, &["cache"]);
    // The cache holds only ciphertext blobs exactly as the registry serves them.
    for entry in fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let data = fs::read(&path).unwrap();
        assert_eq!(sha256_hex(&data), name, "cache file is not a registry blob");
        assert_eq!(
            data,
            fs::read(registry.blob_data(&format!("sha256:{name}"))).unwrap()
        );
        assert!(
            !data.windows(8).any(|w| w == b"BusyBox "),
            "plaintext busybox in cache"
        );
    }
}

/// Re-encrypt every layer of `layout` with our own ocicrypt encoder and wrap the options as
/// CoCo attestation-agent key provider packets under `kid`.
fn encrypt_with_keyprovider(layout: &Path, kid: &str, kek: &[u8; 32]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    edit_manifest(layout, |layout, manifest| {
        for (i, layer) in manifest["layers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let digest = layer["digest"].as_str().unwrap().to_owned();
            let plain = fs::read(
                layout
                    .join("blobs/sha256")
                    .join(digest.strip_prefix("sha256:").unwrap()),
            )
            .unwrap();
            let symkey = [i as u8 + 1; 32];
            let nonce = [0x40 + i as u8; 16];
            let mut ct = Vec::new();
            let hmac = encrypt_stream(&symkey, &nonce, &plain[..], &mut ct).unwrap();
            let privopts = serde_json::json!({
                "symkey": b64.encode(symkey), "digest": digest,
                "cipheroptions": {"nonce": b64.encode(nonce)}
            });
            let pubopts = serde_json::json!({"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64.encode(hmac), "cipheroptions": {}});
            let packet =
                wrap_packet(kid, kek, &[i as u8; 12], privopts.to_string().as_bytes()).unwrap();
            let media = layer["mediaType"].as_str().unwrap().to_owned();
            layer["mediaType"] = format!("{media}+encrypted").into();
            layer["digest"] = write_blob(layout, &ct).into();
            layer["annotations"] = serde_json::json!({
                "org.opencontainers.image.enc.keys.provider.attestation-agent": packet,
                "org.opencontainers.image.enc.pubopts": b64.encode(pubopts.to_string()),
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_agent_keyprovider_layers_decrypt_through_resolver() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let expected = describe_tree(&umoci_unpack(&layout, "busybox", &w.join("bundle")));
    let enc = w.join("enc");
    copy_layout(&layout, &enc);
    let kek = [0x5au8; 32];
    encrypt_with_keyprovider(&enc, "kbs:///default/key/image-kek", &kek);
    let registry = Registry::start();
    let repo = registry.push(&enc, "busybox", "enc/aa:latest", &[]);

    let mut resolver = InMemoryKeyResolver::new();
    resolver
        .insert("kbs:///default/key/image-kek", kek.to_vec())
        .unwrap();
    let options = PullOptions {
        key_resolver: Some(Arc::new(resolver)),
        ..opts(&registry)
    };
    pull_image(&format!("{repo}:latest"), &w.join("rootfs"), &options)
        .await
        .unwrap();
    assert_eq!(describe_tree(&w.join("rootfs")), expected);

    let mut wrong = InMemoryKeyResolver::new();
    wrong
        .insert("kbs:///default/key/image-kek", vec![1u8; 32])
        .unwrap();
    let options = PullOptions {
        key_resolver: Some(Arc::new(wrong)),
        ..opts(&registry)
    };
    let err = pull_image(&format!("{repo}:latest"), &w.join("bad"), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Decrypt {
                source: OcicryptError::NoMatchingKey(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(!w.join("bad").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_v2s2_manifest_and_oci_index_with_platform_selection() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let expected = describe_tree(&umoci_unpack(&layout, "busybox", &w.join("bundle")));
    let registry = Registry::start();

    // Docker v2 schema 2 manifest and layer media types.
    let repo = registry.push(
        &layout,
        "busybox",
        "docker/v2s2:latest",
        &["--format", "v2s2"],
    );
    let dest = w.join("v2s2");
    let pulled = pull_image(&format!("{repo}:latest"), &dest, &opts(&registry))
        .await
        .unwrap();
    let served = fs::read(registry.blob_data(&pulled.manifest_digest)).unwrap();
    assert!(
        String::from_utf8_lossy(&served)
            .contains("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert_eq!(describe_tree(&dest), expected);

    // An OCI index with an arm64 entry (a different manifest) and the amd64 one.
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let amd64 = index["manifests"][0].clone();
    let amd64_digest = amd64["digest"].as_str().unwrap().to_owned();
    let mut other = read_json(
        &layout
            .join("blobs/sha256")
            .join(amd64_digest.strip_prefix("sha256:").unwrap()),
    );
    other["annotations"] = serde_json::json!({"test": "arm64 stand-in"});
    let other_bytes = serde_json::to_vec(&other).unwrap();
    let other_digest = write_blob(&layout, &other_bytes);
    let entry = |digest: &str, size: u64, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            entry(&other_digest, other_bytes.len() as u64, "arm64"),
            entry(&amd64_digest, amd64["size"].as_u64().unwrap(), "amd64"),
        ]
    });
    let index_bytes = serde_json::to_vec(&image_index).unwrap();
    let index_digest = write_blob(&layout, &index_bytes);
    index["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest, "size": index_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}
    }]);
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let repo = registry.push(&layout, "multi", "oci/multi:latest", &["--all"]);
    let dest = w.join("multi");
    let pulled = pull_image(&format!("{repo}:latest"), &dest, &opts(&registry))
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, amd64_digest);
    assert_eq!(pulled.index_digest.as_deref(), Some(index_digest.as_str()));
    assert_eq!(describe_tree(&dest), expected);
    let s390x = PullOptions {
        platform: guest_image::Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..opts(&registry)
    };
    let err = pull_image(&format!("{repo}:latest"), &w.join("none"), &s390x)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NoMatchingPlatform(_)), "{err}");
}

/// Media types and first bytes of the layers of the manifest `digest` as the registry
/// stores them.
fn served_layers(registry: &Registry, digest: &str) -> Vec<(String, Vec<u8>)> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(registry.blob_data(digest)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let data = fs::read(registry.blob_data(l["digest"].as_str().unwrap())).unwrap();
            (
                l["mediaType"].as_str().unwrap().to_owned(),
                data[..data.len().min(512)].to_vec(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_uncompressed_layers_match_umoci_unpack_of_the_gzip_image() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    // umoci 0.4.7 refuses zstd layers ("blob is not correct mediatype"), so both variants are
    // compared with `umoci unpack` of the gzip image they are made from (same diff_ids).
    let expected = describe_tree(&umoci_unpack(&layout, "busybox", &w.join("bundle")));
    let registry = Registry::start();

    // zstd: skopeo recompresses every layer on the way to the registry.
    let repo = registry.push(
        &layout,
        "busybox",
        "zstd/busybox:latest",
        &["--dest-compress-format", "zstd"],
    );
    let dest = w.join("zstd");
    let pulled = pull_image(&format!("{repo}:latest"), &dest, &opts(&registry))
        .await
        .unwrap();
    let layers = served_layers(&registry, &pulled.manifest_digest);
    assert_eq!(layers.len(), 5);
    for (media_type, start) in &layers {
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
        assert_eq!(start[..4], [0x28, 0xb5, 0x2f, 0xfd], "not a zstd frame");
    }
    assert_eq!(pulled.summary.layers, 5);
    assert_eq!(describe_tree(&dest), expected);

    // Uncompressed: the gzip layers decompressed into plain tar blobs (whose digests are the
    // diff_ids), pushed byte for byte.
    let plain = w.join("plain-oci");
    copy_layout(&layout, &plain);
    edit_manifest(&plain, |layout, manifest| {
        for layer in manifest["layers"].as_array_mut().unwrap() {
            let gz = fs::read(
                layout.join("blobs/sha256").join(
                    layer["digest"]
                        .as_str()
                        .unwrap()
                        .strip_prefix("sha256:")
                        .unwrap(),
                ),
            )
            .unwrap();
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut tar)
                .unwrap();
            layer["digest"] = write_blob(layout, &tar).into();
            layer["size"] = tar.len().into();
            layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
        }
    });
    let repo = registry.push_raw(&plain, "plain/busybox", "latest");
    let dest = w.join("plain");
    let pulled = pull_image(&format!("{repo}:latest"), &dest, &opts(&registry))
        .await
        .unwrap();
    let layers = served_layers(&registry, &pulled.manifest_digest);
    assert_eq!(layers.len(), 5);
    for (media_type, start) in &layers {
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar");
        assert_eq!(&start[257..262], b"ustar", "not a tar archive");
    }
    assert_eq!(describe_tree(&dest), expected);
}
