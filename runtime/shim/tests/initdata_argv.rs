//! The shim's initdata path down to QEMU's command line: for the shipped TDX, SNP and
//! coco-dev classes, a `cc_init_data` annotation made by the real `gzip` and `base64` tools
//! goes through `runtime_shim::initdata::boot_options`, `runtime_qemu::sandbox::vm_spec` and
//! `build_argv` (what `Sandbox::boot` runs). The `mrconfigid` of the `tdx-guest` object and
//! the `host-data` of the `sev-snp-guest` object decode to the coreutils `sha*sum` of the
//! exact TOML bytes, zero-padded or truncated to the field; coco-dev binds nothing. Every
//! class attaches the state directory's initdata image read-only, and that image, cut apart
//! with `od`/`tail`/`head` and `gzip -d`, is Kata's layout around the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;
use runtime_config::RuntimeClassConfig;
use runtime_qemu::argv::{AccelKind, AgentDevice, build_argv};
use runtime_qemu::sandbox::{INITDATA_IMAGE_FILE, vm_spec};
use runtime_shim::initdata::boot_options;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const STATE: &str = "/run/cocoon/initdata-pod";

fn class(file: &str) -> RuntimeClassConfig {
    RuntimeClassConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/configs")
            .join(file),
    )
    .unwrap()
}

fn toml(algorithm: &str) -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"cdh.toml\" = '''\nsocket = \"unix:///run/confidential-containers/cdh.sock\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.2.101:8080\"\n'''\n\"policy.rego\" = '''\npackage agent_policy\ndefault AllowRequestsFailingPolicy := true\n'''\n"
    )
}

/// Runs `sh -c script` with `input` on stdin; returns stdout.
fn sh(script: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script}");
    out.stdout
}

/// The annotation as genpolicy's users make it: `gzip | base64 -w0`.
fn annotation(toml: &str) -> String {
    String::from_utf8(sh("gzip -c | base64 -w0", toml.as_bytes())).unwrap()
}

/// The coreutils digest of `bytes`, zero-padded or truncated to `n` bytes.
fn coreutils_fitted(algorithm: &str, bytes: &[u8], n: usize) -> Vec<u8> {
    let out = sh(&format!("{algorithm}sum"), bytes);
    let text = String::from_utf8(out).unwrap();
    let mut v = hex::decode(text.split_whitespace().next().unwrap()).unwrap();
    v.resize(n, 0);
    v
}

/// The argv and the initdata image `Sandbox::boot` would use for this class and annotation.
fn boot(cfg: &RuntimeClassConfig, ann: &str) -> (Vec<String>, Vec<u8>) {
    let opts = boot_options("initdata-pod", cfg, Some(ann)).unwrap();
    let spec = vm_spec(
        cfg,
        &opts,
        Path::new(STATE),
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 3 },
    );
    (build_argv(&spec).unwrap(), opts.initdata_image.unwrap())
}

fn snp_host_data(argv: &[String]) -> Option<Vec<u8>> {
    let obj = argv
        .iter()
        .find(|a| a.starts_with("sev-snp-guest,"))
        .unwrap();
    obj.split(',')
        .find_map(|kv| kv.strip_prefix("host-data="))
        .map(|v| B64.decode(v).unwrap())
}

fn tdx_mrconfigid(argv: &[String]) -> Option<Vec<u8>> {
    let obj = argv.iter().find(|a| a.contains("\"tdx-guest\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(obj).unwrap();
    v.get("mrconfigid")
        .map(|m| B64.decode(m.as_str().unwrap()).unwrap())
}

/// Asserts the argv attaches the state dir's image read-only, and that the image is
/// `"initdata"` ‖ u64 LE gzip length ‖ gzip(`toml`) ‖ zeros to a 512-byte multiple, read
/// back with shell tools.
fn assert_image(argv: &[String], image: &[u8], toml: &str) {
    let drive =
        format!("file={STATE}/{INITDATA_IMAGE_FILE},if=none,id=initdata0,format=raw,readonly=on");
    let at = argv.iter().position(|a| *a == drive).unwrap_or_else(|| {
        panic!("no read-only initdata drive {drive} in {argv:?}");
    });
    assert_eq!(argv[at - 1], "-drive");
    assert!(argv[at + 2].ends_with(",drive=initdata0"), "{argv:?}");
    assert_eq!(&image[..8], b"initdata");
    assert_eq!(image.len() % 512, 0);
    let len: usize = String::from_utf8(sh("od -An -tu8 -j8 -N8", image))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(16 + len <= image.len() && image.len() - (16 + len) < 512);
    assert!(image[16 + len..].iter().all(|b| *b == 0));
    let plain = sh(&format!("tail -c +17 | head -c {len} | gzip -dc"), image);
    assert_eq!(plain, toml.as_bytes());
}

#[test]
fn tdx_class_binds_the_initdata_digest_in_mrconfigid() {
    let cfg = class("configuration-qemu-tdx.toml");
    // sha256 is zero-padded to 48 bytes, sha384 fits, sha512 is truncated.
    for alg in ["sha256", "sha384", "sha512"] {
        let doc = toml(alg);
        let (argv, image) = boot(&cfg, &annotation(&doc));
        let got = tdx_mrconfigid(&argv).unwrap_or_else(|| panic!("{alg}: no mrconfigid"));
        assert_eq!(got, coreutils_fitted(alg, doc.as_bytes(), 48), "{alg}");
        assert_image(&argv, &image, &doc);
    }
    // One more byte, another MRCONFIGID.
    let doc = toml("sha384");
    let (a, _) = boot(&cfg, &annotation(&doc));
    let (b, _) = boot(&cfg, &annotation(&format!("{doc}\n")));
    assert_ne!(tdx_mrconfigid(&a), tdx_mrconfigid(&b));
}

#[test]
fn snp_class_binds_the_initdata_digest_in_host_data() {
    let cfg = class("configuration-qemu-snp.toml");
    // sha256 fits HOST_DATA exactly; sha384 and sha512 are truncated.
    for alg in ["sha256", "sha384", "sha512"] {
        let doc = toml(alg);
        let (argv, image) = boot(&cfg, &annotation(&doc));
        let got = snp_host_data(&argv).unwrap_or_else(|| panic!("{alg}: no host-data"));
        assert_eq!(got, coreutils_fitted(alg, doc.as_bytes(), 32), "{alg}");
        assert_image(&argv, &image, &doc);
    }
}

#[test]
fn coco_dev_attaches_the_image_and_binds_nothing() {
    let cfg = class("configuration-qemu-coco-dev.toml");
    let doc = toml("sha256");
    let (argv, image) = boot(&cfg, &annotation(&doc));
    assert!(
        !argv
            .iter()
            .any(|a| a.contains("host-data") || a.contains("mrconfigid")),
        "{argv:?}"
    );
    assert_image(&argv, &image, &doc);
    // Without the annotation: no drive at all.
    let opts = boot_options("initdata-pod", &cfg, None).unwrap();
    let spec = vm_spec(
        &cfg,
        &opts,
        Path::new(STATE),
        AccelKind::Tcg,
        AgentDevice::VhostVsock { guest_cid: 3 },
    );
    assert!(
        !build_argv(&spec)
            .unwrap()
            .iter()
            .any(|a| a.contains("initdata0") || a.contains(INITDATA_IMAGE_FILE))
    );
}
