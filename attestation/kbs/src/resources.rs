//! Resources on disk: `<root>/<repository>/<type>/<tag>`.
//!
//! Every segment is validated (`A-Za-z0-9-_.`, not empty, not `.`/`..`, so no `/`
//! and no NUL); symlinks are refused on every component (`O_NOFOLLOW` on the file,
//! `symlink_metadata` on the directories) and the canonical path must stay under the
//! canonical root. Writes go to a temporary file in the same directory, then rename.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kbs_client::uri::validate_segment;
use zeroize::Zeroizing;

use crate::KbsError;

/// The resource directory.
#[derive(Debug, Clone)]
pub struct ResourceStore {
    root: PathBuf,
}

/// A validated `repo/type/tag` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath(pub [String; 3]);

impl ResourcePath {
    /// Validate the three segments.
    pub fn new(segments: &[&str]) -> Result<Self, KbsError> {
        let joined = segments.join("/");
        if segments.len() != 3 {
            return Err(KbsError::InvalidRequestPath(format!(
                "resource/{joined}: expected repository/type/tag"
            )));
        }
        for s in segments {
            validate_segment(s)
                .map_err(|r| KbsError::InvalidRequestPath(format!("resource/{joined}: {r}")))?;
        }
        Ok(Self([
            segments[0].to_string(),
            segments[1].to_string(),
            segments[2].to_string(),
        ]))
    }

    /// `repo/type/tag`.
    pub fn joined(&self) -> String {
        self.0.join("/")
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> KbsError {
    KbsError::PluginInternal(format!("{what} {}: {e}", path.display()))
}

impl ResourceStore {
    /// Open (and create) the resource directory.
    pub fn open(root: &Path) -> Result<Self, KbsError> {
        std::fs::create_dir_all(root)
            .map_err(|e| KbsError::Config(format!("resource_dir {}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| KbsError::Config(format!("resource_dir {}: {e}", root.display())))?;
        Ok(Self { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Check that no directory component below the root is a symlink, creating
    /// missing directories when `create`.
    fn directory(&self, path: &ResourcePath, create: bool) -> Result<Option<PathBuf>, KbsError> {
        let mut dir = self.root.clone();
        for seg in &path.0[..2] {
            dir.push(seg);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                    return Err(KbsError::PluginInternal(format!(
                        "{} is not a plain directory",
                        dir.display()
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_err("create", &dir, e)),
                    }
                }
                Err(e) => return Err(io_err("stat", &dir, e)),
            }
        }
        let canonical = dir.canonicalize().map_err(|e| io_err("resolve", &dir, e))?;
        if !canonical.starts_with(&self.root) {
            return Err(KbsError::PluginInternal(format!(
                "{} escapes the resource directory",
                dir.display()
            )));
        }
        Ok(Some(canonical))
    }

    /// Read a resource (at most `limit` bytes); `Ok(None)` when it does not exist.
    pub fn read(
        &self,
        path: &ResourcePath,
        limit: usize,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KbsError> {
        let Some(dir) = self.directory(path, false)? else {
            return Ok(None);
        };
        let file = dir.join(&path.0[2]);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&file)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &file, e)),
        };
        let meta = f.metadata().map_err(|e| io_err("stat", &file, e))?;
        if !meta.is_file() {
            return Err(KbsError::PluginInternal(format!(
                "{} is not a regular file",
                file.display()
            )));
        }
        let mut buf = Zeroizing::new(Vec::new());
        (&mut f)
            .take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io_err("read", &file, e))?;
        if buf.len() > limit {
            return Err(KbsError::PluginInternal(format!(
                "{} is larger than {limit} bytes",
                file.display()
            )));
        }
        Ok(Some(buf))
    }

    /// Write a resource atomically (temp file + rename), mode 0600.
    pub fn write(&self, path: &ResourcePath, bytes: &[u8]) -> Result<(), KbsError> {
        let dir = self
            .directory(path, true)?
            .ok_or_else(|| KbsError::PluginInternal("directory vanished".into()))?;
        let target = dir.join(&path.0[2]);
        if let Ok(m) = std::fs::symlink_metadata(&target)
            && !m.is_file()
        {
            return Err(KbsError::PluginInternal(format!(
                "{} exists and is not a regular file",
                target.display()
            )));
        }
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.0[2],
            crate::session::random_id()
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        let result = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("write", &target, e));
        }
        Ok(())
    }

    /// Delete a resource; `Ok(false)` when it did not exist.
    pub fn delete(&self, path: &ResourcePath) -> Result<bool, KbsError> {
        let Some(dir) = self.directory(path, false)? else {
            return Ok(false);
        };
        let target = dir.join(&path.0[2]);
        match std::fs::symlink_metadata(&target) {
            Ok(m) if !m.is_file() => Err(KbsError::PluginInternal(format!(
                "{} is not a regular file",
                target.display()
            ))),
            Ok(_) => std::fs::remove_file(&target)
                .map(|()| true)
                .map_err(|e| io_err("delete", &target, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("stat", &target, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_validated() {
        assert!(ResourcePath::new(&["a", "b", "c"]).is_ok());
        for bad in [
            vec!["a", "b"],
            vec!["a", "..", "c"],
            vec!["a", ".", "c"],
            vec!["a", "", "c"],
            vec!["a", "b\0", "c"],
            vec!["a", "b%2f", "c"],
            vec!["a", "b", "c", "d"],
        ] {
            assert!(
                matches!(
                    ResourcePath::new(&bad),
                    Err(KbsError::InvalidRequestPath(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn write_read_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResourceStore::open(&dir.path().join("res")).unwrap();
        let p = ResourcePath::new(&["default", "key", "k1"]).unwrap();
        assert!(store.read(&p, 100).unwrap().is_none());
        store.write(&p, b"secret").unwrap();
        assert_eq!(store.read(&p, 100).unwrap().unwrap().as_slice(), b"secret");
        store.write(&p, b"secret2").unwrap();
        assert_eq!(store.read(&p, 100).unwrap().unwrap().as_slice(), b"secret2");
        assert!(store.read(&p, 3).is_err(), "over the size limit");

        // A symlinked tag pointing outside the root is refused.
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"host file").unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("default/key/link")).unwrap();
        let l = ResourcePath::new(&["default", "key", "link"]).unwrap();
        assert!(store.read(&l, 100).is_err());
        // A symlinked directory is refused for read and write.
        std::os::unix::fs::symlink(dir.path(), store.root().join("evil")).unwrap();
        let e = ResourcePath::new(&["evil", "res", "x"]).unwrap();
        assert!(store.read(&e, 100).is_err());
        assert!(store.write(&e, b"x").is_err());
        assert!(!dir.path().join("res/x").exists());
        // Delete: the symlinked tag and directory are refused, the link target survives.
        assert!(store.delete(&l).is_err());
        assert!(store.delete(&e).is_err());
        assert!(outside.exists());
    }

    #[test]
    fn delete_removes_only_the_named_resource() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResourceStore::open(&dir.path().join("res")).unwrap();
        let p = ResourcePath::new(&["default", "key", "k1"]).unwrap();
        let q = ResourcePath::new(&["default", "key", "k2"]).unwrap();
        assert!(!store.delete(&p).unwrap(), "absent resource");
        store.write(&p, b"one").unwrap();
        store.write(&q, b"two").unwrap();
        assert!(store.delete(&p).unwrap());
        assert!(store.read(&p, 100).unwrap().is_none());
        assert!(!store.delete(&p).unwrap(), "already deleted");
        assert_eq!(store.read(&q, 100).unwrap().unwrap().as_slice(), b"two");
    }
}
