//! A private containerd (Debian's 1.6, CRI disabled) driving `containerd-shim-cocoon-v2`
//! through `ctr`: its own root, state and socket, the shim on containerd's PATH, the shipped
//! coco-dev runtime class pointed at the test guest (optionally with extra kernel parameters
//! and TOML, e.g. a `[network]` section), a busybox image imported (built offline with umoci
//! and skopeo), and the leak check run after every scenario. Shared by the tests that run
//! pods through containerd (`shim_containerd.rs`, `initdata_pod.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cocoon_tests::{
    guest_initrd, processes_mentioning, run_ok as run, shim_binary, workspace_root,
};

/// The image imported into containerd.
pub const IMAGE: &str = "docker.io/cocoon/busybox:test";
/// The runtime name `ctr --runtime` takes for the shim.
pub const RUNTIME: &str = "io.containerd.cocoon.v2";

/// A containerd process with its own directories, stopped on drop.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    shim_sockets_before: Vec<String>,
}

/// Names of the shim sockets containerd keeps in `/run/containerd/s`.
fn shim_sockets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/run/containerd/s")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The command line of `pid`, spaces for NULs.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

/// A command's status and both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Containerd {
    /// Starts containerd with the shipped coco-dev class as is (kernel, initrd and state
    /// directory pointed at the test's) and imports [`IMAGE`].
    pub fn start(guest: &Path) -> Containerd {
        Self::start_with_class(guest, "", "")
    }

    /// Like [`Containerd::start`], with `kernel_params` as the class's `kernel_params`
    /// (when not empty) and `extra_toml` appended to the class file (e.g. `[network]`).
    pub fn start_with_class(guest: &Path, kernel_params: &str, extra_toml: &str) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("cocoon-shim-")
            .tempdir()
            .unwrap();
        let w = dir.path();
        let bin = w.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(shim_binary(), bin.join("containerd-shim-cocoon-v2")).unwrap();
        // Runtime class configuration: the shipped coco-dev file with this guest and state dir.
        let shipped = std::fs::read_to_string(
            workspace_root().join("runtime/config/configs/configuration-qemu-coco-dev.toml"),
        )
        .unwrap();
        let cfg: String = shipped
            .lines()
            .map(|l| {
                if l.starts_with("kernel =") {
                    format!("kernel = {:?}", guest.join("vmlinux").display().to_string())
                } else if l.starts_with("initrd =") {
                    format!("initrd = {:?}", guest_initrd(guest).display().to_string())
                } else if l.starts_with("state_dir =") {
                    format!("state_dir = {:?}", w.join("vmstate").display().to_string())
                } else if l.starts_with("kernel_params =") && !kernel_params.is_empty() {
                    format!("kernel_params = {kernel_params:?}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(w.join("coco-dev.toml"), format!("{cfg}\n{extra_toml}")).unwrap();
        let toml = format!(
            r#"version = 2
root = "{w}/root"
state = "{w}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{w}/containerd.sock"
[ttrpc]
  address = "{w}/containerd.sock.ttrpc"
[debug]
  address = "{w}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
"#,
            w = w.display()
        );
        std::fs::write(w.join("config.toml"), toml).unwrap();
        let mut c = Containerd {
            dir,
            child: None,
            shim_sockets_before: shim_sockets(),
        };
        c.spawn();
        c.import_busybox();
        c
    }

    /// Starts the containerd process and waits until it answers.
    pub fn spawn(&mut self) {
        let w = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.join("containerd.log"))
            .unwrap();
        let path = format!(
            "{}:{}",
            w.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let _ = std::fs::remove_file(self.sock());
        let child = Command::new("containerd")
            .arg("--config")
            .arg(w.join("config.toml"))
            .env("PATH", path)
            .env("COCOON_CONFIG", w.join("coco-dev.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while self
            .ctr()
            .arg("version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills containerd (SIGKILL, as a crash would) and starts it again on the same state.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        self.spawn();
    }

    /// The work directory (containerd's root and state, the class file, `vmstate/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's pid.
    pub fn containerd_pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// containerd's gRPC socket.
    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// `ctr --address <socket>`, stdin from /dev/null.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.sock());
        c.stdin(Stdio::null());
        c
    }

    /// `ctr ...` under a pseudo-terminal (`script`), for `-t`; exit status propagated.
    /// The terminal is 33 rows by 77 columns: ctr passes that size on with ResizePty.
    pub fn ctr_tty(&self, args: &str) -> Output {
        let cmd = format!(
            "stty rows 33 cols 77; ctr --address {} {args}",
            self.sock().display()
        );
        Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Builds the busybox image offline and imports it as [`IMAGE`].
    pub fn import_busybox(&self) {
        let img = self.dir.path().join("img");
        std::fs::create_dir_all(&img).unwrap();
        let sh = format!(
            "set -e; cd {img}; umoci init --layout oci; umoci new --image oci:base; \
             umoci unpack --image oci:base bundle >/dev/null; mkdir -p bundle/rootfs/bin; \
             cp /bin/busybox bundle/rootfs/bin/; for a in sh echo true false sleep cat ls; do ln -s busybox bundle/rootfs/bin/$a; done; \
             umoci repack --image oci:base bundle; umoci config --image oci:base --tag busybox --config.cmd /bin/sh; \
             skopeo copy oci:oci:busybox oci-archive:{img}/busybox.tar:{IMAGE}",
            img = img.display()
        );
        run(Command::new("sh").arg("-c").arg(sh));
        run(self
            .ctr()
            .args(["images", "import"])
            .arg(img.join("busybox.tar")));
    }

    /// containerd's log (the shim logs into it too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Pids of our processes whose command line contains `needle` (e.g. `qemu-system`).
    pub fn our_processes(&self, needle: &str) -> Vec<u32> {
        let w = self.dir.path().display().to_string();
        processes_mentioning(&w)
            .into_iter()
            .filter(|p| *p != self.containerd_pid() && cmdline(*p).contains(needle))
            .collect()
    }

    /// The status column of `ctr task ls` for `id` (None when not listed).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = run(self.ctr().args(["task", "ls"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(2).map(|s| s.to_string()))
    }

    /// Waits (up to 30 s) until `ctr task ls` shows `want` for `id`.
    pub fn wait_status(&self, id: &str, want: Option<&str>) {
        let start = Instant::now();
        loop {
            let got = self.task_status(id);
            if got.as_deref() == want {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "task {id}: status {got:?}, want {want:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Entries of the task directories of namespace `default`: the bundles (state) and
    /// work dirs (root) containerd made for the shim, where the shim writes its crash-cleanup
    /// record.
    pub fn task_dirs(&self) -> Vec<PathBuf> {
        ["state", "root"]
            .iter()
            .flat_map(|d| {
                let dir = self
                    .dir
                    .path()
                    .join(d)
                    .join("io.containerd.runtime.v2.task/default");
                std::fs::read_dir(dir)
                    .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                    .unwrap_or_else(|_| Vec::new())
            })
            .collect()
    }

    /// Asserts nothing of ours is left: no process mentioning the work dir (QEMU, backend,
    /// shim), no mount under it, no VM state dir (nor the state root's leftovers), no task
    /// bundle or work dir, no new shim socket.
    pub fn assert_clean(&self, what: &str) {
        let w = self.dir.path().display().to_string();
        let start = Instant::now();
        loop {
            let procs: Vec<u32> = processes_mentioning(&w)
                .into_iter()
                .filter(|p| *p != self.containerd_pid())
                .collect();
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let mounted: Vec<&str> = mounts.lines().filter(|l| l.contains(&w)).collect();
            let vmstate: Vec<_> = std::fs::read_dir(self.dir.path().join("vmstate"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            let new_sockets: Vec<String> = shim_sockets()
                .into_iter()
                .filter(|s| !self.shim_sockets_before.contains(s))
                .collect();
            let task_dirs = self.task_dirs();
            if procs.is_empty()
                && mounted.is_empty()
                && vmstate.is_empty()
                && new_sockets.is_empty()
                && task_dirs.is_empty()
            {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let procs: Vec<String> = procs.iter().map(|p| cmdline(*p)).collect();
                panic!(
                    "{what}: left behind: processes {procs:?}, mounts {mounted:?}, VM state {vmstate:?}, task dirs {task_dirs:?}, shim sockets {new_sockets:?}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ctr run --rm --runtime <shim> <extra> IMAGE <id> <args>`, waited for.
pub fn ctr_run(c: &Containerd, id: &str, extra: &[&str], args: &[&str]) -> Output {
    let mut cmd = c.ctr();
    cmd.args(["run", "--rm", "--runtime", RUNTIME])
        .args(extra)
        .arg(IMAGE)
        .arg(id)
        .args(args);
    cmd.output().unwrap()
}
