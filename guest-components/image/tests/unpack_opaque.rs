//! Opaque whiteouts (`.wh..wh..opq`) against the OCI image spec and `umoci unpack`.
//!
//! Spec ("Opaque Whiteout"): the marker hides *all* siblings from lower layers, recursively,
//! while entries of the same layer stay, wherever they appear in the tar stream relative to
//! the marker. Each scenario is unpacked by us and, from the very same layer bytes in a
//! hand-built OCI layout, by `umoci unpack`; both trees must equal the expected one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use guest_image::unpack::Compression;
use guest_image::{UnpackLimits, Unpacker};
use sha2::{Digest, Sha256};

/// A tar layer from `(name, contents)`: a name ending in `/` is a directory, else a file.
fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        h.set_cksum();
        b.append(&h, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Relative path -> `dir` or `file <contents>`, for every path under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let desc = if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!(
                    "file {}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}

fn expected(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(p, d)| ((*p).to_owned(), (*d).to_owned()))
        .collect()
}

fn ours(work: &Path, layers: &[Vec<u8>]) -> BTreeMap<String, String> {
    let root = work.join("ours");
    fs::create_dir_all(&root).unwrap();
    let mut u = Unpacker::new(&root, UnpackLimits::default()).unwrap();
    for l in layers {
        u.unpack_layer(&l[..], Compression::None).unwrap();
    }
    tree(&root)
}

fn put_blob(layout: &Path, data: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(data));
    fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// `umoci unpack` of an OCI layout holding `layers` (uncompressed) as tag `t`.
fn umoci(work: &Path, layers: &[Vec<u8>]) -> BTreeMap<String, String> {
    let layout = work.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let digest = put_blob(&layout, l);
        diff_ids.push(digest.clone());
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": l.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": put_blob(&layout, &config), "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put_blob(&layout, &manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "t"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let bundle: PathBuf = work.join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci must be installed");
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tree(&bundle.join("rootfs"))
}

/// Unpack `layers` with both implementations and check both against `want`.
fn check(layers: &[Vec<u8>], want: &[(&str, &str)]) {
    let work = tempfile::tempdir().unwrap();
    let want = expected(want);
    assert_eq!(ours(work.path(), layers), want, "our unpacker");
    assert_eq!(umoci(work.path(), layers), want, "umoci unpack");
}

fn lower() -> Vec<u8> {
    layer(&[
        ("a/", ""),
        ("a/keep", "lower file"),
        ("a/sub/", ""),
        ("a/sub/old", "lower, under a kept directory"),
        ("a/deep/", ""),
        ("a/deep/x/", ""),
        ("a/deep/x/y", "lower, two levels down"),
        ("b/", ""),
        ("b/untouched", "outside the opaque directory"),
    ])
}

#[test]
fn opaque_after_same_layer_subdirectory_hides_lower_content_recursively() {
    // The upper layer writes a/sub/new (with its directory entry) and a/deep/x/z (directories
    // only implied) BEFORE the marker: they stay, and so do their directories, but the lower
    // a/sub/old, a/deep/x/y and a/keep are hidden.
    let upper = layer(&[
        ("a/sub/", ""),
        ("a/sub/new", "upper"),
        ("a/deep/x/z", "upper, implied dirs"),
        ("a/.wh..wh..opq", ""),
    ]);
    check(
        &[lower(), upper],
        &[
            ("a", "dir"),
            ("a/sub", "dir"),
            ("a/sub/new", "file upper"),
            ("a/deep", "dir"),
            ("a/deep/x", "dir"),
            ("a/deep/x/z", "file upper, implied dirs"),
            ("b", "dir"),
            ("b/untouched", "file outside the opaque directory"),
        ],
    );
}

#[test]
fn opaque_before_same_layer_entries_hides_lower_content() {
    // The order most tools write: the marker first, then the layer's own entries.
    let upper = layer(&[
        ("a/", ""),
        ("a/.wh..wh..opq", ""),
        ("a/sub/", ""),
        ("a/sub/new", "upper"),
    ]);
    check(
        &[lower(), upper],
        &[
            ("a", "dir"),
            ("a/sub", "dir"),
            ("a/sub/new", "file upper"),
            ("b", "dir"),
            ("b/untouched", "file outside the opaque directory"),
        ],
    );
}

#[test]
fn plain_whiteout_of_a_path_the_layer_wrote_only_hides_lower_content() {
    // Contradictory but seen in the wild: a layer writes under x (implied directory) or
    // writes y/ itself, and also carries `.wh.x` / `.wh.y`. Whiteouts only apply to lower
    // layers, so the layer's own entries stay and the lower content below them goes (as
    // umoci does).
    let lower = layer(&[
        ("x/", ""),
        ("x/old", "lower"),
        ("y/", ""),
        ("y/old", "lower"),
        ("z/", ""),
        ("z/old", "lower"),
    ]);
    let upper = layer(&[
        ("x/new", "upper"),
        (".wh.x", ""),
        ("y/", ""),
        ("y/new", "upper"),
        (".wh.y", ""),
        (".wh.z", ""),
    ]);
    check(
        &[lower, upper],
        &[
            ("x", "dir"),
            ("x/new", "file upper"),
            ("y", "dir"),
            ("y/new", "file upper"),
        ],
    );
}
