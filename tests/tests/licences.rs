//! Licence gate: every crate in the dependency graph must be licensed under an expression
//! satisfiable with the allow-list in `deny.toml` (no GPL/AGPL), and banned crates (e.g. the
//! AGPL `tdx-quote`) must be absent. Uses `cargo metadata`, so it needs no extra tool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

fn deny_toml() -> toml::Value {
    let text = std::fs::read_to_string(cocoon_tests::workspace_root().join("deny.toml")).unwrap();
    toml::from_str(&text).unwrap()
}

/// Evaluates an SPDX expression (OR/AND/WITH, parentheses, legacy `/` as OR).
fn satisfiable(expr: &str, allowed: &BTreeSet<String>) -> bool {
    let expr = expr.trim();
    let tokens: Vec<String> = expr
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ")
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut pos = 0;
    parse_or(&tokens, &mut pos, allowed)
}

fn parse_or(t: &[String], pos: &mut usize, allowed: &BTreeSet<String>) -> bool {
    let mut ok = parse_and(t, pos, allowed);
    while *pos < t.len() && t[*pos] == "OR" {
        *pos += 1;
        ok |= parse_and(t, pos, allowed);
    }
    ok
}

fn parse_and(t: &[String], pos: &mut usize, allowed: &BTreeSet<String>) -> bool {
    let mut ok = parse_atom(t, pos, allowed);
    while *pos < t.len() && t[*pos] == "AND" {
        *pos += 1;
        ok &= parse_atom(t, pos, allowed);
    }
    ok
}

fn parse_atom(t: &[String], pos: &mut usize, allowed: &BTreeSet<String>) -> bool {
    if t.get(*pos).map(String::as_str) == Some("(") {
        *pos += 1;
        let ok = parse_or(t, pos, allowed);
        *pos += 1; // ")"
        return ok;
    }
    let mut id = t.get(*pos).cloned().unwrap_or_default();
    *pos += 1;
    if t.get(*pos).map(String::as_str) == Some("WITH") {
        id = format!("{id} WITH {}", t.get(*pos + 1).cloned().unwrap_or_default());
        *pos += 2;
    }
    allowed.contains(&id) || allowed.contains(id.split(" WITH ").next().unwrap_or(""))
}

#[test]
fn spdx_evaluation() {
    let allowed: BTreeSet<String> = ["MIT", "Apache-2.0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(satisfiable("MIT OR GPL-3.0", &allowed));
    assert!(satisfiable("MIT/Apache-2.0", &allowed));
    assert!(satisfiable("(MIT OR Apache-2.0) AND MIT", &allowed));
    assert!(!satisfiable("GPL-2.0 AND MIT", &allowed));
    assert!(!satisfiable("AGPL-3.0-only", &allowed));
    assert!(satisfiable("Apache-2.0 WITH LLVM-exception", &allowed));
}

#[test]
fn every_dependency_has_an_allowed_licence() {
    let deny = deny_toml();
    let allowed: BTreeSet<String> = deny["licenses"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let banned: BTreeSet<String> = deny["bans"]["deny"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
        ])
        .arg("--manifest-path")
        .arg(cocoon_tests::workspace_root().join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bad = Vec::new();
    let mut n = 0;
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if p["source"].is_null() {
            continue; // our own crates
        }
        n += 1;
        if banned.contains(name) {
            bad.push(format!("{name}: banned"));
            continue;
        }
        match p["license"].as_str() {
            Some(l) if satisfiable(l, &allowed) => {}
            Some(l) => bad.push(format!("{name} {}: {l}", p["version"])),
            None => bad.push(format!("{name} {}: no SPDX licence", p["version"])),
        }
    }
    assert!(n > 50, "dependency graph looks empty ({n})");
    assert!(
        bad.is_empty(),
        "licences outside deny.toml's allow-list:\n{}",
        bad.join("\n")
    );
}
