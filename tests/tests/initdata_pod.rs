//! Initdata end to end, through Debian's containerd and `ctr run --annotation
//! io.katacontainers.config.hypervisor.cc_init_data=<base64(gzip(toml))>`, in the TCG guest.
//!
//! The coco-dev class pulls images in the guest (`agent.guest_pull=true`) and fetches its
//! containers-policy.json from the KBS for every pull (`agent.image_policy=kbs:///...`), but
//! its kernel command line names **no KBS** (no `agent.aa_kbc_params`): only initdata's
//! `cdh.toml` does. The KBS (in-process `cocoon-kbs`, sample evidence) releases that policy
//! only to a token whose `init_data` is the SHA-384 of the exact initdata TOML bytes and
//! whose `init_data_claims` carry that `cdh.toml`. So:
//! - a pod with the initdata runs an image pulled from the registry: the agent found the
//!   initdata disk, took the KBS from `cdh.toml`, sent the TOML in the attestation, and the
//!   KBS's token carried its digest (the resource policy compared it);
//! - the same TOML with one more byte (a valid document, another digest) is refused by the
//!   KBS; a pod without initdata has no KBS at all;
//! - malformed annotations (not base64, plain TOML, another version) fail Create naming
//!   `cc_init_data` and leave no QEMU, VM state directory or initdata file;
//! - initdata whose `cdh.toml` names an unsupported KBC stops the guest agent at boot (as
//!   Kata's agent fails its init), and the pod's Create fails with the agent's reason.
//!
//! Needs the guest image (`COCOON_GUEST_DIR`), containerd, ctr, docker-registry, skopeo,
//! umoci, gzip, base64.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "harness/containerd.rs"]
mod containerd;
#[path = "../../guest-components/image/tests/common/mod.rs"]
mod image_common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;

use cocoon_kbs::{KbsConfig, KbsServer};
use cocoon_tests::guest_dir;
use containerd::{Containerd, ctr_run, text};
use sha2::Digest as _;

const REGISTRY_IN_GUEST: &str = "10.0.2.100:5000";
const KBS_IN_GUEST: &str = "http://10.0.2.101:8080";
const POLICY_URI: &str = "kbs:///default/policy/images";
const ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";

/// The pod's initdata: the KBS in `cdh.toml` (and `aa.toml`), as CoCo writes them.
fn initdata_toml() -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"{KBS_IN_GUEST}\"\n'''\n\"cdh.toml\" = '''\nsocket = \"unix:///run/confidential-containers/cdh.sock\"\ncredentials = []\n\n[kbc]\nname = \"cc_kbc\"\nurl = \"{KBS_IN_GUEST}\"\n'''\n"
    )
}

