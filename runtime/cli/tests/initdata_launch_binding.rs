//! The initdata binding QEMU is given equals the reference values: for the shipped SNP
//! and TDX runtime classes, the `host-data` of the `sev-snp-guest` object and the
//! `mrconfigid` of the `tdx-guest` object in the argv `Sandbox::boot` builds
//! (`runtime_qemu::sandbox::vm_spec` + `build_argv`) decode to
//! `measured_boot::initdata`'s `snp_host_data()` / `tdx_mrconfigid()`, and to the
//! coreutils digest of the initdata zero-padded or truncated to the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use measured_boot::initdata::Initdata;
use runtime_config::RuntimeClassConfig;
use runtime_qemu::argv::{AccelKind, AgentDevice, build_argv};
use runtime_qemu::sandbox::{BootOptions, vm_spec};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn class(file: &str) -> RuntimeClassConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/configs")
        .join(file);
    RuntimeClassConfig::load(&p).unwrap()
}

fn argv(cfg: &RuntimeClassConfig, digest: Option<Vec<u8>>) -> Vec<String> {
    let opts = BootOptions {
        id: "initdata-binding".into(),
        initdata_digest: digest,
        ..Default::default()
    };
    let spec = vm_spec(
        cfg,
        &opts,
        Path::new("/run/cocoon/initdata-binding"),
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 3 },
    );
    build_argv(&spec).unwrap()
}

/// `host-data=<base64>` of the `sev-snp-guest` object, decoded.
fn snp_host_data(argv: &[String]) -> Option<Vec<u8>> {
    let obj = argv
        .iter()
        .find(|a| a.starts_with("sev-snp-guest,"))
        .unwrap();
    obj.split(',')
        .find_map(|kv| kv.strip_prefix("host-data="))
        .map(|v| B64.decode(v).unwrap())
}

/// `"mrconfigid": "<base64>"` of the `tdx-guest` JSON object, decoded.
fn tdx_mrconfigid(argv: &[String]) -> Option<Vec<u8>> {
    let obj = argv.iter().find(|a| a.contains("\"tdx-guest\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(obj).unwrap();
    v.get("mrconfigid")
        .map(|m| B64.decode(m.as_str().unwrap()).unwrap())
}

/// The coreutils `sha*sum` of `bytes`, zero-padded or truncated to `n` bytes.
fn coreutils_fitted(algorithm: &str, bytes: &[u8], n: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("initdata.toml");
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new(format!("{algorithm}sum"))
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let h = text.split_whitespace().next().unwrap();
    let mut v: Vec<u8> = (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect();
    v.resize(n, 0);
    v
}

fn initdata(algorithm: &str) -> Initdata {
    let toml = format!(
        "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\ndefault AllowRequestsFailingPolicy := true\n'''\n"
    );
    Initdata::parse(toml.as_bytes()).unwrap()
}

#[test]
fn snp_argv_host_data_equals_reference_host_data() {
    let cfg = class("configuration-qemu-snp.toml");
    // sha256 fits HOST_DATA exactly; sha384 and sha512 are truncated.
    for alg in ["sha256", "sha384", "sha512"] {
        let init = initdata(alg);
        let got = snp_host_data(&argv(&cfg, Some(init.digest())))
            .unwrap_or_else(|| panic!("{alg}: no host-data in the sev-snp-guest object"));
        assert_eq!(got, init.snp_host_data(), "{alg}");
        assert_eq!(got, coreutils_fitted(alg, &init.raw, 32), "{alg}");
    }
    assert_eq!(
        snp_host_data(&argv(&cfg, None)),
        None,
        "no initdata, no host-data"
    );
}

#[test]
fn tdx_argv_mrconfigid_equals_reference_mrconfigid() {
    let cfg = class("configuration-qemu-tdx.toml");
    // sha256 is zero-padded to 48 bytes, sha384 fits, sha512 is truncated.
    for alg in ["sha256", "sha384", "sha512"] {
        let init = initdata(alg);
        let got = tdx_mrconfigid(&argv(&cfg, Some(init.digest())))
            .unwrap_or_else(|| panic!("{alg}: no mrconfigid in the tdx-guest object"));
        assert_eq!(got, init.tdx_mrconfigid(), "{alg}");
        assert_eq!(got, coreutils_fitted(alg, &init.raw, 48), "{alg}");
    }
    assert_eq!(
        tdx_mrconfigid(&argv(&cfg, None)),
        None,
        "no initdata, no mrconfigid"
    );
}
