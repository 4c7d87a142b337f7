//! Test harness: Debian's `docker-registry` on 127.0.0.1, images built offline from
//! `/bin/busybox` with `umoci`, pushed and encrypted with `skopeo`, and tree comparison.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A `docker-registry serve` on a free loopback port, killed on drop. Its access log (one
/// line per request) is written to `access_log`.
pub struct Registry {
    child: Child,
    pub host: String,
    pub storage: PathBuf,
    pub access_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Self {
        Self::start_with_auth("")
    }

    /// A registry whose config gets `auth_yaml` (an `auth:` section, or nothing).
    pub fn start_with_auth(auth_yaml: &str) -> Self {
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
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: false}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: {host}}}\n{auth_yaml}",
                storage.display()
            ),
        )
        .unwrap();
        // The access log (Apache combined format) goes to stdout, the application log to
        // stderr.
        let access_log = dir.path().join("access.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(fs::File::create(&access_log).unwrap())
            .stderr(fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let reg = Self {
            child,
            host,
            storage,
            access_log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let answer = reg.get("/v2/");
            // 401: a registry with authentication is up, too.
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.1 401") {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = fs::read_to_string(reg._dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not come up on {}: {log}", reg.host);
    }

    /// How many `GET` requests for blob `digest` of `repository` the access log records.
    pub fn blob_gets(&self, repository: &str, digest: &str) -> usize {
        let needle = format!("\"GET /v2/{repository}/blobs/{digest} ");
        fs::read_to_string(&self.access_log)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// The application log (stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> String {
        let Ok(mut s) = TcpStream::connect(&self.host) else {
            return String::new();
        };
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Where the registry stores blob `sha256:<hex>`.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }

    /// Push an OCI layout tag with skopeo to `repo` (`name:tag`); returns `host/name`.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, extra: &[&str]) -> String {
        let dest = format!("docker://{}/{repo}", self.host);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra);
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(&dest);
        run(&mut cmd);
        // host/repository, without the tag
        format!("{}/{}", self.host, repo.split(':').next().unwrap())
    }
}

impl Registry {
    /// One HTTP/1.1 request to the registry; returns (status, head, body).
    fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(&self.host).unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no HTTP head")
            + 4;
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head[9..12].parse().unwrap();
        (status, head, answer[split..].to_vec())
    }

    /// Push the only image of OCI `layout` as `repo:tag` through the registry API itself
    /// (one upload per blob, then the manifest), byte for byte: skopeo would compress
    /// uncompressed layers on the way. Returns `host/repo`.
    pub fn push_raw(&self, layout: &Path, repo: &str, tag: &str) -> String {
        let index = read_json(&layout.join("index.json"));
        let entry = &index["manifests"][0];
        let blob = |digest: &str| {
            fs::read(
                layout
                    .join("blobs/sha256")
                    .join(digest.strip_prefix("sha256:").unwrap()),
            )
            .unwrap()
        };
        let manifest_bytes = blob(entry["digest"].as_str().unwrap());
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in manifest["layers"].as_array().unwrap() {
            digests.push(layer["digest"].as_str().unwrap().to_owned());
        }
        for digest in digests {
            let (status, head, _) =
                self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
            assert_eq!(status, 202, "{head}");
            let location = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case("location"))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .expect("upload without Location");
            // Absolute (http://host/v2/...) or relative.
            let path = match location.find("/v2/") {
                Some(i) => location[i..].to_owned(),
                None => panic!("odd upload location {location}"),
            };
            let sep = if path.contains('?') { '&' } else { '?' };
            let (status, head, _) = self.request(
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                &blob(&digest),
            );
            assert_eq!(status, 201, "{head}");
        }
        let media_type = manifest["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json");
        let (status, head, body) = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            &manifest_bytes,
        );
        assert_eq!(status, 201, "{head}{}", String::from_utf8_lossy(&body));
        format!("{}/{repo}", self.host)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Build the multi-layer busybox test image in `work/oci` with tag `busybox`:
