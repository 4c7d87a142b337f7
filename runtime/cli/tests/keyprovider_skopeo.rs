//! `cocoon image keyprovider` against the real tools: skopeo (ocicrypt with key-provider
//! support) encrypts a busybox image built with umoci through our provider; the guest image
//! code pulls it from Debian's `docker-registry` on 127.0.0.1 and decrypts it with a
//! `KeyResolver`; skopeo decrypts it again through our provider's local-KEK unwrap path.
//!
//! Debian 12's skopeo 1.9.3 is built against ocicrypt 1.0.3, which has no key providers
//! ("Provided protocol not recognized"). The test uses `$COCOON_SKOPEO_KEYPROVIDER`, else
//! `/opt/skopeo-trixie/skopeo` (Debian 13's skopeo, installed by scripts/setup.sh), else
//! `skopeo` if it supports providers; with none of them it fails and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use guest_image::ocicrypt::OcicryptError;
use guest_image::{ImageError, InMemoryKeyResolver, PullOptions, pull_image};

const KID: &str = "kbs:///default/key/k1";
const ANNOTATION: &str = "org.opencontainers.image.enc.keys.provider.attestation-agent";

fn cocoon() -> &'static str {
    env!("CARGO_BIN_EXE_cocoon")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The manifest of the only image in an OCI layout.
fn manifest(layout: &Path) -> serde_json::Value {
    let index = read_json(&layout.join("index.json"));
    read_json(&blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
}

/// Write `{"key-providers":{"attestation-agent":{"cmd":{...}}}}` pointing at our binary.
fn ocicrypt_config(dir: &Path, extra_args: &[&str]) -> PathBuf {
    let mut args = vec!["image", "keyprovider"];
    args.extend_from_slice(extra_args);
    let config = serde_json::json!({"key-providers": {"attestation-agent": {"cmd": {
        "path": cocoon(), "args": args
    }}}});
    let path = dir.join(format!("ocicrypt-{}.json", extra_args.len()));
    fs::write(&path, config.to_string()).unwrap();
    path
}

/// A skopeo whose ocicrypt knows `provider:` keys: copying an image without layers with a
/// provider key succeeds there and fails with "Provided protocol not recognized" elsewhere.
fn keyprovider_skopeo(work: &Path, config: &Path) -> String {
    let probe = work.join("probe");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&probe));
    run(Command::new("umoci").args(["new", "--image", &format!("{}:t", probe.display())]));
    let mut candidates = Vec::new();
    if let Ok(explicit) = std::env::var("COCOON_SKOPEO_KEYPROVIDER") {
        candidates.push(explicit);
    }
    candidates.push("/opt/skopeo-trixie/skopeo".into());
    candidates.push("skopeo".into());
    let mut tried = Vec::new();
    for (i, skopeo) in candidates.iter().enumerate() {
        let out = Command::new(skopeo)
            .env("OCICRYPT_KEYPROVIDER_CONFIG", config)
            .args(["copy", "--quiet", "--insecure-policy", "--encryption-key"])
            .arg(format!(
                "provider:attestation-agent:keypath=/nonexistent::keyid={KID}"
            ))
            .arg(format!("oci:{}:t", probe.display()))
            .arg(format!(
                "oci:{}:t",
                work.join(format!("probe-out-{i}")).display()
            ))
            .output();
        match out {
            Ok(o) if o.status.success() => return skopeo.clone(),
            Ok(o) => tried.push(format!(
                "{skopeo}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => tried.push(format!("{skopeo}: {e}")),
        }
    }
    panic!(
        "no skopeo with ocicrypt key-provider support (Debian 12's skopeo lacks it; \
         scripts/setup.sh installs Debian 13's as /opt/skopeo-trixie/skopeo, or set \
         COCOON_SKOPEO_KEYPROVIDER):\n{}",
        tried.join("\n")
    );
}

/// A `docker-registry serve` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        fs::create_dir_all(&storage).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {host}}}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let registry = Self {
            child,
            host,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if registry.api_root_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not come up on {}", registry.host);
    }

    fn api_root_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(&self.host) else {
            return false;
        };
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut reply = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut reply).is_ok()
            && reply.starts_with("HTTP/1.1 200")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two-layer busybox image (tag `busybox`): /bin with busybox and applet links, then /etc.
fn build_busybox_layout(work: &Path) -> PathBuf {
    let layout = work.join("plain");
    let image = format!("{}:busybox", layout.display());
    let bin = work.join("src/bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let etc = work.join("src/etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join("passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&bin)
        .arg("/bin"));
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&etc)
        .arg("/etc"));
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "/bin/sh"]));
    run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
    layout
}