/// `base64(gzip(toml))`, made with the real tools.
fn annotation(toml: &str) -> String {
    let mut child = Command::new("sh")
        .args(["-c", "gzip -c | base64 -w0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(toml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Releases resources only to a token carrying init-data digest `hex` and a `cdh.toml`
/// naming the test KBS.
fn resource_policy(hex: &str) -> String {
    format!(
        "package policy\n\ndefault allow := false\n\nallow if {{\n\tdata.plugin == \"resource\"\n\tev := input.submods.cpu0[\"ear.veraison.annotated-evidence\"]\n\tev.init_data == \"{hex}\"\n\tcontains(ev.init_data_claims[\"cdh.toml\"], \"{KBS_IN_GUEST}\")\n}}\n"
    )
}

/// Every path under `root` whose name mentions initdata.
fn initdata_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().contains("initdata") {
                found.push(path.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

fn tmp_initdata_entries() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("initdata"))
        .collect()
}

/// `ctr run` of `cmd` in the registry's busybox pulled in the guest, with `extra` annotations.
fn run_pulled(c: &Containerd, id: &str, extra: &[String], cmd: &str) -> Output {
    let image = format!("io.cocoon.image={REGISTRY_IN_GUEST}/plain/busybox:latest");
    let mut args = vec!["--annotation".to_owned(), image];
    for a in extra {
        args.push("--annotation".into());
        args.push(a.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    let out = ctr_run(c, id, &args, &["sh", "-c", cmd]);
    eprintln!("ctr run {id}: {:?} in {:?}", out.status, t.elapsed());
    out
}

#[test]
fn initdata_reaches_the_guest_and_the_kbs_sees_its_digest() {
    let Some(guest) = guest_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let toml = initdata_toml();
    let digest = hex::encode(sha2::Sha384::digest(toml.as_bytes()));

    // Registry with the busybox image (it has /etc/app.conf; the baked rootfs does not).
    let registry = image_common::Registry::start();
    let layout = image_common::build_busybox_image(w);
    registry.push(&layout, "busybox", "plain/busybox:latest", &[]);
    let registry_port: u16 = registry.host.rsplit(':').next().unwrap().parse().unwrap();

    // KBS: the image policy, released only for this initdata's digest.
    let resources = w.join("kbs");
    std::fs::create_dir_all(resources.join("default/policy")).unwrap();
    std::fs::write(
        resources.join("default/policy/images"),
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let policy_file = w.join("resource-policy.rego");
    std::fs::write(&policy_file, resource_policy(&digest)).unwrap();
    let mut kbs_config = KbsConfig::for_loopback(resources);
    kbs_config.allow_sample = true;
    kbs_config.resource_policy_file = Some(policy_file);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kbs = rt.block_on(KbsServer::start(kbs_config)).unwrap();

    let params = format!(
        "agent.guest_pull=true agent.tee_class=coco-dev \
         agent.insecure_registries={REGISTRY_IN_GUEST} agent.image_policy={POLICY_URI}"
    );
    let network = format!(
        "[network]\nrelay_busybox = \"/usr/bin/busybox\"\nforwards = [\n  \
         {{ guest = \"{REGISTRY_IN_GUEST}\", host = \"127.0.0.1:{registry_port}\" }},\n  \
         {{ guest = \"10.0.2.101:8080\", host = \"127.0.0.1:{}\" }},\n]\n",
        kbs.addr.port()
    );
    let c = Containerd::start_with_class(&guest, &params, &network);
    let tmp_before = tmp_initdata_entries();

    // 1. Malformed annotations: refused before any VM, naming the annotation and the reason.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for (id, value, reason) in [
        ("bad-b64", "%%%not-base64%%%".to_owned(), "not base64"),
        ("bad-plain", b64.encode(&toml), "not gzip"),
        (
            "bad-version",
            annotation(&toml.replace("0.1.0", "0.2.0")),
            "unsupported version \"0.2.0\"",
        ),
    ] {
        let out = run_pulled(&c, id, &[format!("{ANNOTATION}={value}")], "true");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{id} accepted: {}", text(&out));
        assert!(
            err.contains(&format!("annotation {ANNOTATION}: ")) && err.contains(reason),
            "{id}: {err}"
        );
        assert!(
            c.our_processes("qemu-system").is_empty(),
            "{id}: a QEMU was started"
        );
        c.assert_clean(id);
        assert_eq!(initdata_files(c.dir()), Vec::<PathBuf>::new(), "{id}");
        assert_eq!(tmp_initdata_entries(), tmp_before, "{id}");
    }
    assert_eq!(kbs.state.stats.auth.load(Ordering::Relaxed), 0);

    // 2. No initdata: the class names no KBS, so the policy cannot be fetched.
    let out = run_pulled(&c, "no-initdata", &[], "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains(&format!("agent.image_policy={POLICY_URI}")) && err.contains("no KBS"),
        "{err}"
    );
    c.assert_clean("no initdata");

    // 3. The initdata: the pod runs the pulled image; the KBS released the policy, so its
    //    token carried the digest of these exact bytes.
    let ann = format!("{ANNOTATION}={}", annotation(&toml));
    let out = run_pulled(
        &c,
        "with-initdata",
        &[ann],
        "cat /etc/app.conf; echo; echo pulled-with-initdata",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("owned by app") && stdout.contains("pulled-with-initdata"),
        "{stdout}"
    );
    let stats = &kbs.state.stats;
    assert_eq!(stats.attest_ok.load(Ordering::Relaxed), 1);
    assert_eq!(stats.released.load(Ordering::Relaxed), 1);
    assert_eq!(stats.policy_denied.load(Ordering::Relaxed), 0);
    c.assert_clean("initdata pod");
    assert_eq!(initdata_files(c.dir()), Vec::<PathBuf>::new());

    // 4. One byte more: valid initdata naming the same KBS, another digest: refused.
    let ann = format!("{ANNOTATION}={}", annotation(&format!("{toml}\n")));
    let out = run_pulled(&c, "other-digest", &[ann], "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains(&format!(
            "agent.image_policy={POLICY_URI}: cannot fetch it from the KBS"
        )) && err.contains("PolicyDeny"),
        "{err}"
    );
    assert_eq!(stats.attest_ok.load(Ordering::Relaxed), 2);
    assert_eq!(stats.released.load(Ordering::Relaxed), 1);
    assert_eq!(stats.policy_denied.load(Ordering::Relaxed), 1);
    c.assert_clean("other digest");

    // 5. Valid initdata whose cdh.toml the guest cannot use: the agent refuses to start.
    let offline = toml.replace("name = \"cc_kbc\"", "name = \"offline_fs_kbc\"");
    let ann = format!("{ANNOTATION}={}", annotation(&offline));
    let out = run_pulled(&c, "bad-cdh", &[ann], "true");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("bad-cdh: {err}");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("cocoon-agent: fatal: initdata device /dev/vd")
            && err.contains("initdata cdh.toml: kbc.name \"offline_fs_kbc\""),
        "{err}"
    );
    assert_eq!(err.matches("kbc.name").count(), 1, "the reason once: {err}");
    c.assert_clean("agent refused initdata");
    assert_eq!(initdata_files(c.dir()), Vec::<PathBuf>::new());
    assert_eq!(tmp_initdata_entries(), tmp_before);
    assert_eq!(stats.attest_ok.load(Ordering::Relaxed), 2);

    drop(c);
    rt.block_on(kbs.stop());
}