/// layer 1 /bin (busybox, symlinks, a hard link, a setuid file), layer 2 /etc (owned files),
/// layer 3 /opt, layer 4 a whiteout of /etc/removed, layer 5 an opaque /opt/dir.
pub fn build_busybox_image(work: &Path) -> PathBuf {
    let layout = work.join("oci");
    let img = format!("{}:busybox", layout.display());
    let src = work.join("src");
    let bin = src.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    fs::hard_link(bin.join("busybox"), bin.join("busybox-hard")).unwrap();
    fs::write(bin.join("suid-tool"), b"#!/bin/sh\necho suid\n").unwrap();
    fs::set_permissions(bin.join("suid-tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let etc = src.join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("passwd"),
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(etc.join("removed"), b"to be whited out").unwrap();
    fs::write(etc.join("app.conf"), b"owned by app").unwrap();
    std::os::unix::fs::chown(etc.join("app.conf"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(etc.join("app.conf"), fs::Permissions::from_mode(0o640)).unwrap();
    let opt = src.join("opt");
    fs::create_dir_all(opt.join("dir/sub")).unwrap();
    fs::write(opt.join("dir/old"), b"old").unwrap();
    fs::write(opt.join("dir/sub/old2"), b"old2").unwrap();
    fs::write(opt.join("keep"), vec![b'k'; 100_000]).unwrap();
    let newdir = src.join("newdir");
    fs::create_dir_all(&newdir).unwrap();
    fs::write(newdir.join("fresh"), b"fresh").unwrap();

    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &img]));
    run(Command::new("umoci")
        .args(["insert", "--image", &img])
        .arg(&bin)
        .arg("/bin"));
    run(Command::new("umoci")
        .args(["insert", "--image", &img])
        .arg(&etc)
        .arg("/etc"));
    run(Command::new("umoci")
        .args(["insert", "--image", &img])
        .arg(&opt)
        .arg("/opt"));
    run(Command::new("umoci").args(["insert", "--image", &img, "--whiteout", "/etc/removed"]));
    run(Command::new("umoci")
        .args(["insert", "--image", &img, "--opaque"])
        .arg(&newdir)
        .arg("/opt/dir"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/opt",
        "--config.user",
        "1000:1000",
    ]));
    run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
    layout
}

/// `umoci unpack` of a layout tag; returns the rootfs path.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle));
    bundle.join("rootfs")
}

/// Description of every path under `root` (not the root itself): kind, permission bits,
/// owner, content hash or link target, and the hard-link group.
pub fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                stack.push(path.clone());
                format!("dir {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid())
            } else {
                inodes.entry(m.ino()).or_default().push(rel.clone());
                format!(
                    "file {:o} {}:{} {}",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    sha256_hex(&fs::read(&path).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    for group in inodes.values().filter(|g| g.len() > 1) {
        let mut g = group.clone();
        g.sort();
        for p in &g {
            let d = out.get_mut(p).unwrap();
            d.push_str(&format!(" hardlinks={}", g.join(",")));
        }
    }
    out
}

/// Make an RSA or EC key pair with openssl; returns (private, public) PEM paths.
pub fn openssl_keypair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let mut keygen = Command::new("openssl");
    match kind {
        "rsa" => keygen.args(["genrsa", "-out"]).arg(&private).arg("2048"),
        "p256-sec1" => keygen
            .args(["ecparam", "-genkey", "-name", "prime256v1", "-out"])
            .arg(&private),
        curve => keygen
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
            .arg(format!("ec_paramgen_curve:{curve}"))
            .arg("-out")
            .arg(&private),
    };
    run(keygen.stderr(Stdio::null()));
    let algo = if kind == "rsa" { "rsa" } else { "ec" };
    run(Command::new("openssl")
        .args([algo, "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .stderr(Stdio::null()));
    (private, public)
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Write a blob into an OCI layout and return its descriptor digest.
pub fn write_blob(layout: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    fs::write(layout.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// Rewrite the manifest of the only image in `layout` with `edit`, updating index.json.
pub fn edit_manifest(layout: &Path, edit: impl FnOnce(&Path, &mut serde_json::Value)) {
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let path = layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let mut manifest = read_json(&path);
    edit(layout, &mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new_digest = write_blob(layout, &bytes);
    index["manifests"][0]["digest"] = new_digest.into();
    index["manifests"][0]["size"] = bytes.len().into();
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Copy an OCI layout directory.
pub fn copy_layout(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}
