//! `cocoon demo`: the product's main job, end to end on this machine.
//!
//! 1. builds a small busybox image holding a message, and encrypts it with the real
//!    `skopeo` through `cocoon image keyprovider` (ocicrypt, key id `kbs:///default/key/...`);
//! 2. pushes it to Debian's `docker-registry` on 127.0.0.1;
//! 3. starts `cocoon-kbs` on 127.0.0.1 holding the layer key-encryption key, with the
//!    coco-dev resource policy (sample evidence accepted: there is no TEE here);
//! 4. starts a private containerd with `containerd-shim-cocoon-v2` on its PATH and a
//!    `kata-qemu-coco-dev` class whose guest reaches only those two loopback ports
//!    (QEMU user networking, `restrict=on`, `guestfwd`);
//! 5. `ctr run --runtime io.containerd.cocoon.v2 --annotation io.cocoon.image=REF ...`: the
//!    shim boots the VM, the agent attests to the KBS, receives the key, pulls, decrypts and
//!    unpacks the image inside the guest and runs it; its output is checked;
//! 6. checks that the host side never pulled the image (containerd's content store holds
//!    no blob: the host saw neither the plaintext nor the key), then tears everything down
//!    and checks that no process, mount or file is left.
//!
//! `ctr` is given an empty `--rootfs` directory: the host rootfs is never used (guest pull).

