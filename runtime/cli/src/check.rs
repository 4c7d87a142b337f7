//! `cocoon check`: host capabilities and a verdict per runtime class.

use std::process::ExitCode;

use anyhow::Result;
use runtime_config::KNOWN_CLASSES;

use crate::classes::ClassArgs;

/// Arguments of `cocoon check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    class: ClassArgs,
    /// Check every known class (exit status still follows --class).
    #[arg(long)]
    all: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: &CheckArgs) -> Result<ExitCode> {
    let cfg = a.class.load()?;
    let host = runtime_qemu::host::probe_host(&cfg.hypervisor.qemu.path);
    let mut verdicts = vec![runtime_qemu::host::judge_class(&cfg, &host)];
    if a.all {
        for (name, _) in KNOWN_CLASSES
            .iter()
            .filter(|(n, _)| *n != cfg.runtime.class)
        {
            let mut other = a.class.clone();
            other.class = name.to_string();
            other.config = None;
            match other.load() {
                Ok(c) => verdicts.push(runtime_qemu::host::judge_class(&c, &host)),
                Err(e) => eprintln!("cocoon: {name}: {e:#}"),
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"host": host, "classes": verdicts}))?
        );
    } else {
        println!("Host");
        println!("  KVM: {}", host.kvm_reason);
        if let Some(v) = host.kvm_api_version {
            println!("  KVM API version: {v}");
        }
        println!(
            "  /dev/vhost-vsock: {}",
            if host.vhost_vsock {
                "present"
            } else {
                "absent"
            }
        );
        println!(
            "  QEMU: {}",
            host.qemu_version.as_deref().unwrap_or("not found")
        );
        for v in &verdicts {
            println!();
            println!(
                "{}: {}",
                v.class,
                if v.can_run { "CAN run" } else { "CANNOT run" }
            );
            for r in &v.requirements {
                println!(
                    "  [{}] {}: {}",
                    if r.ok { "ok" } else { "!!" },
                    r.what,
                    r.detail
                );
            }
        }
    }
    Ok(if verdicts[0].can_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
