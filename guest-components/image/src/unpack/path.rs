//! Path handling that cannot leave the root: archive names are validated lexically, and the
//! directories on the way to an entry are opened one component at a time with `O_NOFOLLOW`
//! relative to file descriptors, resolving symlinks ourselves.
//!
//! Symlinks met on the way are resolved with *in-root* semantics, as a container sees them:
//! an absolute target restarts from the root (the image's `/var/run -> /run` means
//! `<root>/run`), and a relative target whose `..` would climb above the root is refused with
//! [`UnpackError::SymlinkEscape`]. `..` is never handed to the kernel: it pops our own stack of
//! directory descriptors, so neither a rename race nor a bind mount can move us outside.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::UnpackError;

/// Deepest directory nesting accepted in entry names and while resolving.
pub(crate) const MAX_DEPTH: usize = 256;
/// Most symlinks followed while resolving one path (Linux uses 40 too).
const MAX_SYMLINKS: usize = 40;

/// Split an archive entry name into validated components.
///
/// Refuses absolute names and any `..` component; drops `.` and empty components. An empty
/// result names the root itself.
pub(crate) fn entry_components(raw: &[u8]) -> Result<Vec<OsString>, UnpackError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::AbsolutePath { entry: shown() });
    }
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(UnpackError::ParentTraversal { entry: shown() }),
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(UnpackError::PathTooDeep { entry: shown() });
    }
    Ok(out)
}

/// Split a hard link's target name. A leading `/` is read relative to the root (real images
/// carry such names, e.g. `/usr/bin/unzip`); `..` anywhere is refused as an escape.
pub(crate) fn hardlink_components(raw: &[u8], entry: &str) -> Result<Vec<OsString>, UnpackError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::HardlinkEscape {
                    entry: entry.to_owned(),
                    target: shown,
                });
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    if out.is_empty() || out.len() > MAX_DEPTH {
        return Err(UnpackError::HardlinkEscape {
            entry: entry.to_owned(),
            target: shown,
        });
    }
    Ok(out)
}

/// Human-readable form of a component list, for errors.
pub(crate) fn display(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() { "/".to_owned() } else { s }
}

fn io_err(context: impl Into<String>, errno: Errno) -> UnpackError {
    UnpackError::Io {
        context: context.into(),
        source: errno.into(),
    }
}

/// Open flags for a directory we descend into: never follow a symlink at the last component.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The destination root, held open as a directory descriptor.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
}

