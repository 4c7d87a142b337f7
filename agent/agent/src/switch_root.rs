//! Leaving the initramfs (a PID 1 duty, as busybox `switch_root` does): the kernel's initial
//! root (`rootfs`) can never be pivoted away from, so `pivot_root(2)` in a container fails
//! there with EINVAL. PID 1 therefore moves every file of the initramfs onto a fresh tmpfs
//! (each file is copied, then unlinked, so memory use does not double), moves that tmpfs
//! over `/`, chroots into it and re-executes itself from the copy. From then on `/` is an
//! ordinary mount whose parent is `rootfs`, and containers get a real `pivot_root`.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, mknod};

/// Environment marker set on the re-executed agent: the root has been switched already.
pub const SWITCHED_ENV: &str = "COCOON_ROOT_SWITCHED";

/// `statfs` magic of ramfs (`include/uapi/linux/magic.h`; libc and nix lack it).
const RAMFS_MAGIC: libc::__fsword_t = 0x8584_58f6;

/// Where the tmpfs is assembled (a directory created in the initramfs).
const NEW_ROOT: &str = "/.cocoon-root";

/// A failure while switching roots.
#[derive(Debug, thiserror::Error)]
pub enum SwitchRootError {
    /// A system call failed.
    #[error("switch_root: {what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SwitchRootError {
    let what = what.into();
    move |source| SwitchRootError::Sys { what, source }
}

fn nix_sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SwitchRootError {
    let what = what.into();
    move |e| SwitchRootError::Sys {
        what,
        source: e.into(),
    }
}

/// Whether this PID 1 still runs on the initramfs: `/` is a ramfs/tmpfs and we have not
/// re-executed after switching.
pub fn on_initramfs() -> bool {
    if std::env::var_os(SWITCHED_ENV).is_some() {
        return false;
    }
    match nix::sys::statfs::statfs("/") {
        // The filesystems an initramfs root can be.
        Ok(s) => {
            let t = s.filesystem_type();
            t.0 == RAMFS_MAGIC || t == nix::sys::statfs::TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Moves `src`'s tree (on device `dev`) into `dst`, entry by entry; entries on another
/// device (mount points) become empty directories. `skip` is never entered.
fn move_tree(src: &Path, dst: &Path, dev: u64, skip: &Path) -> Result<(), SwitchRootError> {
    let entries = fs::read_dir(src).map_err(sys(format!("reading {}", src.display())))?;
    for entry in entries {
        let entry = entry.map_err(sys(format!("reading {}", src.display())))?;
        let from = entry.path();
        if from == skip {
            continue;
        }
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(sys(format!("stat {}", from.display())))?;
        move_entry(&from, &to, &meta, dev, skip)?;
    }
    Ok(())
}

fn move_entry(
    from: &Path,
    to: &Path,
    meta: &fs::Metadata,
    dev: u64,
    skip: &Path,
) -> Result<(), SwitchRootError> {
    let kind = meta.file_type();
    let owner = |p: &Path| {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            p,
            Some(meta.uid().into()),
            Some(meta.gid().into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_sys(format!("chown {}", p.display())))
    };
    if kind.is_dir() {
        fs::create_dir(to).map_err(sys(format!("mkdir {}", to.display())))?;
        owner(to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(sys(format!("chmod {}", to.display())))?;
        if meta.dev() == dev {
            move_tree(from, to, dev, skip)?;
            // Best effort: a directory holding a mount point stays.
            let _ = fs::remove_dir(from);
        }
        return Ok(());
    }
    if kind.is_symlink() {
        let target = fs::read_link(from).map_err(sys(format!("readlink {}", from.display())))?;
        std::os::unix::fs::symlink(&target, to)
            .map_err(sys(format!("symlink {}", to.display())))?;
        owner(to)?;
    } else if kind.is_file() {
        fs::copy(from, to).map_err(sys(format!("copy {}", from.display())))?;
        owner(to)?;
        // chown clears set-id bits: set the mode afterwards.
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(sys(format!("chmod {}", to.display())))?;
    } else {
        let sflag = SFlag::from_bits_truncate(meta.mode() & SFlag::S_IFMT.bits());
        mknod(
            to,
            sflag,
            Mode::from_bits_truncate(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(nix_sys(format!("mknod {}", to.display())))?;
        owner(to)?;
    }
    fs::remove_file(from).map_err(sys(format!("unlink {}", from.display())))
}

/// Moves the initramfs onto a tmpfs, makes it the root and re-executes `/init` from it.
/// Returns only on failure; a failure before the first file moved leaves the initramfs
/// intact.
pub fn switch_root_and_reexec() -> SwitchRootError {
    match switch_root() {
        Ok(()) => reexec(),
        Err(e) => e,
    }
}

fn switch_root() -> Result<(), SwitchRootError> {
    let root_dev = fs::metadata("/").map_err(sys("stat /"))?.dev();
    let new_root = Path::new(NEW_ROOT);
    fs::create_dir_all(new_root).map_err(sys(format!("mkdir {NEW_ROOT}")))?;
    mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(nix_sys(format!("mount tmpfs on {NEW_ROOT}")))?;
    move_tree(Path::new("/"), new_root, root_dev, new_root)?;
    nix::unistd::chdir(new_root).map_err(nix_sys(format!("chdir {NEW_ROOT}")))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(nix_sys("move the new root over /"))?;
    nix::unistd::chroot(".").map_err(nix_sys("chroot"))?;
    nix::unistd::chdir("/").map_err(nix_sys("chdir /"))
}

fn reexec() -> SwitchRootError {
    let argv0 = std::env::args_os()
        .next()
        .filter(|a| a.as_bytes().starts_with(b"/"))
        .unwrap_or_else(|| "/init".into());
    let Ok(path) = CString::new(argv0.as_bytes()) else {
        return SwitchRootError::Sys {
            what: "exec path".into(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        };
    };
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    if let Ok(marker) = CString::new(format!("{SWITCHED_ENV}=1")) {
        env.push(marker);
    }
    let args = if args.is_empty() {
        vec![path.clone()]
    } else {
        args
    };
    match nix::unistd::execve(&path, &args, &env) {
        Err(e) => nix_sys(format!("exec {}", argv0.to_string_lossy()))(e),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_tree_keeps_kinds_modes_owners_and_empties_the_source() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root (mknod, chown)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let dst = t.path().join("dst");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::create_dir_all(src.join("dev")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        nix::unistd::chown(&src.join("bin/tool"), Some(7.into()), Some(8.into())).unwrap();
        fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("tool", src.join("bin/link")).unwrap();
        mknod(
            &src.join("dev/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        fs::create_dir(src.join("skipped")).unwrap();
        let dev = fs::metadata(&src).unwrap().dev();

        move_tree(&src, &dst, dev, &src.join("skipped")).unwrap();

        let tool = fs::metadata(dst.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!((tool.uid(), tool.gid()), (7, 8));
        assert_eq!(fs::read(dst.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            fs::read_link(dst.join("bin/link")).unwrap(),
            Path::new("tool")
        );
        let null = fs::metadata(dst.join("dev/null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &null.file_type()
        ));
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
        assert!(
            !dst.join("skipped").exists(),
            "the skipped path is not moved"
        );
        let left: Vec<_> = fs::read_dir(&src)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("skipped")]);
    }
}