use std::io::{BufRead, BufReader, Read as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the guest sees the registry and the KBS (QEMU user network, forwarded to loopback).
const REGISTRY_IN_GUEST: &str = "10.0.2.100:5000";
const KBS_IN_GUEST: &str = "10.0.2.101:8080";
/// The KBS resource holding the layer key-encryption key.
const KEY_PATH: &str = "default/key/cocoon-demo";
const RUNTIME: &str = "io.containerd.cocoon.v2";
const CONTAINER_ID: &str = "cocoon-demo";
/// Resource policy of the coco-dev KBS (releases keys to sample evidence).
const COCO_DEV_POLICY: &str = include_str!("../../../attestation/kbs/config/policy-coco-dev.rego");

/// Arguments of `cocoon demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Guest image directory (from `scripts/build-guest.sh`).
    #[arg(long, default_value = "build/guest")]
    pub guest_dir: PathBuf,
    /// Keep the work directory (logs, configs) after the run, for inspection.
    #[arg(long)]
    pub keep: bool,
    /// Give up when the container has not finished after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// Runs the demo; prints each step and the container's output.
pub fn run(a: &DemoArgs) -> Result<()> {
    let tools = Tools::find(&a.guest_dir)?;
    let work = tempfile::Builder::new()
        .prefix("cocoon-demo-")
        .tempdir()
        .context("creating the work directory")?;
    let mut demo = Demo {
        work: work.path().to_path_buf(),
        tools,
        children: Vec::new(),
    };
    let result = demo.run(a);
    let cleanup = demo.teardown();
    if a.keep {
        let kept = work.keep();
        eprintln!("demo: work directory kept at {}", kept.display());
    } else {
        work.close().context("removing the work directory")?;
    }
    result.and(cleanup)
}

/// The external programs the demo drives.
struct Tools {
    cocoon: PathBuf,
    shim: PathBuf,
    kbs: PathBuf,
    skopeo: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Tools {
    fn find(guest_dir: &Path) -> Result<Tools> {
        let cocoon = std::env::current_exe().context("locating the cocoon binary")?;
        let bin_dir = cocoon.parent().map(Path::to_path_buf).unwrap_or_default();
        let beside = |name: &str| -> Result<PathBuf> {
            let p = bin_dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                bail!(
                    "{} not found beside {} (build the workspace: cargo build --workspace --bins)",
                    name,
                    cocoon.display()
                )
            }
        };
        for tool in ["containerd", "ctr", "docker-registry", "umoci", "busybox"] {
            which(tool)
                .with_context(|| format!("{tool} is not installed (run ./scripts/setup.sh)"))?;
        }
        let skopeo = PathBuf::from("/opt/skopeo-trixie/skopeo");
        if !skopeo.is_file() {
            bail!(
                "{} (a skopeo whose ocicrypt has key providers) is missing: run ./scripts/setup.sh",
                skopeo.display()
            );
        }
        let kernel = guest_dir.join("vmlinux");
        let initrd = ["initrd.cpio", "initrd.img"]
            .iter()
            .map(|n| guest_dir.join(n))
            .find(|p| p.is_file());
        let Some(initrd) = initrd.filter(|_| kernel.is_file()) else {
            bail!(
                "no guest image in {} (vmlinux + initrd): run ./scripts/build-guest.sh",
                guest_dir.display()
            );
        };
        Ok(Tools {
            shim: beside("containerd-shim-cocoon-v2")?,
            kbs: beside("cocoon-kbs")?,
            cocoon: cocoon.clone(),
            skopeo,
            kernel: kernel.canonicalize()?,
            initrd: initrd.canonicalize()?,
        })
    }
}

struct Demo {
    work: PathBuf,
    tools: Tools,
    /// Background services (registry, KBS, containerd), killed at teardown.
    children: Vec<(&'static str, Child)>,
}

impl Demo {
    fn run(&mut self, a: &DemoArgs) -> Result<()> {
        let nonce = hex_nonce()?;
        let message =
            format!("Hello from an encrypted image, decrypted inside the guest ({nonce})");

        step(
            1,
            "building and encrypting the image (umoci, skopeo + cocoon image keyprovider)",
        );
        let kek = random_bytes::<32>()?;
        let layout = self.build_image(&message)?;
        let registry = self.start_registry()?;
        let kek_file = self.work.join("kek.bin");
        write_private(&kek_file, &kek)?;
        let reference = format!("{registry}/cocoon-demo:encrypted");
        self.encrypt_and_push(&layout, &kek_file, &reference)?;
        std::fs::remove_file(&kek_file).context("removing the local KEK copy")?;
        println!("    pushed docker://{reference} (layers: +encrypted, key id kbs:///{KEY_PATH})");

        step(
            2,
            "starting cocoon-kbs on loopback (coco-dev resource policy)",
        );
        let kbs = self.start_kbs(&kek)?;
        println!("    {kbs} holds {KEY_PATH}");

        step(3, "starting containerd with containerd-shim-cocoon-v2");
        let registry_port = port_of(&registry)?;
        let kbs_port = port_of(kbs.trim_start_matches("http://"))?;
        self.start_containerd(registry_port, kbs_port)?;

        step(
            4,
            "ctr run: VM boot, attestation, key release, in-guest pull + decrypt, run",
        );
        let guest_ref = format!("{REGISTRY_IN_GUEST}/cocoon-demo:encrypted");
        let rootfs = self.work.join("empty-rootfs");
        std::fs::create_dir_all(&rootfs)?;
        let started = Instant::now();
        let out = self
            .ctr_run(&guest_ref, &rootfs, Duration::from_secs(a.timeout_secs))
            .map_err(|e| e.context(format!("containerd log (end): {}", self.log_tail(40))))?;
        let elapsed = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            println!("    | {line}");
        }
        if !out.status.success() || !stdout.contains(&message) {
            bail!(
                "the container did not print the image's message ({}); stderr: {}\ncontainerd log (end): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail(40)
            );
        }
        println!("    ok in {:.1} s", elapsed.as_secs_f64());

        step(5, "checking what the host saw");
        let blobs = count_files(
            &self
                .work
                .join("containerd/root/io.containerd.content.v1.content"),
        );
        if blobs != 0 {
            bail!("containerd's content store holds {blobs} blob(s): the host pulled the image");
        }
        println!("    containerd's content store is empty: the image was pulled only in the guest");
        Ok(())
    }

    fn build_image(&self, message: &str) -> Result<PathBuf> {
        let layout = self.work.join("oci");
        let bundle = self.work.join("bundle");
        let image = format!("{}:demo", layout.display());
        run_ok(
            Command::new("umoci")
                .args(["init", "--layout"])
                .arg(&layout),
        )?;
        run_ok(Command::new("umoci").args(["new", "--image", &image]))?;
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle),
        )?;
        let root = bundle.join("rootfs");
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("secret"))?;
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("copying busybox")?;
        for applet in ["sh", "cat", "echo", "ls"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        std::fs::write(root.join("secret/message.txt"), format!("{message}\n"))?;
        run_ok(
            Command::new("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle),
        )?;
        run_ok(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.cmd",
            "/bin/cat",
            "--config.cmd",
            "/secret/message.txt",
        ]))?;
        std::fs::remove_dir_all(&bundle)?;
        Ok(layout)
    }

    fn start_registry(&mut self) -> Result<String> {
        let port = free_port()?;
        let storage = self.work.join("registry");
        let config = self.work.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log = self.log_file("registry.log")?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        self.children.push(("docker-registry", child));
        let addr = format!("127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "docker-registry to listen", || {
            std::net::TcpStream::connect(&addr).is_ok()
        })?;
        Ok(addr)
    }

    fn encrypt_and_push(&self, layout: &Path, kek_file: &Path, reference: &str) -> Result<()> {
        let ocicrypt = self.work.join("ocicrypt.json");
        let config = serde_json::json!({"key-providers": {"attestation-agent": {"cmd": {
            "path": self.tools.cocoon, "args": ["image", "keyprovider"]
        }}}});
        std::fs::write(&ocicrypt, config.to_string())?;
        run_ok(
            Command::new(&self.tools.skopeo)
                .env("OCICRYPT_KEYPROVIDER_CONFIG", &ocicrypt)
                .args([
                    "copy",
                    "--quiet",
                    "--insecure-policy",
                    "--dest-tls-verify=false",
                ])
                .arg("--encryption-key")
                .arg(format!(
                    "provider:attestation-agent:keypath={}::keyid=kbs:///{KEY_PATH}",
                    kek_file.display()
                ))
                .arg(format!("oci:{}:demo", layout.display()))
                .arg(format!("docker://{reference}")),
        )
        .map(drop)
    }

    /// Starts `cocoon-kbs` on a free loopback port; returns its URL.
    fn start_kbs(&mut self, kek: &[u8; 32]) -> Result<String> {
        let dir = self.work.join("kbs");
        let key = dir.join("resources").join(KEY_PATH);
        std::fs::create_dir_all(key.parent().unwrap_or(&dir))?;
        write_private(&key, kek)?;
        std::fs::write(dir.join("policy-coco-dev.rego"), COCO_DEV_POLICY)?;
        let port = free_port()?;
        let config = dir.join("kbs.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ninsecure_http = true\nresource_dir = \"resources\"\n\
                 resource_policy_file = \"policy-coco-dev.rego\"\nallow_sample = true\n"
            ),
        )?;
        let log = self.log_file("kbs.log")?;
        let child = Command::new(&self.tools.kbs)
            .arg("--config")
            .arg(&config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting cocoon-kbs")?;
        self.children.push(("cocoon-kbs", child));
        let addr = format!("127.0.0.1:{port}");
        wait_until(Duration::from_secs(20), "cocoon-kbs to listen", || {
            std::net::TcpStream::connect(&addr).is_ok()
        })
        .with_context(|| format!("see {}", self.work.join("kbs.log").display()))?;
        Ok(format!("http://{addr}"))
    }

    fn start_containerd(&mut self, registry_port: u16, kbs_port: u16) -> Result<()> {
        let w = &self.work;
        let bin = w.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::os::unix::fs::symlink(&self.tools.shim, bin.join("containerd-shim-cocoon-v2"))?;
        let class = w.join("kata-qemu-coco-dev.toml");
        std::fs::write(&class, self.class_config(registry_port, kbs_port))?;
        let root = w.join("containerd");
        std::fs::write(
            w.join("containerd.toml"),
            format!(
                "version = 2\nroot = \"{r}/root\"\nstate = \"{r}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{r}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{r}/containerd.sock.ttrpc\"\n\
                 [debug]\n  address = \"{r}/debug.sock\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{r}/opt\"\n",
                r = root.display()
            ),
        )?;
        let log = self.log_file("containerd.log")?;
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(w.join("containerd.toml"))
            .env("PATH", path)
            .env("COCOON_CONFIG", &class)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        self.children.push(("containerd", child));
        wait_until(Duration::from_secs(30), "containerd to answer", || {
            self.ctr()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    }

    /// The shipped coco-dev class with this guest image, a private state dir, in-guest pull
    /// and the two loopback forwards.
    fn class_config(&self, registry_port: u16, kbs_port: u16) -> String {
        let shipped = include_str!("../../config/configs/configuration-qemu-coco-dev.toml");
        let params = format!(
            "agent.guest_pull=true agent.aa_kbc_params=cc_kbc::http://{KBS_IN_GUEST} \
             agent.tee_class=coco-dev agent.insecure_registries={REGISTRY_IN_GUEST}"
        );
        let mut text: String = shipped
            .lines()
            .map(|l| {
                if l.starts_with("kernel =") {
                    format!("kernel = {:?}", self.tools.kernel.display().to_string())
                } else if l.starts_with("initrd =") {
                    format!("initrd = {:?}", self.tools.initrd.display().to_string())
                } else if l.starts_with("state_dir =") {
                    format!(
                        "state_dir = {:?}",
                        self.work.join("vm").display().to_string()
                    )
                } else if l.starts_with("kernel_params =") {
                    format!("kernel_params = {params:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (reg_addr, reg_port) = REGISTRY_IN_GUEST.split_once(':').unwrap_or_default();
        let (kbs_addr, kbs_guest_port) = KBS_IN_GUEST.split_once(':').unwrap_or_default();
        text.push_str(&format!(
            "\n\n[network]\nforwards = [\n  {{ guest = \"{reg_addr}:{reg_port}\", host = \"127.0.0.1:{registry_port}\" }},\n  \
             {{ guest = \"{kbs_addr}:{kbs_guest_port}\", host = \"127.0.0.1:{kbs_port}\" }},\n]\n"
        ));
        text
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.work.join("containerd/containerd.sock"))
            .stdin(Stdio::null());
        c
    }

    fn ctr_run(&self, image: &str, rootfs: &Path, timeout: Duration) -> Result<Output> {
        let mut child = self
            .ctr()
            .args([
                "run",
                "--rm",
                "--runtime",
                RUNTIME,
                "--rootfs",
                "--annotation",
            ])
            .arg(format!("io.cocoon.image={image}"))
            .arg(rootfs)
            .arg(CONTAINER_ID)
            .args(["/bin/cat", "/secret/message.txt"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running ctr")?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let readers = std::thread::spawn(move || {
            let mut o = Vec::new();
            let mut e = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut o);
            }
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut e);
            }
            (o, e)
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ctr run did not finish within {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (stdout, stderr) = readers
            .join()
            .map_err(|_| anyhow::anyhow!("reading ctr's output failed"))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// The last `lines` lines of containerd's log (the shim logs there too), for errors: the
    /// work directory is gone once the demo returns.
    fn log_tail(&self, lines: usize) -> String {
        let path = self.work.join("containerd.log");
        let text = std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("({}: {e})", path.display()));
        let all: Vec<&str> = text.lines().collect();
        format!("\n{}", all[all.len().saturating_sub(lines)..].join("\n"))
    }

    fn log_file(&self, name: &str) -> Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join(name))
            .with_context(|| format!("opening {name}"))
    }

    /// Stops the container, containerd and the services, then checks that no process still
    /// refers to the work directory and nothing is mounted under it.
    fn teardown(&mut self) -> Result<()> {
        if self.work.join("containerd/containerd.sock").exists() {
            let _ = self
                .ctr()
                .args(["task", "kill", "-s", "SIGKILL", CONTAINER_ID])
                .output();
            let _ = self.ctr().args(["task", "delete", CONTAINER_ID]).output();
            let _ = self.ctr().args(["container", "rm", CONTAINER_ID]).output();
        }
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        // Anything still running from the work directory (shim, QEMU, vsock backend) was
        // orphaned by a failure above: kill it, then check.
        let needle = self.work.display().to_string();
        let leftovers = processes_mentioning(&needle);
        for pid in &leftovers {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        unmount_under(&self.work);
        if !leftovers.is_empty() {
            bail!("processes were left behind and had to be killed: {leftovers:?}");
        }
        Ok(())
    }
}

fn step(n: u32, what: &str) {
    println!("[{n}/5] {what}");
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn port_of(addr: &str) -> Result<u16> {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {addr}"))
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| anyhow::anyhow!("random bytes: {e}"))?;
    Ok(b)
}

fn hex_nonce() -> Result<String> {
    Ok(random_bytes::<6>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// Pids (not ours) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Lazily unmounts whatever is still mounted under `dir` (deepest first).
fn unmount_under(dir: &Path) {
    let Ok(f) = std::fs::File::open("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", &p]).status();
    }
}
