//! PID 1 duties: mount the pseudo filesystems, attach the console, load kernel modules in
//! order, and power the VM off (never panic: a kernel panic with `panic=-1` reboots, and a
//! reboot loop hides the error).

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MsFlags, mount};

/// Errors from PID 1 duties.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A mount failed.
    #[error("mount {fstype} on {target}: {source}")]
    Mount {
        /// Filesystem type.
        fstype: &'static str,
        /// Mount point.
        target: &'static str,
        /// Errno.
        source: nix::Error,
    },
    /// A kernel module failed to load.
    #[error("load module {name}: {source}")]
    Module {
        /// Module name.
        name: String,
        /// Errno or I/O error.
        source: std::io::Error,
    },
    /// The module list is unreadable.
    #[error("read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
}

struct MountSpec {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const MOUNTS: &[MountSpec] = &[
    MountSpec {
        fstype: "proc",
        target: "/proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    MountSpec {
        fstype: "sysfs",
        target: "/sys",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    MountSpec {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        fstype: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/dev/shm",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    MountSpec {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        fstype: "cgroup2",
        target: "/sys/fs/cgroup",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
];

/// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /run, /tmp and the cgroup2 hierarchy.
pub fn mount_pseudo_filesystems() -> Result<(), InitError> {
    for m in MOUNTS {
        let _ = std::fs::create_dir_all(m.target);
        mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, m.data).map_err(|source| {
            InitError::Mount {
                fstype: m.fstype,
                target: m.target,
                source,
            }
        })?;
    }
    Ok(())
}

/// Points stdin/stdout/stderr at `/dev/console` (the initramfs may not carry the node, in
/// which case the kernel started us with no stdio at all).
pub fn attach_console() {
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..=2 {
        // SAFETY: fd 0..=2 are the standard descriptors; `console` is open, and dup2 only
        // replaces those descriptor numbers.
        unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&console.as_fd()), fd);
        }
    }
}

/// Loads the modules named in `<dir>/load-order` (one per line, dependencies first) from
/// `<dir>/<name>.ko` with `finit_module`. A module already present is fine.
pub fn load_modules(dir: &Path) -> Result<Vec<String>, InitError> {
    let order_path = dir.join("load-order");
    let list = match std::fs::read_to_string(&order_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InitError::Read {
                path: order_path.display().to_string(),
                source,
            });
        }
    };
    let mut loaded = Vec::new();
    for name in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let path = dir.join(format!("{name}.ko"));
        let file = std::fs::File::open(&path).map_err(|source| InitError::Module {
            name: name.to_string(),
            source,
        })?;
        let params = CString::default();
        match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::Error::EEXIST) => loaded.push(name.to_string()),
            Err(e) => {
                return Err(InitError::Module {
                    name: name.to_string(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(loaded)
}

/// Guest uptime in milliseconds.
pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|secs| (secs * 1000.0) as u64)
        .unwrap_or(0)
}

/// Syncs and powers the VM off. Does not return when running as PID 1 in a VM.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Not allowed (not PID 1 / no CAP_SYS_BOOT): exit instead of spinning.
    std::process::exit(1)
}
