//! Assembles the guest initramfs: `/init`, the kernel modules with their load order, a
//! minimal `/etc`, the mount-point directories, and extra files given by the caller.

use crate::cpio::{CpioArchive, CpioEntryKind, CpioError};
use crate::error::{GuestBuildError, io_err};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Guest directory holding the `.ko` files and the `load-order` list.
pub const MODULES_DIR: &str = "/lib/modules";
/// Guest file listing module names, one per line, in load order.
pub const LOAD_ORDER_FILE: &str = "/lib/modules/load-order";

/// A file the caller wants in the initramfs besides the standard contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExtraFile {
    /// One host file; mode 0755 if any execute bit is set on the host, else 0644.
    File {
        /// Absolute guest path.
        guest_path: String,
        /// Host file to copy (symlinks are followed).
        host_path: PathBuf,
    },
    /// A host directory tree copied recursively (directories, files, symlinks as links).
    Tree {
        /// Guest directory that receives the tree's contents.
        guest_path: String,
        /// Host directory to copy.
        host_dir: PathBuf,
    },
    /// A symbolic link.
    Symlink {
        /// Absolute guest path of the link.
        guest_path: String,
        /// Link target, stored as given.
        target: String,
    },
    /// A file with literal contents.
    Bytes {
        /// Absolute guest path.
        guest_path: String,
        /// Permission bits.
        mode: u32,
        /// Contents.
        data: Vec<u8>,
    },
}

/// Default `/etc` files; an extra file at the same path replaces them.
const DEFAULT_ETC: &[(&str, &str)] = &[
    (
        "/etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    (
        "/etc/nsswitch.conf",
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
    ),
    (
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
];

/// Mount points and scratch directories with their modes.
const BASE_DIRS: &[(&str, u32)] = &[
    ("/dev", 0o755),
    ("/etc", 0o755),
    ("/mnt", 0o755),
    ("/proc", 0o555),
    ("/root", 0o700),
    ("/run", 0o755),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
];

/// Normalised permission bits for a host file: executable or not.
fn host_file_mode(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Adds the caller's extra files to an archive.
pub fn add_extra_files(
    archive: &mut CpioArchive,
    extras: &[ExtraFile],
) -> Result<(), GuestBuildError> {
    for extra in extras {
        match extra {
            ExtraFile::File {
                guest_path,
                host_path,
            } => {
                let fail = |reason: String| GuestBuildError::ExtraFile {
                    guest_path: guest_path.clone(),
                    host_path: host_path.clone(),
                    reason,
                };
                let meta = std::fs::metadata(host_path).map_err(|e| fail(e.to_string()))?;
                if !meta.is_file() {
                    return Err(fail("not a regular file".into()));
                }
                let data = std::fs::read(host_path).map_err(|e| fail(e.to_string()))?;
                archive.add_file(guest_path, host_file_mode(&meta), data)?;
            }
            ExtraFile::Tree {
                guest_path,
                host_dir,
            } => {
                // A tree at "/" fills the root itself; anywhere else its directory is created.
                if !guest_path.trim_matches('/').is_empty() {
                    archive.add_dir(guest_path, 0o755)?;
                }
                add_tree(archive, guest_path, host_dir, guest_path, host_dir)?;
            }
            ExtraFile::Symlink { guest_path, target } => archive.add_symlink(guest_path, target)?,
            ExtraFile::Bytes {
                guest_path,
                mode,
                data,
            } => archive.add_file(guest_path, *mode, data.clone())?,
        }
    }
    Ok(())
}

/// Copies the host directory `host` into guest directory `guest`, sorted by name.
fn add_tree(
    archive: &mut CpioArchive,
    guest: &str,
    host: &Path,
    tree_guest: &str,
    tree_host: &Path,
) -> Result<(), GuestBuildError> {
    let fail = |path: &Path, reason: String| GuestBuildError::ExtraFile {
        guest_path: tree_guest.to_owned(),
        host_path: path.to_path_buf(),
        reason,
    };
    let mut entries: Vec<_> = std::fs::read_dir(host)
        .map_err(|e| fail(host, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(host, e.to_string()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(fail(&path, "file name is not UTF-8".into()));
        };
        let child = format!("{}/{name}", guest.trim_end_matches('/'));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&path, e.to_string()))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| fail(&path, e.to_string()))?;
            let target = target
                .to_str()
                .ok_or_else(|| fail(&path, "symlink target is not UTF-8".into()))?;
            archive.add_symlink(&child, target)?;
        } else if kind.is_dir() {
            archive.add_dir(&child, meta.permissions().mode() & 0o7777)?;
            add_tree(archive, &child, &path, tree_guest, tree_host)?;
        } else if kind.is_file() {
            let data = std::fs::read(&path).map_err(|e| fail(&path, e.to_string()))?;
            archive.add_file(&child, host_file_mode(&meta), data)?;
        } else {
            let rel = path
                .strip_prefix(tree_host)
                .unwrap_or(&path)
                .display()
                .to_string();
            return Err(fail(
                &path,
                format!(
                    "{rel} is a device, socket or fifo; only files, directories and symlinks are copied"
                ),
            ));
        }
    }
    Ok(())
}