impl RootDir {
    /// Open `path` (which must be a directory, not a symlink).
    pub(crate) fn open(path: &Path) -> Result<Self, UnpackError> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())
            .map_err(|e| io_err(format!("opening unpack root {}", path.display()), e))?;
        Ok(Self { fd })
    }

    /// A fresh descriptor of the root directory.
    pub(crate) fn dup(&self) -> Result<OwnedFd, UnpackError> {
        rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())
            .map_err(|e| io_err("reopening unpack root", e))
    }

    /// Open the directory named by `dirs` beneath the root, resolving symlinks in-root and
    /// refusing escapes. With `create`, missing directories are made (mode 0755, owned by us).
    /// Returns `Ok(None)` when a component is missing and `create` is false.
    pub(crate) fn resolve_dir(
        &self,
        dirs: &[OsString],
        create: bool,
        entry: &str,
    ) -> Result<Option<OwnedFd>, UnpackError> {
        let mut stack: Vec<OwnedFd> = vec![self.dup()?];
        // Components still to walk, in reverse order so `pop` yields the next one.
        let mut pending: Vec<OsString> = dirs.iter().rev().cloned().collect();
        let mut followed = 0usize;
        // The symlink whose target is being walked, for error messages.
        let mut via_link: Option<(String, String)> = None;
        while let Some(comp) = pending.pop() {
            if comp.is_empty() || comp == "." {
                continue;
            }
            if comp == ".." {
                if stack.len() == 1 {
                    let (link, target) = via_link.clone().unwrap_or_default();
                    return Err(UnpackError::SymlinkEscape {
                        entry: entry.to_owned(),
                        link,
                        target,
                    });
                }
                stack.pop();
                continue;
            }
            let top = stack
                .last()
                .ok_or_else(|| io_err("empty resolution stack", Errno::INVAL))?;
            match rustix::fs::openat(top, comp.as_os_str(), dir_flags(), Mode::empty()) {
                Ok(fd) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(UnpackError::PathTooDeep {
                            entry: entry.to_owned(),
                        });
                    }
                    stack.push(fd);
                }
                Err(Errno::NOENT) => {
                    if !create {
                        return Ok(None);
                    }
                    match rustix::fs::mkdirat(top, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err(format!("creating directory for {entry}"), e)),
                    }
                    // Not consumed: the next iteration opens what we just made.
                    pending.push(comp);
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let st = rustix::fs::statat(top, comp.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io_err(format!("inspecting a parent of {entry}"), e))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        return Err(UnpackError::NotADirectory {
                            entry: entry.to_owned(),
                            component: comp.to_string_lossy().into_owned(),
                        });
                    }
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(UnpackError::TooManySymlinks {
                            entry: entry.to_owned(),
                        });
                    }
                    let target = rustix::fs::readlinkat(top, comp.as_os_str(), Vec::new())
                        .map_err(|e| io_err(format!("reading a symlink in {entry}"), e))?;
                    let target = target.into_bytes();
                    via_link = Some((
                        comp.to_string_lossy().into_owned(),
                        String::from_utf8_lossy(&target).into_owned(),
                    ));
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    let parts: Vec<&[u8]> = target.split(|b| *b == b'/').collect();
                    if pending.len() + parts.len() > MAX_DEPTH * 4 {
                        return Err(UnpackError::PathTooDeep {
                            entry: entry.to_owned(),
                        });
                    }
                    for part in parts.into_iter().rev() {
                        pending.push(OsStr::from_bytes(part).to_os_string());
                    }
                }
                Err(e) => return Err(io_err(format!("opening a parent of {entry}"), e)),
            }
        }
        Ok(stack.pop())
    }
}

/// What is at `name` in `dir`, without following a symlink.
pub(crate) fn lstat_at(dir: impl AsFd, name: &OsStr) -> Result<Option<FileType>, UnpackError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err(format!("inspecting {}", name.to_string_lossy()), e)),
    }
}

/// Remove `name` from `dir` whatever it is; directories are removed recursively without ever
/// following a symlink. Missing is not an error.
pub(crate) fn remove_all_at(dir: impl AsFd, name: &OsStr, depth: usize) -> Result<(), UnpackError> {
    let dir = dir.as_fd();
    match lstat_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            if depth > MAX_DEPTH * 2 {
                return Err(io_err("directory tree too deep to remove", Errno::LOOP));
            }
            let sub = rustix::fs::openat(dir, name, dir_flags(), Mode::empty()).map_err(|e| {
                io_err(format!("opening {} for removal", name.to_string_lossy()), e)
            })?;
            clear_dir(&sub, &|_| true, depth + 1)?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
                .map_err(|e| io_err(format!("removing {}", name.to_string_lossy()), e))
        }
        Some(_) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", name.to_string_lossy()), e)),
        },
    }
}

