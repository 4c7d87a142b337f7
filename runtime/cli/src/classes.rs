//! Finding and loading runtime-class configurations, with dev-tree guest overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use runtime_config::{MachineType, RuntimeClassConfig};

/// Where configurations are looked up, in order.
pub fn config_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("COCOON_CONFIG_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("/etc/cocoon"));
    dirs.push(PathBuf::from("/opt/cocoon/share/defaults"));
    // The source tree's shipped configs, for development builds.
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/configs"));
    dirs
}

/// Options shared by commands that need a runtime class.
#[derive(clap::Args, Debug, Clone)]
pub struct ClassArgs {
    /// RuntimeClass handler name.
    #[arg(long, default_value = "kata-qemu-coco-dev")]
    pub class: String,
    /// Explicit configuration file (overrides --class lookup).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Use the guest image built in this directory (by `cocoon guest build`) instead of the
    /// configured kernel and initrd.
    #[arg(long)]
    pub guest_dir: Option<PathBuf>,
    /// Override the vhost-user vsock backend binary.
    #[arg(long)]
    pub vsock_backend: Option<PathBuf>,
}

/// Points `cfg` at the kernel and initrd of a `cocoon guest build` output directory
/// (uncompressed PVH vmlinux for microvm, bzImage for q35), verifying their digests.
pub fn use_guest_dir(cfg: &mut RuntimeClassConfig, dir: &Path) -> Result<()> {
    let dir = std::path::absolute(dir).with_context(|| format!("guest dir {}", dir.display()))?;
    let m = runtime_guest::load_manifest(&dir)?;
    m.verify(&dir)?;
    let q = &mut cfg.hypervisor.qemu;
    q.kernel = match q.machine_type {
        MachineType::Microvm => m.vmlinux_path(&dir),
        MachineType::Q35 => m.bzimage_path(&dir),
    };
    q.initrd = m.initrd_path(&dir);
    Ok(())
}

impl ClassArgs {
    /// Loads the configuration and applies the overrides.
    pub fn load(&self) -> Result<RuntimeClassConfig> {
        let path = match &self.config {
            Some(p) => p.clone(),
            None => runtime_config::find_class_config(&self.class, &config_dirs())?,
        };
        let mut cfg = RuntimeClassConfig::load(&path)?;
        if self.config.is_none() && cfg.runtime.class != self.class {
            anyhow::bail!(
                "{} is for class {}, not {}",
                path.display(),
                cfg.runtime.class,
                self.class
            );
        }
        if let Some(dir) = &self.guest_dir {
            use_guest_dir(&mut cfg, dir)?;
        }
        if let Some(b) = &self.vsock_backend {
            cfg.agent.vhost_user_vsock_backend = std::path::absolute(b)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}
