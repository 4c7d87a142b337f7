//! `cocoon guest build|show`: the reproducible guest image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use runtime_guest::{ExtraFile, GuestBuildSpec, build_guest, default_cache_dir, load_manifest};
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
    /// Copy a host directory tree into the initramfs: `GUEST_DIR=HOST_DIR` (repeatable).
    /// It becomes part of the measured initrd (e.g. a test rootfs).
    #[arg(long = "extra-tree", value_name = "GUEST=HOST", value_parser = parse_tree)]
    extra_trees: Vec<(String, PathBuf)>,
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
            let mut spec = GuestBuildSpec::new(
                a.cache.clone().unwrap_or_else(default_cache_dir),
                a.out.clone(),
                a.agent.clone(),
                cmdline,
            )?;
            spec.extra_files = a
                .extra_trees
                .iter()
                .map(|(guest_path, host_dir)| ExtraFile::Tree {
                    guest_path: guest_path.clone(),
                    host_dir: host_dir.clone(),
                })
                .collect();
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

fn parse_tree(s: &str) -> Result<(String, PathBuf), String> {
    let (guest, host) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected GUEST_DIR=HOST_DIR"))?;
    if !guest.starts_with('/') {
        return Err(format!("{guest:?}: the guest path must be absolute"));
    }
    let host = PathBuf::from(host);
    if !host.is_dir() {
        return Err(format!("{}: not a directory", host.display()));
    }
    Ok((guest.to_string(), host))
}
