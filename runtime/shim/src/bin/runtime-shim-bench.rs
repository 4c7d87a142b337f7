//! Shim benchmark: the shim's own cost against a bare sandbox boot measured in the same run.
//!
//! ```text
//! runtime-shim-bench --config CLASS.toml [--runs N]
//! ```
//! `CLASS.toml` is a runtime-class configuration whose kernel and initrd point at a guest
//! image (its `state_dir` is replaced by a scratch directory). Needs root, `containerd`,
//! `ctr`, `umoci`, `skopeo` and `containerd-shim-cocoon-v2` next to this binary.
//! Build both with the profile deploy/install.sh ships:
//! `cargo build --profile shim -p runtime-shim --bins && target/shim/runtime-shim-bench ...`.
//!
//! Figures (medians of N runs, alternating so both see the same machine load):
//! - reference: `Sandbox::boot` + `shutdown`, what `cocoon vm boot` does;
//! - `ctr run --rm ... true` through containerd and the shim;
//! - ratio and overhead of the second over the first (goal: overhead ≤ 10 %);
//! - RSS (smaps_rollup) of the shim serving one running pod (goal ≤ 8 MiB), as a ratio to
//!   the goal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_config::RuntimeClassConfig;
use runtime_qemu::{BootOptions, Sandbox};

const IMAGE: &str = "docker.io/cocoon/busybox:bench";
const RSS_GOAL_KIB: u64 = 8 * 1024;

type BenchResult<T> = Result<T, String>;

struct Args {
    config: PathBuf,
    runs: u32,
}

fn parse_args() -> BenchResult<Args> {
    let mut config = None;
    let mut runs = 3;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config = it.next().map(PathBuf::from),
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("usage: runtime-shim-bench --config CLASS.toml [--runs N]")?,
        runs,
    })
}

fn sh(cmd: &mut Command) -> BenchResult<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Bench {
    work: PathBuf,
    containerd: Option<Child>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut c) = self.containerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

