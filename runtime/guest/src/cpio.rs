//! Deterministic writer for the `newc` cpio format (the one the kernel unpacks as initramfs).
//!
//! Entries are kept sorted by path components, so every directory precedes its contents and
//! the output does not depend on insertion order. Owner and group are 0, mtime is 0, inode
//! numbers count up from 1 in output order, and the archive ends with `TRAILER!!!`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use thiserror::Error;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const TRAILER: &str = "TRAILER!!!";

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioEntryKind {
    /// A directory.
    Directory,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link with its target.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// One archive member: permission bits (`0o7777` mask) and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry {
    /// Permission bits; the file-type bits come from `kind`.
    pub mode: u32,
    /// What the entry is.
    pub kind: CpioEntryKind,
    /// Whether the entry was added explicitly (implicit parents may be overridden).
    explicit: bool,
}

/// Why an entry could not be added or the archive written.
#[derive(Debug, Error)]
pub enum CpioError {
    /// The path is empty, contains `.`/`..`/empty components or a NUL byte.
    #[error("invalid archive path {0:?}")]
    InvalidPath(String),
    /// Two different entries claim the same path.
    #[error("archive path {0:?} added twice with different contents")]
    Duplicate(String),
    /// An entry would need a parent that is not a directory.
    #[error("archive path {path:?} needs parent {parent:?}, which is not a directory")]
    ParentNotDirectory {
        /// The entry being added.
        path: String,
        /// The parent that is a file/symlink/device.
        parent: String,
    },
    /// A field does not fit the format's 32-bit fields.
    #[error("archive entry {0:?} is larger than 4 GiB")]
    TooLarge(String),
    /// Writing failed.
    #[error("writing cpio archive: {0}")]
    Io(#[from] io::Error),
}

/// An in-memory, always-sorted cpio archive.
#[derive(Debug, Default, Clone)]
pub struct CpioArchive {
    entries: BTreeMap<Vec<String>, CpioEntry>,
}

/// Splits a guest path into validated components (a leading `/` is allowed and ignored).
fn components(path: &str) -> Result<Vec<String>, CpioError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    let bad = trimmed.is_empty()
        || path.contains('\0')
        || parts.iter().any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(CpioError::InvalidPath(path.to_owned()));
    }
    Ok(parts)
}