fn skopeo_copy(skopeo: &str, config: &Path, key_args: &[String], from: &str, to: &str) -> Output {
    output(
        Command::new(skopeo)
            .env("OCICRYPT_KEYPROVIDER_CONFIG", config)
            .args([
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
            ])
            .args(key_args)
            .arg(from)
            .arg(to),
    )
}

fn pull_with_kek(
    registry: &Registry,
    reference: &str,
    dest: &Path,
    kek: &[u8],
) -> Result<(), ImageError> {
    let mut resolver = InMemoryKeyResolver::new();
    resolver.insert(KID, kek.to_vec()).unwrap();
    let options = PullOptions {
        insecure_registries: vec![registry.host.clone()],
        key_resolver: Some(Arc::new(resolver)),
        ..PullOptions::default()
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(pull_image(reference, dest, &options))
        .map(|_| ())
}

#[test]
fn skopeo_encrypts_through_keyprovider_and_guest_image_decrypts() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let config = ocicrypt_config(w, &[]);
    let skopeo = keyprovider_skopeo(w, &config);
    let plain = build_busybox_layout(w);
    let kek = [0x6bu8; 32];
    let kek_file = w.join("kek.bin");
    fs::write(&kek_file, kek).unwrap();

    // Encrypt with the real skopeo/ocicrypt, which runs `cocoon image keyprovider` per layer.
    let enc = w.join("enc");
    let key = vec![
        "--encryption-key".to_owned(),
        format!(
            "provider:attestation-agent:keypath={}::keyid={KID}",
            kek_file.display()
        ),
    ];
    let out = skopeo_copy(
        &skopeo,
        &config,
        &key,
        &format!("oci:{}:busybox", plain.display()),
        &format!("oci:{}:busybox", enc.display()),
    );
    assert!(
        out.status.success(),
        "skopeo encrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let plain_manifest = manifest(&plain);
    let enc_manifest = manifest(&enc);
    let plain_layers = plain_manifest["layers"].as_array().unwrap();
    let enc_layers = enc_manifest["layers"].as_array().unwrap();
    assert_eq!(plain_layers.len(), 2);
    assert_eq!(enc_layers.len(), 2);
    let b64 = base64::engine::general_purpose::STANDARD;
    let busybox = fs::read("/bin/busybox").unwrap();
    for (p, e) in plain_layers.iter().zip(enc_layers) {
        assert_eq!(
            e["mediaType"].as_str().unwrap(),
            format!("{}+encrypted", p["mediaType"].as_str().unwrap())
        );
        assert_ne!(e["digest"], p["digest"]);
        let packet: serde_json::Value = serde_json::from_slice(
            &b64.decode(e["annotations"][ANNOTATION].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(packet["kid"], KID);
        assert_eq!(packet["wrap_type"], "A256GCM");
        assert_eq!(
            b64.decode(packet["iv"].as_str().unwrap()).unwrap().len(),
            12
        );
        // The ciphertext is not the plaintext layer.
        let ct = fs::read(blob(&enc, e["digest"].as_str().unwrap())).unwrap();
        let pt = fs::read(blob(&plain, p["digest"].as_str().unwrap())).unwrap();
        assert_eq!(ct.len(), pt.len());
        assert_ne!(ct, pt);
    }

    // The guest image code pulls it from a loopback registry and decrypts it with the KEK
    // a KBS would return for kbs:///default/key/k1.
    let registry = Registry::start();
    let push = skopeo_copy(
        &skopeo,
        &config,
        &[],
        &format!("oci:{}:busybox", enc.display()),
        &format!("docker://{}/enc/busybox:v1", registry.host),
    );
    assert!(
        push.status.success(),
        "skopeo push: {}",
        String::from_utf8_lossy(&push.stderr)
    );
    let reference = format!("{}/enc/busybox:v1", registry.host);
    let rootfs = w.join("rootfs");
    pull_with_kek(&registry, &reference, &rootfs, &kek).unwrap();
    assert!(
        fs::read(rootfs.join("bin/busybox")).unwrap() == busybox,
        "busybox differs"
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read(rootfs.join("etc/passwd")).unwrap(),
        b"root:x:0:0:root:/root:/bin/sh\n"
    );

    // A wrong KEK fails cleanly and leaves nothing behind.
    let bad = w.join("bad-rootfs");
    let err = pull_with_kek(&registry, &reference, &bad, &[0x6cu8; 32]).unwrap_err();
    assert!(
        matches!(
            &err,
            ImageError::Decrypt {
                source: OcicryptError::NoMatchingKey(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(!bad.exists());

    // skopeo decrypts through our provider's local-KEK unwrap (`kek-file=` parameter): the
    // layers come back with the plaintext digests.
    let dec = w.join("dec");
    let key = vec![
        "--decryption-key".to_owned(),
        format!("provider:attestation-agent:kek-file={}", kek_file.display()),
    ];
    let out = skopeo_copy(
        &skopeo,
        &config,
        &key,
        &format!("oci:{}:busybox", enc.display()),
        &format!("oci:{}:busybox", dec.display()),
    );
    assert!(
        out.status.success(),
        "skopeo decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dec_manifest = manifest(&dec);
    for (p, d) in plain_layers
        .iter()
        .zip(dec_manifest["layers"].as_array().unwrap())
    {
        assert_eq!(d["digest"], p["digest"]);
        assert_eq!(d["mediaType"], p["mediaType"]);
    }
    let bundle = w.join("dec-bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:busybox", dec.display()))
        .arg(&bundle));
    assert!(fs::read(bundle.join("rootfs/bin/busybox")).unwrap() == busybox);

    // The same through `--kek-file` on the provider command line and a bare provider key.
    let config_flag = ocicrypt_config(w, &["--kek-file", kek_file.to_str().unwrap()]);
    let dec2 = w.join("dec2");
    let out = skopeo_copy(
        &skopeo,
        &config_flag,
        &[
            "--decryption-key".to_owned(),
            "provider:attestation-agent".to_owned(),
        ],
        &format!("oci:{}:busybox", enc.display()),
        &format!("oci:{}:busybox", dec2.display()),
    );
    assert!(
        out.status.success(),
        "skopeo decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(manifest(&dec2)["layers"], dec_manifest["layers"]);

    // A wrong local KEK makes skopeo fail, with our reason in its error.
    let wrong = w.join("wrong.bin");
    fs::write(&wrong, [0x6cu8; 32]).unwrap();
    let out = skopeo_copy(
        &skopeo,
        &config,
        &[
            "--decryption-key".to_owned(),
            format!("provider:attestation-agent:kek-file={}", wrong.display()),
        ],
        &format!("oci:{}:busybox", enc.display()),
        &format!("oci:{}:busybox", w.join("dec-wrong").display()),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not unwrap the layer key"), "{stderr}");
}

/// Run the provider with `input` on stdin; returns (success, stdout, stderr).
fn provider(input: &str, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(cocoon())
        .args(["image", "keyprovider"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wrap_input(param: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({
        "op": "keywrap",
        "keywrapparams": {
            "ec": {"Parameters": {"attestation-agent": [b64.encode(param)]}, "DecryptConfig": {"Parameters": {}}},
            "optsdata": b64.encode(br#"{"symkey":"AA==","digest":"sha256:00","cipheroptions":{}}"#)
        },
        "keyunwrapparams": {"dc": null, "annotation": null}
    })
    .to_string()
}

#[test]
fn bad_input_exits_non_zero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    fs::write(&kek, [1u8; 32]).unwrap();
    let short = dir.path().join("short");
    fs::write(&short, [1u8; 31]).unwrap();
    let k = kek.display();
    let cases = [
        (format!("keypath={k}"), "missing keyid"),
        (
            format!("keypath={k}::keyid=kbs:///a/b"),
            "is not a KBS resource URI",
        ),
        (
            format!("keypath={k}::keyid=kbs:///a/../c"),
            "is not a KBS resource URI",
        ),
        (
            format!("keypath={}::keyid={KID}", short.display()),
            "holds 31 bytes",
        ),
        (
            format!("keypath={}::keyid={KID}", dir.path().join("none").display()),
            "reading KEK file",
        ),
    ];
    for (param, why) in cases {
        let (ok, stdout, stderr) = provider(&wrap_input(&param), &[]);
        assert!(!ok, "{param} was accepted");
        assert!(stdout.is_empty(), "{param}: stdout {stdout:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{param}: {stderr}");
        assert!(lines[0].contains(why), "{param}: {stderr}");
    }
    let (ok, _, stderr) = provider(r#"{"op":"keyrotate"}"#, &[]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown key provider op \"keyrotate\""),
        "{stderr}"
    );

    // A good request succeeds and prints only the JSON answer.
    let (ok, stdout, stderr) = provider(&wrap_input(&format!("keypath={k}::keyid={KID}")), &[]);
    assert!(ok, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(answer["keywrapresults"]["annotation"].is_string());

    // keyunwrap without any local KEK is refused (the guest unwraps through the KBS).
    let unwrap = serde_json::json!({
        "op": "keyunwrap",
        "keyunwrapparams": {"dc": {"Parameters": {}}, "annotation": answer["keywrapresults"]["annotation"]}
    })
    .to_string();
    let (ok, _, stderr) = provider(&unwrap, &[]);
    assert!(!ok);
    assert!(stderr.contains("no local KEK"), "{stderr}");
    let (ok, stdout, stderr) = provider(&unwrap, &["--kek-file", kek.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("keyunwrapresults"));
}