impl Bench {
    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(self.work.join("containerd.sock"))
            .stdin(Stdio::null());
        c
    }

    fn start_containerd(&mut self, shim_dir: &Path, class: &Path) -> BenchResult<()> {
        let w = self.work.display();
        let toml = format!(
            "version = 2\nroot = \"{w}/root\"\nstate = \"{w}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{w}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{w}/containerd.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{w}/opt\"\n"
        );
        std::fs::write(self.work.join("config.toml"), toml).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(self.work.join("containerd.log")).map_err(|e| e.to_string())?;
        let path = format!(
            "{}:{}",
            shim_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.work.join("config.toml"))
            .env("PATH", path)
            .env("COCOON_CONFIG", class)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd: {e}"))?;
        self.containerd = Some(child);
        let start = Instant::now();
        while !self
            .ctr()
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if start.elapsed() > Duration::from_secs(20) {
                return Err("containerd did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn import_busybox(&self) -> BenchResult<()> {
        let img = self.work.join("img");
        std::fs::create_dir_all(&img).map_err(|e| e.to_string())?;
        let script = format!(
            "set -e; cd {img}; umoci init --layout oci; umoci new --image oci:base; \
             umoci unpack --image oci:base bundle >/dev/null; mkdir -p bundle/rootfs/bin; \
             cp /bin/busybox bundle/rootfs/bin/; for a in sh true sleep; do ln -s busybox bundle/rootfs/bin/$a; done; \
             umoci repack --image oci:base bundle; umoci config --image oci:base --tag busybox --config.cmd /bin/sh; \
             skopeo copy oci:oci:busybox oci-archive:{img}/busybox.tar:{IMAGE}",
            img = img.display()
        );
        sh(Command::new("sh").arg("-c").arg(script))?;
        sh(self
            .ctr()
            .args(["images", "import"])
            .arg(img.join("busybox.tar")))?;
        Ok(())
    }

    fn ctr_run(&self, id: &str, detach: bool, args: &[&str]) -> BenchResult<Duration> {
        let ann = format!("io.cocoon.image={IMAGE}");
        let t = Instant::now();
        sh(self
            .ctr()
            .arg("run")
            .arg(if detach { "-d" } else { "--rm" })
            .args([
                "--runtime",
                "io.containerd.cocoon.v2",
                "--annotation",
                &ann,
                IMAGE,
                id,
            ])
            .args(args))?;
        Ok(t.elapsed())
    }

    /// RSS (KiB) of the shim process serving this bench's containerd: the `Rss` of
    /// `/proc/PID/smaps_rollup` (a walk of its page tables). `VmRSS` in `/proc/PID/status`
    /// comes from per-thread counters that are folded in only every 64 page faults, so in a
    /// multi-threaded process it can lag by megabytes.
    fn shim_rss_kib(&self) -> BenchResult<u64> {
        let needle = self.work.display().to_string();
        for e in std::fs::read_dir("/proc")
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("containerd-shim-cocoon-v2") && cmd.contains(&needle) {
                let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                    .map_err(|e| e.to_string())?;
                return rollup
                    .lines()
                    .find_map(|l| l.strip_prefix("Rss:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .ok_or_else(|| "no Rss in smaps_rollup".to_string());
            }
        }
        Err("shim process not found".into())
    }
}

async fn reference_boot(cfg: &RuntimeClassConfig, n: u32, kvm: bool) -> BenchResult<Duration> {
    let t = Instant::now();
    let opts = BootOptions {
        id: format!("shim-bench-ref-{}-{n}", std::process::id()),
        ..Default::default()
    };
    let sandbox = Sandbox::boot(cfg, &opts, kvm)
        .await
        .map_err(|e| e.to_string())?;
    sandbox.shutdown().await.map_err(|e| e.to_string())?;
    Ok(t.elapsed())
}

async fn bench(args: Args) -> BenchResult<()> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let shim_dir = exe.parent().ok_or("no exe dir")?.to_path_buf();
    if !shim_dir.join("containerd-shim-cocoon-v2").is_file() {
        return Err(format!(
            "containerd-shim-cocoon-v2 not found next to {} (cargo build --profile shim -p runtime-shim --bins)",
            exe.display()
        ));
    }
    let work = std::env::temp_dir().join(format!("cocoon-shim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut b = Bench {
        work: work.clone(),
        containerd: None,
    };
    let mut cfg = RuntimeClassConfig::load(&args.config).map_err(|e| e.to_string())?;
    cfg.runtime.state_dir = work.join("vmstate");
    let class = work.join("class.toml");
    let text = toml::to_string(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(&class, text).map_err(|e| e.to_string())?;
    let kvm = runtime_qemu::host::kvm_usable();

    b.start_containerd(&shim_dir, &class)?;
    b.import_busybox()?;
    let (mut boots, mut runs) = (Vec::new(), Vec::new());
    for n in 0..args.runs {
        boots.push(reference_boot(&cfg, n, kvm).await?);
        runs.push(b.ctr_run(&format!("bench-{n}"), false, &["true"])?);
        eprintln!(
            "run {n}: reference boot {:?}, ctr run true {:?}",
            boots[boots.len() - 1],
            runs[runs.len() - 1]
        );
    }
    let boot = median(&mut boots);
    let run = median(&mut runs);

    b.ctr_run("bench-rss", true, &["sleep", "600"])?;
    std::thread::sleep(Duration::from_millis(500));
    let rss = b.shim_rss_kib()?;
    sh(b.ctr().args(["task", "kill", "-s", "SIGKILL", "bench-rss"]))?;
    let start = Instant::now();
    while b
        .ctr()
        .args(["task", "delete", "bench-rss"])
        .output()
        .is_ok_and(|o| {
            !o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not found")
        })
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = b.ctr().args(["container", "rm", "bench-rss"]).output();

    let ratio = run.as_secs_f64() / boot.as_secs_f64();
    println!(
        "runs: {} (medians), accel: {}",
        args.runs,
        if kvm { "kvm" } else { "tcg" }
    );
    println!(
        "reference sandbox boot+shutdown (cocoon vm boot): {:.0} ms",
        boot.as_secs_f64() * 1e3
    );
    println!(
        "ctr run --rm ... true through the shim:            {:.0} ms",
        run.as_secs_f64() * 1e3
    );
    println!(
        "ratio ctr-run / boot: {ratio:.3} (shim + containerd overhead {:+.1} %, goal <= 10 %)",
        (ratio - 1.0) * 100.0
    );
    println!(
        "shim RSS (smaps_rollup) with one running pod: {rss} KiB = {:.2} x the 8 MiB goal",
        rss as f64 / RSS_GOAL_KIB as f64
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime-shim-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