impl CpioArchive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (implicit parent directories included, trailer excluded).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks up an entry by guest path.
    pub fn get(&self, path: &str) -> Option<&CpioEntry> {
        components(path).ok().and_then(|c| self.entries.get(&c))
    }

    /// Paths in output order, each with a leading `/`.
    pub fn paths(&self) -> Vec<String> {
        self.entries
            .keys()
            .map(|k| format!("/{}", k.join("/")))
            .collect()
    }

    /// Adds a directory (and any missing parents, mode 0755).
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.insert(path, mode, CpioEntryKind::Directory)
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.insert(path, mode, CpioEntryKind::File(data))
    }

    /// Adds a symbolic link (mode 0777).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath(format!("{path} -> {target}")));
        }
        self.insert(path, 0o777, CpioEntryKind::Symlink(target.to_owned()))
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(path, mode, CpioEntryKind::CharDevice { major, minor })
    }

    fn insert(&mut self, path: &str, mode: u32, kind: CpioEntryKind) -> Result<(), CpioError> {
        let parts = components(path)?;
        for depth in 1..parts.len() {
            let parent = parts[..depth].to_vec();
            match self.entries.get(&parent) {
                Some(e) if e.kind != CpioEntryKind::Directory => {
                    return Err(CpioError::ParentNotDirectory {
                        path: path.to_owned(),
                        parent: format!("/{}", parent.join("/")),
                    });
                }
                Some(_) => {}
                None => {
                    let implicit = CpioEntry {
                        mode: 0o755,
                        kind: CpioEntryKind::Directory,
                        explicit: false,
                    };
                    self.entries.insert(parent, implicit);
                }
            }
        }
        let entry = CpioEntry {
            mode: mode & 0o7777,
            kind,
            explicit: true,
        };
        match self.entries.get(&parts) {
            Some(old) if old.explicit && (old.kind != entry.kind || old.mode != entry.mode) => {
                Err(CpioError::Duplicate(path.to_owned()))
            }
            Some(old) if !old.explicit && entry.kind != CpioEntryKind::Directory => {
                // An implicit directory already has children: a non-directory cannot replace it.
                Err(CpioError::Duplicate(path.to_owned()))
            }
            _ => {
                self.entries.insert(parts, entry);
                Ok(())
            }
        }
    }

    /// Writes the archive in `newc` format (including the trailer) and returns the writer.
    pub fn write_newc<W: Write>(&self, mut out: W) -> Result<W, CpioError> {
        let mut written = 0usize;
        for (ino, (parts, entry)) in (1u32..).zip(&self.entries) {
            let name = parts.join("/");
            let (type_bits, data, nlink, rdev): (u32, &[u8], u32, (u32, u32)) = match &entry.kind {
                CpioEntryKind::Directory => (S_IFDIR, &[], 2, (0, 0)),
                CpioEntryKind::File(d) => (S_IFREG, d.as_slice(), 1, (0, 0)),
                CpioEntryKind::Symlink(t) => (S_IFLNK, t.as_bytes(), 1, (0, 0)),
                CpioEntryKind::CharDevice { major, minor } => (S_IFCHR, &[], 1, (*major, *minor)),
            };
            let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(name.clone()))?;
            let header = Header {
                ino,
                mode: type_bits | entry.mode,
                nlink,
                size,
                rdev,
            };
            written += write_member(&mut out, written, &header, &name, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            size: 0,
            rdev: (0, 0),
        };
        write_member(&mut out, written, &trailer, TRAILER, &[])?;
        Ok(out)
    }

    /// The archive in `newc` format as bytes.
    pub fn to_newc_bytes(&self) -> Result<Vec<u8>, CpioError> {
        self.write_newc(Vec::new())
    }
}

/// The variable fields of a newc header (uid, gid, mtime, dev and check are always 0).
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

