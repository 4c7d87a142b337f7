//! The busybox test image pushed to a fresh docker-registry, with what a pull of it must
//! give (shared by the fault and concurrency tests).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use super::super::common::*;

/// The busybox test image pushed to a fresh registry as `repo:latest`.
pub struct Image {
    pub work: tempfile::TempDir,
    pub registry: Registry,
    /// `umoci unpack` of the same image.
    pub expected: BTreeMap<String, String>,
    /// Config digest and size.
    pub config: (String, u64),
    /// Layer digests and sizes, base first.
    pub layers: Vec<(String, u64)>,
}

pub fn image(repo: &str) -> Image {
    let work = tempfile::tempdir().unwrap();
    let layout = build_busybox_image(work.path());
    let registry = Registry::start();
    registry.push(&layout, "busybox", &format!("{repo}:latest"), &[]);
    let expected = describe_tree(&umoci_unpack(
        &layout,
        "busybox",
        &work.path().join("bundle"),
    ));
    let index = read_json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read_json(
        &layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    );
    let desc = |d: &serde_json::Value| {
        (
            d["digest"].as_str().unwrap().to_owned(),
            d["size"].as_u64().unwrap(),
        )
    };
    let layers: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(desc)
        .collect();
    assert_eq!(layers.len(), 5);
    Image {
        work,
        registry,
        expected,
        config: desc(&manifest["config"]),
        layers,
    }
}
