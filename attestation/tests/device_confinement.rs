//! Guard: TEE device access is confined to `attestation/src/attester/`. No other
//! workspace source may name /dev/sev-guest, configfs-tsm or the ACPI CCEL table
//! (nor open the SNP guest device through the `sev` crate). Tests, fixtures and
//! build output are not scanned; comment lines are ignored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Strings that mean "touches a TEE device".
const DEVICE_STRINGS: [&str; 6] = [
    "/dev/sev-guest",
    "/dev/tdx_guest",
    "/sys/kernel/config/tsm",
    "/sys/firmware/acpi/tables/CCEL",
    "tables/data/CCEL",
    // The `sev` crate's opener of /dev/sev-guest.
    "firmware::guest::Firmware",
];

/// The only directory (relative to the workspace root) allowed to contain them.
const ALLOWED_DIR: &str = "attestation/src/attester/";

/// Mentions outside [`ALLOWED_DIR`] that touch nothing: (file, exact trimmed line).
const ALLOWED_LINES: [(&str, &str); 1] = [(
    "attestation/src/error.rs",
    r#"#[error("no TEE device detected (looked for configfs-tsm tdx_guest and /dev/sev-guest)")]"#,
)];

/// Directory names never scanned: build output, tests and test data (hidden
/// directories are skipped too).
const SKIPPED_DIRS: [&str; 5] = ["target", "tests", "fixtures", "testdata", "node_modules"];

/// Top-level directories never scanned: the guest image build output.
const SKIPPED_TOP_DIRS: [&str; 1] = ["build"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_sources(dir: &Path, top: bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            let skipped = name.starts_with('.')
                || SKIPPED_DIRS.contains(&name.as_str())
                || (top && SKIPPED_TOP_DIRS.contains(&name.as_str()));
            if !skipped {
                rust_sources(&path, false, out);
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// One device-string occurrence: (path relative to `root`, line number, line).
type Hit = (String, usize, String);

/// Every occurrence of a device string in non-comment lines of `root`'s sources,
/// split into (inside the allowed directory, outside it and not allow-listed).
fn scan(root: &Path) -> (Vec<Hit>, Vec<Hit>, usize) {
    let mut files = Vec::new();
    rust_sources(root, true, &mut files);
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with("//") || !DEVICE_STRINGS.iter().any(|s| line.contains(s)) {
                continue;
            }
            let hit = (rel.clone(), i + 1, trimmed.to_string());
            if rel.starts_with(ALLOWED_DIR) {
                inside.push(hit);
            } else if !ALLOWED_LINES.contains(&(rel.as_str(), trimmed)) {
                outside.push(hit);
            }
        }
    }
    (inside, outside, files.len())
}

#[test]
fn tee_device_paths_appear_only_in_the_attester_module() {
    let root = workspace_root();
    assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
    let (inside, outside, scanned) = scan(&root);
    assert!(
        outside.is_empty(),
        "TEE device access outside {ALLOWED_DIR}:\n{}",
        outside
            .iter()
            .map(|(f, n, l)| format!("  {f}:{n}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The scan is not vacuous: it covers the workspace and sees the attesters.
    assert!(scanned > 100, "only {scanned} sources scanned");
    for (file, needle) in [
        ("attestation/src/attester/mod.rs", "/dev/sev-guest"),
        ("attestation/src/attester/tsm.rs", "/sys/kernel/config/tsm"),
        ("attestation/src/attester/tdx.rs", "tables/data/CCEL"),
        (
            "attestation/src/attester/snp.rs",
            "firmware::guest::Firmware",
        ),
    ] {
        assert!(
            inside
                .iter()
                .any(|(f, _, l)| f == file && l.contains(needle)),
            "{needle} not found in {file}"
        );
    }
}

#[test]
fn the_scan_reports_a_device_path_outside_the_attester() {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "attestation/src/attester/snp.rs",
        "const P: &str = \"/dev/sev-guest\";\n",
    );
    write(
        "runtime/x/src/lib.rs",
        "/// reads /dev/sev-guest\nfn f() { std::fs::read(\"/sys/firmware/acpi/tables/CCEL\"); }\n",
    );
    write(
        "runtime/x/tests/t.rs",
        "const P: &str = \"/dev/sev-guest\";\n",
    );
    write(
        "target/debug/build/gen.rs",
        "const P: &str = \"/sys/kernel/config/tsm/report\";\n",
    );
    // Build output at the top level is skipped, a `build` module inside a crate is not.
    write("build/rootfs/x.rs", "const P: &str = \"/dev/sev-guest\";\n");
    write(
        "agent/src/build/mod.rs",
        "const P: &str = \"/dev/tdx_guest\";\n",
    );
    let (inside, outside, _) = scan(dir.path());
    assert_eq!(inside.len(), 1, "{inside:?}");
    let mut outside = outside;
    outside.sort();
    assert_eq!(
        outside,
        [
            (
                "agent/src/build/mod.rs".to_string(),
                1,
                "const P: &str = \"/dev/tdx_guest\";".to_string()
            ),
            (
                "runtime/x/src/lib.rs".to_string(),
                2,
                "fn f() { std::fs::read(\"/sys/firmware/acpi/tables/CCEL\"); }".to_string()
            ),
        ]
    );
}
