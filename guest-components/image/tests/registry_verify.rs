//! Pull refusals against the loopback docker-registry: a config whose `rootfs.diff_ids` do
//! not match the layers, and a plain-HTTP registry that was not declared insecure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use guest_image::{ImageError, PullOptions, pull_image};

fn insecure(registry: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.host.clone()],
        ..PullOptions::default()
    }
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Replace `rootfs.diff_ids[index]` of the only image in `layout` (new config blob, manifest
/// and index); returns (the original diff_id, the forged one, the layer's digest).
fn forge_diff_id(layout: &Path, index: usize) -> (String, String, String) {
    let mut out = None;
    edit_manifest(layout, |layout, manifest| {
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
        let mut config = read_json(
            &layout
                .join("blobs/sha256")
                .join(config_digest.strip_prefix("sha256:").unwrap()),
        );
        let original = config["rootfs"]["diff_ids"][index]
            .as_str()
            .unwrap()
            .to_owned();
        let forged = format!("sha256:{}", sha256_hex(b"not the layer's tar stream"));
        config["rootfs"]["diff_ids"][index] = forged.clone().into();
        let bytes = serde_json::to_vec(&config).unwrap();
        manifest["config"]["digest"] = write_blob(layout, &bytes).into();
        manifest["config"]["size"] = bytes.len().into();
        let layer = manifest["layers"][index]["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        out = Some((original, forged, layer));
    });
    out.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_config_diff_id_aborts_naming_layer_and_diff_id() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    // Layer 2 (/opt) of 5: layers 0 and 1 are already unpacked into the staging directory
    // when the mismatch is found, so the cleanup is really exercised.
    let (original, forged, layer) = forge_diff_id(&layout, 2);
    let registry = Registry::start();
    // Byte for byte through the registry API: nothing on the way may rewrite the config.
    let repo = registry.push_raw(&layout, "verify/diffid", "latest");
    let out = w.join("out");
    let cache = out.join("cache");
    fs::create_dir_all(&cache).unwrap();
    let options = PullOptions {
        cache_dir: Some(cache.clone()),
        max_concurrent_downloads: 1,
        ..insecure(&registry)
    };
    let err = pull_image(&format!("{repo}:latest"), &out.join("rootfs"), &options)
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            what,
            expected,
            actual,
        } => {
            assert_eq!(what, &format!("diff_id of layer 2 ({layer})"));
            assert_eq!(expected, &forged);
            assert_eq!(actual, &original);
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&layer) && text.contains(&forged) && text.contains("diff_id"),
        "{text}"
    );
    // No destination, no staging directory, no partial blob: the cache holds only complete
    // blobs exactly as the registry serves them.
    assert_eq!(names(&out), vec!["cache"]);
    for entry in fs::read_dir(cache.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            sha256_hex(&fs::read(&path).unwrap()),
            name,
            "partial or foreign file {name} in the cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_registry_not_listed_as_insecure_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = build_busybox_image(w);
    let registry = Registry::start();
    let repo = registry.push(&layout, "busybox", "verify/plain:latest", &[]);
    let out = w.join("out");
    fs::create_dir_all(&out).unwrap();
    // The loopback registry speaks plain HTTP; this time it is not listed as insecure, so
    // the client must insist on HTTPS and refuse, at once (a TLS failure is not retried).
    let started = Instant::now();
    let err = pull_image(
        &format!("{repo}:latest"),
        &out.join("rootfs"),
        &PullOptions::default(),
    )
    .await
    .unwrap_err();
    match &err {
        ImageError::TlsHandshake {
            registry: host,
            plain_http_suspected,
            ..
        } => {
            assert_eq!(host, &registry.host);
            assert!(plain_http_suspected, "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("https://{}/v2/", registry.host)),
        "{text}"
    );
    assert!(
        text.contains("plain-HTTP") && text.contains("insecure"),
        "no hint at insecure registries: {text}"
    );
    // The default retry policy would wait 3.75 s or more before giving up.
    assert!(started.elapsed() < Duration::from_secs(3), "retried: {err}");
    assert_eq!(names(&out), Vec::<String>::new());
}
