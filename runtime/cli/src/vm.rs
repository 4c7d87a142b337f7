//! `cocoon vm boot`: boot a sandbox VM, wait for the agent, report timings, shut down.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use agent_protocol::types::{CheckRequest, GuestDetailsRequest};
use anyhow::{Context, Result, bail};
use runtime_qemu::bench::{bare_boot_time, median};
use runtime_qemu::sandbox::{BootOptions, Sandbox, resolve_accel, vm_spec};

use crate::classes::ClassArgs;

/// `cocoon vm ...`
#[derive(clap::Subcommand, Debug)]
pub enum VmCommand {
    /// Boot a sandbox VM, check the agent answers, print timings, shut it down.
    Boot(BootArgs),
}

/// Arguments of `cocoon vm boot`.
#[derive(clap::Args, Debug)]
pub struct BootArgs {
    #[command(flatten)]
    class: ClassArgs,
    /// Sandbox id (default: cocoon-boot-<pid>).
    #[arg(long)]
    id: Option<String>,
    /// Directory for sandbox state (default: the configuration's state_dir).
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    /// Benchmark: boot N times, and N bare boots of the same kernel whose /init powers off;
    /// print both medians and their ratio.
    #[arg(long, value_name = "N")]
    bench: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: VmCommand) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cmd {
        VmCommand::Boot(a) => rt.block_on(boot(a)),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn boot_once(
    a: &BootArgs,
    cfg: &runtime_config::RuntimeClassConfig,
    kvm: bool,
    n: u32,
) -> Result<serde_json::Value> {
    let opts = BootOptions {
        id: a
            .id
            .clone()
            .map(|i| if n > 0 { format!("{i}-{n}") } else { i })
            .unwrap_or_else(|| format!("cocoon-boot-{}-{n}", std::process::id())),
        state_dir: a.state_dir.clone(),
        ..Default::default()
    };
    let sandbox = Sandbox::boot(cfg, &opts, kvm).await?;
    let agent = sandbox.agent().with_timeout(Some(Duration::from_secs(10)));
    let details = agent
        .guest_details(GuestDetailsRequest {
            mem_block_size: true,
            ..Default::default()
        })
        .await;
    let version = agent.version(CheckRequest::default()).await;
    let t = sandbox.timings();
    let dir = sandbox.dir().to_path_buf();
    let (qemu_pid, backend_pid) = (sandbox.qemu_pid(), sandbox.backend_pid());
    let accel = sandbox.accel();
    let report = sandbox.shutdown().await?;
    // Nothing may be left behind.
    if dir.exists() {
        bail!("state directory {} was left behind", dir.display());
    }
    for pid in std::iter::once(qemu_pid).chain(backend_pid) {
        if Path::new(&format!("/proc/{pid}")).exists() {
            bail!("process {pid} is still running after shutdown");
        }
    }
    let details = details.context("GetGuestDetails")?;
    let version = version.context("Health.Version")?;
    Ok(serde_json::json!({
        "accel": format!("{accel:?}"),
        "qemu_start_ms": ms(t.qemu_start),
        "guest_kernel_ms": t.guest_kernel.map(ms),
        "agent_ready_ms": ms(t.agent_ready),
        "total_ms": ms(t.total),
        "agent_version": format!("{version:?}"),
        "guest_details": format!("{details:?}"),
        "shutdown": format!("{:?} ({}) in {:.0} ms", report.path, report.qemu_exit.unwrap_or_default(), ms(report.took)),
    }))
}

/// A minimal initrd whose `/init` (a busybox script) powers off at once: the reference boot.
fn write_poweroff_initrd(out: &Path, busybox: &Path) -> Result<()> {
    let mut cpio = runtime_guest::cpio::CpioArchive::new();
    cpio.add_dir("/bin", 0o755)?;
    cpio.add_file(
        "/bin/busybox",
        0o755,
        std::fs::read(busybox).with_context(|| busybox.display().to_string())?,
    )?;
    cpio.add_file(
        "/init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n".to_vec(),
    )?;
    std::fs::write(out, cpio.to_newc_bytes()?)?;
    Ok(())
}

async fn boot(a: BootArgs) -> Result<ExitCode> {
    let cfg = a.class.load()?;
    let kvm = runtime_qemu::host::kvm_usable();
    let Some(n) = a.bench else {
        let r = boot_once(&a, &cfg, kvm, 0).await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "Booted {} ({}):",
                cfg.runtime.class,
                r["accel"].as_str().unwrap_or("?")
            );
            println!(
                "  QEMU start      {:>8.0} ms",
                r["qemu_start_ms"].as_f64().unwrap_or(0.0)
            );
            match r["guest_kernel_ms"].as_f64() {
                Some(k) => println!("  kernel (uptime at agent start) {k:>8.0} ms"),
                None => println!("  kernel          (agent start marker not found on console)"),
            }
            println!(
                "  agent ready     {:>8.0} ms",
                r["agent_ready_ms"].as_f64().unwrap_or(0.0)
            );
            println!(
                "  total           {:>8.0} ms",
                r["total_ms"].as_f64().unwrap_or(0.0)
            );
            println!(
                "  agent           {}",
                r["agent_version"].as_str().unwrap_or("")
            );
            println!(
                "  guest details   {}",
                r["guest_details"].as_str().unwrap_or("")
            );
            println!("  shutdown        {}", r["shutdown"].as_str().unwrap_or(""));
        }
        return Ok(ExitCode::SUCCESS);
    };
    if n == 0 {
        bail!("--bench needs N >= 1");
    }
    let work = tempfile::Builder::new().prefix("cocoon-bench-").tempdir()?;
    let bare_initrd = work.path().join("bare-initrd.img");
    write_poweroff_initrd(&bare_initrd, Path::new("/bin/busybox"))
        .context("building the bare-boot initrd (needs busybox-static at /bin/busybox)")?;
    let accel = resolve_accel(&cfg, kvm)?;
    let template = vm_spec(
        &cfg,
        &BootOptions {
            id: "bench".into(),
            ..Default::default()
        },
        work.path(),
        accel,
        runtime_qemu::AgentDevice::None,
    );
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    // Interleave so machine load drifts affect both series alike.
    for i in 0..n {
        let r = boot_once(&a, &cfg, kvm, i + 1).await?;
        ours.push(Duration::from_secs_f64(
            r["agent_ready_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        ));
        bare.push(
            bare_boot_time(
                &template,
                &bare_initrd,
                work.path(),
                Duration::from_secs(120),
            )
            .await?,
        );
        eprintln!(
            "run {}: agent ready {:.0} ms, bare boot {:.0} ms",
            i + 1,
            ms(ours[i as usize]),
            ms(bare[i as usize])
        );
    }
    let (Some(mo), Some(mb)) = (median(&ours), median(&bare)) else {
        bail!("no samples")
    };
    let ratio = mo.as_secs_f64() / mb.as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"runs": n, "agent_ready_median_ms": ms(mo), "bare_boot_median_ms": ms(mb), "ratio": ratio})
        );
    } else {
        println!("runs: {n}");
        println!("median time to agent ready:             {:>8.0} ms", ms(mo));
        println!(
            "median bare QEMU boot (init powers off): {:>8.0} ms",
            ms(mb)
        );
        println!("ratio (goal <= 1.10):                    {ratio:>8.3}");
    }
    Ok(ExitCode::SUCCESS)
}
