//! `cocoon guest build|show`: the reproducible guest image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use runtime_guest::{GuestBuildSpec, build_guest, default_cache_dir, load_manifest};
use runtime_qemu::sandbox::{host_tsc_khz, kernel_cmdline, resolve_accel};

use crate::classes::ClassArgs;

/// `cocoon guest ...`
#[derive(clap::Subcommand, Debug)]
pub enum GuestCommand {
    /// Build kernel, modules and initramfs (with the agent as /init) into a directory.
    Build(BuildArgs),
    /// Print the manifest of a built guest after re-checking its digests.
    Show {
        /// Guest directory.
        dir: PathBuf,
    },
}

/// Arguments of `cocoon guest build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The agent binary (static) to install as /init.
    #[arg(long)]
    agent: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "build/guest")]
    out: PathBuf,
    /// Download cache for the kernel package.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Runtime class whose kernel command line is recorded in the manifest.
    #[command(flatten)]
    class: ClassArgs,
}

pub fn run(cmd: GuestCommand) -> Result<ExitCode> {
    match cmd {
        GuestCommand::Build(a) => {
            let mut class = a.class.clone();
            class.guest_dir = None; // the configured paths need not exist yet
            let cfg = class.load()?;
            let accel = resolve_accel(&cfg, runtime_qemu::host::kvm_usable())?;
            let cmdline = kernel_cmdline(&cfg, accel, host_tsc_khz());
            let spec = GuestBuildSpec::new(
                a.cache.clone().unwrap_or_else(default_cache_dir),
                a.out.clone(),
                a.agent.clone(),
                cmdline,
            )?;
            let m = build_guest(&spec)
                .with_context(|| format!("building the guest into {}", a.out.display()))?;
            println!(
                "guest image in {}: vmlinux {} B, bzImage {} B, initrd {} B ({} B cpio), {} modules, kernel {}",
                a.out.display(),
                m.vmlinux.size,
                m.bzimage.size,
                m.initrd.digest.size,
                m.initrd.cpio_size,
                m.modules.len(),
                m.kernel.release
            );
            Ok(ExitCode::SUCCESS)
        }
        GuestCommand::Show { dir } => {
            let m = load_manifest(&dir)?;
            m.verify(&dir)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