/// The names in `dir`, without `.` and `..`.
fn children(dir: &OwnedFd) -> Result<Vec<OsString>, UnpackError> {
    let mut names = Vec::new();
    let reader = rustix::fs::Dir::read_from(dir).map_err(|e| io_err("listing a directory", e))?;
    for item in reader {
        let item = item.map_err(|e| io_err("listing a directory", e))?;
        let name = item.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(names)
}

/// Remove every child of `dir` for which `remove` returns true (recursively, never following
/// symlinks).
pub(crate) fn clear_dir(
    dir: &OwnedFd,
    remove: &dyn Fn(&OsStr) -> bool,
    depth: usize,
) -> Result<(), UnpackError> {
    for name in children(dir)? {
        if remove(&name) {
            remove_all_at(dir, &name, depth)?;
        }
    }
    Ok(())
}

/// Remove everything below `dir`, whose components from the root are `path`, except the
/// paths for which `keep` is true; kept children that are directories (never symlinks) are
/// cleared the same way, recursively. This is how a whiteout hides the lower layers' content
/// while keeping what the current layer wrote: `keep` says whether the layer wrote that path
/// or something below it (an implied parent directory).
pub(crate) fn clear_dir_keeping(
    dir: &OwnedFd,
    path: &mut Vec<OsString>,
    keep: &dyn Fn(&[OsString]) -> bool,
    depth: usize,
) -> Result<(), UnpackError> {
    if depth > MAX_DEPTH * 2 {
        return Err(io_err(
            format!("directory tree too deep to clear below {}", display(path)),
            Errno::LOOP,
        ));
    }
    for name in children(dir)? {
        path.push(name);
        let result = clear_child_keeping(dir, path, keep, depth);
        path.pop();
        result?;
    }
    Ok(())
}

/// [`clear_dir_keeping`] for one child of `dir`, the last component of `path`.
fn clear_child_keeping(
    dir: &OwnedFd,
    path: &mut Vec<OsString>,
    keep: &dyn Fn(&[OsString]) -> bool,
    depth: usize,
) -> Result<(), UnpackError> {
    let Some(name) = path.last().cloned() else {
        return Ok(());
    };
    if !keep(path) {
        return remove_all_at(dir, &name, depth);
    }
    if lstat_at(dir, &name)? != Some(FileType::Directory) {
        return Ok(());
    }
    let sub = rustix::fs::openat(dir, &name, dir_flags(), Mode::empty())
        .map_err(|e| io_err(format!("opening {} to clear it", display(path)), e))?;
    clear_dir_keeping(&sub, path, keep, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_validated() {
        assert_eq!(
            entry_components(b"./a//b/./c").unwrap(),
            vec!["a", "b", "c"]
        );
        assert!(entry_components(b"./").unwrap().is_empty());
        assert!(matches!(
            entry_components(b"/etc/passwd"),
            Err(UnpackError::AbsolutePath { .. })
        ));
        assert!(matches!(
            entry_components(b"a/../../b"),
            Err(UnpackError::ParentTraversal { .. })
        ));
        assert!(matches!(
            entry_components(b".."),
            Err(UnpackError::ParentTraversal { .. })
        ));
        let deep = "a/".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            entry_components(deep.as_bytes()),
            Err(UnpackError::PathTooDeep { .. })
        ));
    }

    #[test]
    fn hardlink_names_are_in_root() {
        assert_eq!(
            hardlink_components(b"/usr/bin/x", "e").unwrap(),
            vec!["usr", "bin", "x"]
        );
        assert!(matches!(
            hardlink_components(b"../../etc/shadow", "e"),
            Err(UnpackError::HardlinkEscape { .. })
        ));
        assert!(hardlink_components(b"/", "e").is_err());
    }

    #[test]
    fn resolve_follows_in_root_and_refuses_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("real/sub", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("real/up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let r = RootDir::open(&root).unwrap();
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();

        let fd = r
            .resolve_dir(&os(&["abs", "sub"]), false, "e")
            .unwrap()
            .unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        let want = std::fs::metadata(root.join("real/sub")).unwrap();
        assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&want));

        assert!(r.resolve_dir(&os(&["rel"]), false, "e").unwrap().is_some());
        assert!(matches!(
            r.resolve_dir(&os(&["real", "up"]), false, "e"),
            Err(UnpackError::SymlinkEscape { .. })
        ));
        assert!(matches!(
            r.resolve_dir(&os(&["loop"]), false, "e"),
            Err(UnpackError::TooManySymlinks { .. })
        ));
        assert!(matches!(
            r.resolve_dir(&os(&["file", "x"]), true, "e"),
            Err(UnpackError::NotADirectory { .. })
        ));
        assert!(
            r.resolve_dir(&os(&["missing"]), false, "e")
                .unwrap()
                .is_none()
        );
        r.resolve_dir(&os(&["abs", "new", "deeper"]), true, "e")
            .unwrap()
            .unwrap();
        assert!(root.join("real/new/deeper").is_dir());
        assert!(!tmp.path().join("new").exists());
    }
}