/// Everything the initramfs is made of, already read into memory.
#[derive(Debug, Clone)]
pub struct InitramfsContents<'a> {
    /// The `/init` binary.
    pub init: &'a [u8],
    /// `(module name, .ko bytes)` in load order.
    pub modules: &'a [(String, Vec<u8>)],
    /// Caller-supplied extras, already in an archive (see [`add_extra_files`]).
    pub extras: &'a CpioArchive,
}

/// Builds the initramfs archive. Extras may replace the default `/etc` files, but not
/// `/init` or anything under `/lib/modules` that the build itself writes.
pub fn assemble(contents: &InitramfsContents<'_>) -> Result<CpioArchive, GuestBuildError> {
    let mut archive = contents.extras.clone();
    let reserved = |path: &str| GuestBuildError::Cpio(CpioError::Duplicate(path.to_owned()));
    if archive.get("/init").is_some() {
        return Err(reserved("/init"));
    }
    archive.add_file("/init", 0o755, contents.init.to_vec())?;
    // Standard directories and nodes; a caller's tree may already provide them (its modes win).
    for (path, mode) in BASE_DIRS {
        match archive.get(path) {
            None => archive.add_dir(path, *mode)?,
            Some(entry) if entry.kind == CpioEntryKind::Directory => {}
            Some(_) => return Err(reserved(path)),
        }
    }
    for (path, mode, major, minor) in [("/dev/console", 0o600, 5, 1), ("/dev/null", 0o666, 1, 3)] {
        if archive.get(path).is_none() {
            archive.add_char_device(path, mode, major, minor)?;
        }
    }
    for (path, text) in DEFAULT_ETC {
        if archive.get(path).is_none() {
            archive.add_file(path, 0o644, text.as_bytes().to_vec())?;
        }
    }
    let mut load_order = String::new();
    for (name, bytes) in contents.modules {
        let path = format!("{MODULES_DIR}/{name}.ko");
        if archive.get(&path).is_some() {
            return Err(reserved(&path));
        }
        archive.add_file(&path, 0o644, bytes.clone())?;
        load_order.push_str(name);
        load_order.push('\n');
    }
    if archive.get(LOAD_ORDER_FILE).is_some() {
        return Err(reserved(LOAD_ORDER_FILE));
    }
    archive.add_file(LOAD_ORDER_FILE, 0o644, load_order.into_bytes())?;
    Ok(archive)
}

/// How the initramfs is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitrdCompression {
    /// Plain newc cpio.
    #[default]
    None,
    /// gzip (level 6, no name, mtime 0), which the kernel unpacks itself.
    Gzip,
}