/// Zero bytes needed to pad `len` to a multiple of four.
fn pad4(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes one header + name + data with newc padding; `offset` is the bytes written so far.
fn write_member<W: Write>(
    out: &mut W,
    offset: usize,
    h: &Header,
    name: &str,
    data: &[u8],
) -> Result<usize, CpioError> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        h.ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdev.0, h.rdev.1, namesize, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    let name_pad = pad4(offset + header.len() + namesize);
    out.write_all(&[0u8; 4][..1 + name_pad])?;
    out.write_all(data)?;
    let data_pad = pad4(data.len());
    out.write_all(&[0u8; 3][..data_pad])?;
    Ok(header.len() + namesize + name_pad + data.len() + data_pad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::process::{Command, Stdio};

    fn sample_archive() -> CpioArchive {
        let mut a = CpioArchive::new();
        a.add_file("/init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .unwrap();
        a.add_file("/lib/modules/virtio.ko", 0o644, vec![7u8; 1001])
            .unwrap();
        a.add_dir("/proc", 0o555).unwrap();
        a.add_symlink("/bin/sh", "busybox").unwrap();
        a.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        a.add_file("/etc/hosts", 0o644, b"127.0.0.1 localhost\n".to_vec())
            .unwrap();
        a.add_file("/a-b", 0o600, Vec::new()).unwrap();
        a
    }

    fn gnu_cpio(args: &[&str], input: &[u8], dir: &std::path::Path) -> String {
        let mut child = Command::new("cpio")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GNU cpio is needed for this test");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cpio failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn gnu_cpio_lists_sorted_entries_with_fixed_owner_and_mtime() {
        let bytes = sample_archive().to_newc_bytes().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let listing = gnu_cpio(
            &["-itv", "--quiet", "--numeric-uid-gid"],
            &bytes,
            dir.path(),
        );
        let lines: Vec<&str> = listing.lines().collect();
        let names: Vec<&str> = lines
            .iter()
            .map(|l| {
                l.split(" -> ")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .last()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            names,
            [
                "a-b",
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/hosts",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/virtio.ko",
                "proc"
            ]
        );
        for line in &lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!((f[2], f[3]), ("0", "0"), "owner of {line}");
            assert!(line.contains("1970"), "mtime 0 expected: {line}");
        }
        assert!(lines[0].starts_with("-rw------- "), "{}", lines[0]);
        assert!(lines[2].starts_with("lrwxrwxrwx ") && lines[2].ends_with("bin/sh -> busybox"));
        assert!(
            lines[4].starts_with("crw------- ") && lines[4].contains("5,"),
            "{}",
            lines[4]
        );
        assert!(lines[11].starts_with("dr-xr-xr-x "), "{}", lines[11]);
        assert!(lines[10].contains(" 1001 "), "{}", lines[10]);
    }

    #[test]
    fn gnu_cpio_extracts_identical_contents() {
        let bytes = sample_archive().to_newc_bytes().unwrap();
        let dir = tempfile::tempdir().unwrap();
        gnu_cpio(
            &["-id", "--quiet", "--no-absolute-filenames"],
            &bytes,
            dir.path(),
        );
        let root = dir.path();
        assert_eq!(
            std::fs::read(root.join("init")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            std::fs::read(root.join("lib/modules/virtio.ko")).unwrap(),
            vec![7u8; 1001]
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
            Some("busybox")
        );
        assert_eq!(std::fs::read(root.join("a-b")).unwrap(), b"");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("init"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn output_is_independent_of_insertion_order_and_well_formed() {
        let forward = sample_archive().to_newc_bytes().unwrap();
        let mut b = CpioArchive::new();
        b.add_file("/a-b", 0o600, Vec::new()).unwrap();
        b.add_file("/etc/hosts", 0o644, b"127.0.0.1 localhost\n".to_vec())
            .unwrap();
        b.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        b.add_symlink("/bin/sh", "busybox").unwrap();
        b.add_dir("/proc", 0o555).unwrap();
        b.add_file("/lib/modules/virtio.ko", 0o644, vec![7u8; 1001])
            .unwrap();
        b.add_file("/init", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .unwrap();
        assert!(b.to_newc_bytes().unwrap() == forward);

        assert_eq!(forward.len() % 4, 0);
        assert!(forward.starts_with(b"070701000000010000818000000000000000000000000100000000"));
        let tail = &forward[forward.len() - 124..];
        assert!(tail.starts_with(b"07070100000000"), "trailer has inode 0");
        assert!(tail.windows(11).any(|w| w == b"TRAILER!!!\0"));
    }

    #[test]
    fn rejects_bad_paths_duplicates_and_file_parents() {
        let mut a = CpioArchive::new();
        for bad in ["", "/", "a//b", "a/../b", "./x", "a\0b"] {
            assert!(
                matches!(a.add_dir(bad, 0o755), Err(CpioError::InvalidPath(_))),
                "{bad:?}"
            );
        }
        a.add_file("/etc/hosts", 0o644, b"x".to_vec()).unwrap();
        a.add_file("/etc/hosts", 0o644, b"x".to_vec()).unwrap(); // identical: fine
        assert!(matches!(
            a.add_file("/etc/hosts", 0o644, b"y".to_vec()),
            Err(CpioError::Duplicate(p)) if p == "/etc/hosts"
        ));
        assert!(matches!(
            a.add_file("/etc/hosts/x", 0o644, Vec::new()),
            Err(CpioError::ParentNotDirectory { parent, .. }) if parent == "/etc/hosts"
        ));
        assert!(matches!(
            a.add_file("/etc", 0o644, Vec::new()),
            Err(CpioError::Duplicate(_))
        ));
        // An implicit parent takes the explicit mode given later.
        a.add_dir("/etc", 0o700).unwrap();
        assert_eq!(a.get("/etc").unwrap().mode, 0o700);
        assert_eq!(a.paths(), ["/etc", "/etc/hosts"]);
    }
}
