//! Initdata digest and its platform forms, checked against `sha256sum`/`sha384sum`/
//! `sha512sum` (coreutils) and `gzip`/`base64` run as subprocesses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use measured_boot::initdata::{Initdata, InitdataAlgorithm, decode_annotation, encode_annotation};

fn doc(alg: &str) -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"{alg}\"\n\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"http://127.0.0.1:8080\"\n'''\n\"cdh.toml\" = '''\nsocket = \"unix:///run/confidential-containers/cdh.sock\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://127.0.0.1:8080\"\n'''\n\"policy.rego\" = '''\npackage agent_policy\ndefault AllowRequestsFailingPolicy := true\n'''\n"
    )
}

fn coreutils_sum(tool: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    hex::decode(text.split_whitespace().next().unwrap()).unwrap()
}

#[test]
fn digests_match_coreutils_and_fit_platform_fields() {
    for (alg, tool, len) in [
        ("sha256", "sha256sum", 32),
        ("sha384", "sha384sum", 48),
        ("sha512", "sha512sum", 64),
    ] {
        let raw = doc(alg);
        let d = Initdata::parse(raw.as_bytes()).unwrap();
        let want = coreutils_sum(tool, raw.as_bytes());
        assert_eq!(d.digest(), want, "{alg}");
        assert_eq!(d.digest().len(), len);
        assert_eq!(d.data.len(), 3);
        let host = d.snp_host_data();
        let cfg = d.tdx_mrconfigid();
        let n = len.min(32);
        assert_eq!(&host[..n], &want[..n]);
        assert!(host[n..].iter().all(|b| *b == 0));
        let n = len.min(48);
        assert_eq!(&cfg[..n], &want[..n]);
        assert!(cfg[n..].iter().all(|b| *b == 0));
    }
}

#[test]
fn digest_is_over_exact_bytes() {
    let a = doc("sha384");
    let b = format!("{a}\n");
    let da = Initdata::parse(a.as_bytes()).unwrap();
    let db = Initdata::parse(b.as_bytes()).unwrap();
    assert_eq!(da.data, db.data);
    assert_ne!(da.digest(), db.digest());
    assert_eq!(da.algorithm, InitdataAlgorithm::Sha384);
}

#[test]
fn rejects_bad_versions_algorithms_and_shapes() {
    let cases = [
        (
            "version = \"0.2.0\"\nalgorithm = \"sha256\"\n",
            "unsupported version",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"md5\"\n",
            "unsupported algorithm \"md5\"",
        ),
        ("algorithm = \"sha256\"\n", "invalid TOML"),
        (
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 1\n",
            "invalid TOML",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = \"y\"\n",
            "invalid TOML",
        ),
        (
            "version = \"0.1.0\"\nalgorithm = \"SHA256\"\n",
            "unsupported algorithm",
        ),
    ];
    for (text, want) in cases {
        let e = Initdata::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn annotation_round_trip_and_interop_with_gzip_tool() {
    let raw = doc("sha256");
    // Encode with the real gzip + base64 tools, decode with ours.
    let sh = Command::new("sh")
        .args(["-c", "gzip -c | base64 -w0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sh = sh;
    sh.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    let ann = String::from_utf8(sh.wait_with_output().unwrap().stdout).unwrap();
    let d = Initdata::from_annotation(&ann).unwrap();
    assert_eq!(d.raw, raw.as_bytes());
    // Ours encodes, gunzip decodes.
    let ours = encode_annotation(raw.as_bytes()).unwrap();
    assert_eq!(decode_annotation(&ours).unwrap(), raw.as_bytes());
    let mut sh = Command::new("sh")
        .args(["-c", "base64 -d | gzip -dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sh.stdin.take().unwrap().write_all(ours.as_bytes()).unwrap();
    assert_eq!(sh.wait_with_output().unwrap().stdout, raw.as_bytes());
    assert!(
        decode_annotation("not base64!")
            .unwrap_err()
            .to_string()
            .contains("base64")
    );
    assert!(
        decode_annotation("aGVsbG8=")
            .unwrap_err()
            .to_string()
            .contains("gzip")
    );
}