impl InitrdCompression {
    /// File name of the initrd in the output directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::None => "initrd.cpio",
            Self::Gzip => "initrd.cpio.gz",
        }
    }

    /// Compresses (or copies) the raw cpio bytes deterministically.
    pub fn apply(self, cpio: &[u8]) -> Result<Vec<u8>, GuestBuildError> {
        match self {
            Self::None => Ok(cpio.to_vec()),
            Self::Gzip => {
                let mut encoder = flate2::GzBuilder::new().mtime(0).operating_system(3).write(
                    Vec::with_capacity(cpio.len() / 2),
                    flate2::Compression::new(6),
                );
                let gz_err = io_err(Path::new("<gzip encoder>"));
                encoder.write_all(cpio).map_err(gz_err)?;
                encoder
                    .finish()
                    .map_err(io_err(Path::new("<gzip encoder>")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn contents_paths(extras: &CpioArchive) -> Vec<String> {
        let modules = vec![
            ("virtio_ring".to_owned(), b"ring".to_vec()),
            ("virtio".to_owned(), b"v".to_vec()),
        ];
        let c = InitramfsContents {
            init: b"INIT",
            modules: &modules,
            extras,
        };
        let a = assemble(&c).unwrap();
        assert_eq!(
            a.get(LOAD_ORDER_FILE).unwrap().kind,
            crate::cpio::CpioEntryKind::File(b"virtio_ring\nvirtio\n".to_vec())
        );
        a.paths()
    }

    #[test]
    fn standard_layout_is_present() {
        let paths = contents_paths(&CpioArchive::new());
        for p in [
            "/init",
            "/proc",
            "/sys",
            "/dev",
            "/dev/console",
            "/run",
            "/tmp",
            "/mnt",
            "/etc/hosts",
            "/etc/nsswitch.conf",
            "/etc/passwd",
            "/etc/group",
            "/lib/modules/virtio.ko",
            "/lib/modules/virtio_ring.ko",
            "/lib/modules/load-order",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn extras_replace_etc_but_not_init_or_modules() {
        let mut extras = CpioArchive::new();
        add_extra_files(
            &mut extras,
            &[ExtraFile::Bytes {
                guest_path: "/etc/hosts".into(),
                mode: 0o644,
                data: b"10.0.2.2 host\n".to_vec(),
            }],
        )
        .unwrap();
        let modules = vec![];
        let a = assemble(&InitramfsContents {
            init: b"I",
            modules: &modules,
            extras: &extras,
        })
        .unwrap();
        assert_eq!(
            a.get("/etc/hosts").unwrap().kind,
            crate::cpio::CpioEntryKind::File(b"10.0.2.2 host\n".to_vec())
        );

        for clash in ["/init", "/lib/modules/load-order"] {
            let mut extras = CpioArchive::new();
            add_extra_files(
                &mut extras,
                &[ExtraFile::Bytes {
                    guest_path: clash.into(),
                    mode: 0o755,
                    data: b"x".to_vec(),
                }],
            )
            .unwrap();
            let err = assemble(&InitramfsContents {
                init: b"I",
                modules: &modules,
                extras: &extras,
            })
            .unwrap_err();
            assert!(err.to_string().contains(clash), "{err}");
        }
    }

    #[test]
    fn tree_copies_files_dirs_and_symlinks_and_rejects_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), b"BB").unwrap();
        std::fs::set_permissions(
            root.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        std::fs::write(root.join("README"), b"hi").unwrap();
        let mut a = CpioArchive::new();
        add_extra_files(
            &mut a,
            &[ExtraFile::Tree {
                guest_path: "/rootfs".into(),
                host_dir: root.clone(),
            }],
        )
        .unwrap();
        assert_eq!(
            a.paths(),
            [
                "/rootfs",
                "/rootfs/README",
                "/rootfs/bin",
                "/rootfs/bin/busybox",
                "/rootfs/bin/sh"
            ]
        );
        assert_eq!(a.get("/rootfs/bin/busybox").unwrap().mode, 0o755);
        assert_eq!(a.get("/rootfs/README").unwrap().mode, 0o644);

        let status = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = add_extra_files(
            &mut CpioArchive::new(),
            &[ExtraFile::Tree {
                guest_path: "/rootfs".into(),
                host_dir: root,
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("pipe is a device, socket or fifo"),
            "{err}"
        );

        let missing = dir.path().join("nope");
        let err = add_extra_files(
            &mut CpioArchive::new(),
            &[ExtraFile::File {
                guest_path: "/x".into(),
                host_path: missing,
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nope"), "{err}");
    }

    #[test]
    fn gzip_output_is_deterministic_and_decodes() {
        let data = b"070701 cpio bytes ".repeat(5000);
        let a = InitrdCompression::Gzip.apply(&data).unwrap();
        assert_eq!(a, InitrdCompression::Gzip.apply(&data).unwrap());
        assert_eq!(
            &a[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
            "no name, mtime 0, OS unix"
        );
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&a)?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data);
        assert_eq!(InitrdCompression::None.apply(&data).unwrap(), data);
    }

    #[test]
    fn tree_at_root_may_provide_standard_dirs_and_etc() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/:/bin/sh\n").unwrap();
        let mut extras = CpioArchive::new();
        let tree = ExtraFile::Tree {
            guest_path: "/".into(),
            host_dir: root.to_path_buf(),
        };
        add_extra_files(&mut extras, &[tree]).unwrap();
        let a = assemble(&InitramfsContents {
            init: b"I",
            modules: &[],
            extras: &extras,
        })
        .unwrap();
        assert_eq!(a.get("/tmp").unwrap().mode, 0o750);
        assert_eq!(a.get("/proc").unwrap().mode, 0o555);
        assert_eq!(
            a.get("/etc/passwd").unwrap().kind,
            CpioEntryKind::File(b"root:x:0:0::/:/bin/sh\n".to_vec())
        );
        assert!(a.get("/etc/group").is_some());

        // A file where a standard directory belongs is refused, naming it.
        let mut extras = CpioArchive::new();
        let clash = ExtraFile::Bytes {
            guest_path: "/proc".into(),
            mode: 0o644,
            data: vec![],
        };
        add_extra_files(&mut extras, &[clash]).unwrap();
        let err = assemble(&InitramfsContents {
            init: b"I",
            modules: &[],
            extras: &extras,
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"/proc\""), "{err}");
    }
}
