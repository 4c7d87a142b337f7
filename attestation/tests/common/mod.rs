//! Helpers shared by the fixture tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

pub fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = data().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

pub fn t(s: &str) -> i64 {
    attestation::time::parse_rfc3339(s).unwrap()
}

pub fn pem_chain(rel: &str) -> Vec<Vec<u8>> {
    attestation::snp::certs::pem_chain_to_der(&read(rel)).unwrap()
}

/// `base/../x` -> `x` relative to the data dir.
pub fn resolve(set_dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = set_dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            s => parts.push(s),
        }
    }
    parts.join("/")
}
