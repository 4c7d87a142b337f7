//! CopyFile: the host copies small files (hostname, resolv.conf, secrets of the pod spec) into
//! a shared directory of the guest, in chunks of at most 1 MiB with increasing offsets.
//!
//! Rules: the path must be absolute and canonical (no `.`/`..` components, no repeated or
//! trailing `/`) and lie strictly under the copy root (`/run/kata-containers/shared`). Every
//! existing component below the root must be a real directory, never a symlink, so nothing is
//! written outside the root even if an earlier CopyFile planted a symlink; the last component
//! is opened with `O_NOFOLLOW`. A regular file is assembled in a hidden sibling and renamed
//! into place when the last chunk arrived. Directories and symlinks (target in `data`) are
//! created as sent (`file_mode` carries the S_IFMT type).

use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use agent_protocol::AgentError;
use agent_protocol::types::{CopyFileRequest, CopyFileType};

/// The default root under which CopyFile may write.
pub const DEFAULT_COPY_ROOT: &str = "/run/kata-containers/shared";
/// Largest file CopyFile accepts (the guest's /run is RAM).
pub const MAX_COPY_FILE_BYTES: i64 = 256 << 20;

/// Writes files sent by the host under one root directory.
#[derive(Debug, Clone)]
pub struct CopyFileService {
    root: PathBuf,
}

fn bad(msg: impl Into<String>) -> AgentError {
    AgentError::invalid_argument(msg)
}

fn io_err(what: &str, path: &str, e: std::io::Error) -> AgentError {
    AgentError::internal(format!("CopyFile {path:?}: {what}: {e}"))
}

impl CopyFileService {
    /// A service writing below `root` (absolute).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CopyFileService { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks `path` and returns the components below the root.
    fn relative<'a>(&self, path: &'a str) -> Result<Vec<&'a OsStr>, AgentError> {
        if path.contains('\0') {
            return Err(bad("CopyFile path contains a NUL byte"));
        }
        if !path.starts_with('/') {
            return Err(bad(format!("CopyFile path {path:?} is not absolute")));
        }
        if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
            return Err(bad(format!("CopyFile path {path:?} is not canonical")));
        }
        let mut comps = Vec::new();
        for c in path.split('/').skip(1) {
            if c == "." || c == ".." {
                return Err(bad(format!(
                    "CopyFile path {path:?} is not canonical (contains . or ..)"
                )));
            }
            comps.push(OsStr::new(c));
        }
        let root: Vec<&OsStr> = self
            .root
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if comps.len() <= root.len() || comps[..root.len()] != root[..] {
            return Err(bad(format!(
                "CopyFile path {path:?} is outside {}",
                self.root.display()
            )));
        }
        Ok(comps[root.len()..].to_vec())
    }

    /// Handles one CopyFile chunk.
    pub fn copy(&self, req: &CopyFileRequest) -> Result<(), AgentError> {
        let rel = self.relative(&req.path)?;
        let kind = CopyFileType::from_mode(req.file_mode);
        if kind == CopyFileType::Unknown {
            return Err(bad(format!(
                "CopyFile {:?}: file_mode {:o} is not a regular file, directory or symlink",
                req.path, req.file_mode
            )));
        }
        let dir_mode = match req.dir_mode & 0o7777 {
            0 => 0o755,
            m => m,
        };
        // Walk (and create) the parents: real directories only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.root)
            .map_err(|e| io_err("create copy root", &req.path, e))?;
        let (last, parents) = rel.split_last().ok_or_else(|| bad("empty CopyFile path"))?;
        let mut dir = self.root.clone();
        for comp in parents {
            dir.push(comp);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(bad(format!(
                        "CopyFile {:?}: {} is a symlink or not a directory",
                        req.path,
                        dir.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new()
                        .mode(dir_mode)
                        .create(&dir)
                        .map_err(|e| io_err("create directory", &req.path, e))?;
                }
                Err(e) => return Err(io_err("inspect directory", &req.path, e)),
            }
        }
        let target = dir.join(last);
        let perm = req.file_mode & 0o7777;
        match kind {
            CopyFileType::Directory => self.make_dir(req, &target, perm),
            CopyFileType::Symlink => self.make_symlink(req, &target),
            _ => self.write_chunk(req, &dir, last, &target, perm),
        }
    }

    fn make_dir(&self, req: &CopyFileRequest, target: &Path, perm: u32) -> Result<(), AgentError> {
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(bad(format!(
                    "CopyFile {:?}: exists and is not a directory",
                    req.path
                )));
            }
            Err(_) => std::fs::DirBuilder::new()
                .mode(perm)
                .create(target)
                .map_err(|e| io_err("create directory", &req.path, e))?,
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(perm))
            .map_err(|e| io_err("chmod", &req.path, e))?;
        chown(target, req, &req.path)
    }

    fn make_symlink(&self, req: &CopyFileRequest, target: &Path) -> Result<(), AgentError> {
        if req.data.is_empty() {
            return Err(bad(format!(
                "CopyFile {:?}: symlink without a target",
                req.path
            )));
        }
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                return Err(bad(format!(
                    "CopyFile {:?}: a directory is in the way",
                    req.path
                )));
            }
            Ok(_) => std::fs::remove_file(target).map_err(|e| io_err("replace", &req.path, e))?,
            Err(_) => {}
        }
        // The link itself is never followed by the agent (O_NOFOLLOW / symlink_metadata), so
        // its target may point anywhere without letting CopyFile write there.
        std::os::unix::fs::symlink(OsStr::from_bytes(&req.data), target)
            .map_err(|e| io_err("create symlink", &req.path, e))?;
        chown(target, req, &req.path)
    }

    fn write_chunk(
        &self,
        req: &CopyFileRequest,
        dir: &Path,
        name: &OsStr,
        target: &Path,
        perm: u32,
    ) -> Result<(), AgentError> {
        let (size, offset) = (req.file_size, req.offset);
        if !(0..=MAX_COPY_FILE_BYTES).contains(&size) {
            return Err(bad(format!(
                "CopyFile {:?}: file_size {size} out of range (max {MAX_COPY_FILE_BYTES})",
                req.path
            )));
        }
        let end = offset.checked_add(req.data.len() as i64);
        if offset < 0 || end.is_none_or(|e| e > size) {
            return Err(bad(format!(
                "CopyFile {:?}: chunk at offset {offset} with {} bytes does not fit file_size {size}",
                req.path,
                req.data.len()
            )));
        }
        if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
            return Err(bad(format!(
                "CopyFile {:?}: a directory is in the way",
                req.path
            )));
        }
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(".cocoon-partial");
        let partial = dir.join(partial_name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600);
        if offset == 0 {
            opts.create(true).truncate(true);
        }
        let mut file = opts.open(&partial).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => bad(format!(
                "CopyFile {:?}: chunk at offset {offset} without the earlier chunks",
                req.path
            )),
            Some(libc::ELOOP) => bad(format!("CopyFile {:?}: refusing a symlink", req.path)),
            _ => io_err("open", &req.path, e),
        })?;
        file.seek(SeekFrom::Start(offset as u64))
            .and_then(|_| file.write_all(&req.data))
            .map_err(|e| io_err("write", &req.path, e))?;
        if end != Some(size) {
            return Ok(());
        }
        file.set_permissions(std::fs::Permissions::from_mode(perm))
            .map_err(|e| io_err("chmod", &req.path, e))?;
        if req.uid >= 0 || req.gid >= 0 {
            std::os::unix::fs::fchown(
                &file,
                u32::try_from(req.uid).ok(),
                u32::try_from(req.gid).ok(),
            )
            .map_err(|e| io_err("chown", &req.path, e))?;
        }
        drop(file);
        std::fs::rename(&partial, target).map_err(|e| io_err("rename into place", &req.path, e))
    }
}

fn chown(target: &Path, req: &CopyFileRequest, shown: &str) -> Result<(), AgentError> {
    if req.uid < 0 && req.gid < 0 {
        return Ok(());
    }
    std::os::unix::fs::lchown(
        target,
        u32::try_from(req.uid).ok(),
        u32::try_from(req.gid).ok(),
    )
    .map_err(|e| io_err("chown", shown, e))
}

#[cfg(test)]
mod tests {
    use agent_protocol::Code;

    use super::*;

    const REG: u32 = 0o100_644;

    fn svc() -> (tempfile::TempDir, CopyFileService) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("run/kata-containers/shared");
        (t, CopyFileService::new(root))
    }

    fn req(path: &str, mode: u32, size: i64, offset: i64, data: &[u8]) -> CopyFileRequest {
        CopyFileRequest {
            path: path.into(),
            file_size: size,
            file_mode: mode,
            dir_mode: 0o750,
            uid: -1,
            gid: -1,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn chunks_with_offsets_assemble_the_file() {
        let (_t, s) = svc();
        let p = format!("{}/containers/c1/hostname", s.root().display());
        let body: Vec<u8> = (0..3000u32).map(|i| (i % 256) as u8).collect();
        s.copy(&req(&p, REG, 3000, 0, &body[..1000])).unwrap();
        assert!(!Path::new(&p).exists(), "not visible before the last chunk");
        s.copy(&req(&p, REG, 3000, 1000, &body[1000..2000]))
            .unwrap();
        s.copy(&req(&p, REG, 3000, 2000, &body[2000..])).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), body);
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let parent = std::fs::metadata(Path::new(&p).parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o750);
        // Dirs and symlinks.
        let d = format!("{}/containers/c1/dir", s.root().display());
        s.copy(&req(&d, 0o040_700, 0, 0, b"")).unwrap();
        assert!(std::fs::metadata(&d).unwrap().is_dir());
        let l = format!("{}/containers/c1/link", s.root().display());
        s.copy(&req(&l, 0o120_777, 0, 0, b"hostname")).unwrap();
        assert_eq!(std::fs::read_link(&l).unwrap(), Path::new("hostname"));
    }

    #[test]
    fn traversal_and_non_canonical_paths_are_refused() {
        let (t, s) = svc();
        let root = s.root().display().to_string();
        for p in [
            "/run/../etc/shadow".to_string(),
            "/etc/shadow".to_string(),
            format!("{root}/../../etc/shadow"),
            format!("{root}/a/./b"),
            format!("{root}//a"),
            format!("{root}/a/"),
            "relative/file".to_string(),
            root.clone(),
        ] {
            let err = s.copy(&req(&p, REG, 1, 0, b"x")).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{p}");
            assert!(err.message().contains("CopyFile path"), "{}", err.message());
        }
        assert!(!t.path().join("etc").exists());
    }

    #[test]
    fn symlinks_are_never_followed_out_of_the_root() {
        let (t, s) = svc();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let root = s.root().display().to_string();
        // A planted symlink to a directory outside the root.
        s.copy(&req(
            &format!("{root}/escape"),
            0o120_777,
            0,
            0,
            outside.as_os_str().as_bytes(),
        ))
        .unwrap();
        let err = s
            .copy(&req(&format!("{root}/escape/owned"), REG, 1, 0, b"x"))
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("symlink"), "{}", err.message());
        // A symlink as the final component is replaced atomically, never written through.
        let victim = outside.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = format!("{root}/file");
        s.copy(&req(&link, 0o120_777, 0, 0, victim.as_os_str().as_bytes()))
            .unwrap();
        s.copy(&req(&link, REG, 3, 0, b"new")).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(&link).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert!(!outside.join("owned").exists());
    }

    #[test]
    fn bad_sizes_and_orphan_chunks() {
        let (_t, s) = svc();
        let p = format!("{}/f", s.root().display());
        for r in [
            req(&p, REG, 2, 0, b"abc"),
            req(&p, REG, -1, 0, b""),
            req(&p, REG, 10, -5, b"x"),
            req(&p, REG, MAX_COPY_FILE_BYTES + 1, 0, b""),
            req(&p, 0o060_600, 1, 0, b"x"),
        ] {
            assert_eq!(s.copy(&r).unwrap_err().code(), Code::InvalidArgument);
        }
        let err = s.copy(&req(&p, REG, 10, 5, b"x")).unwrap_err();
        assert!(
            err.message().contains("earlier chunks"),
            "{}",
            err.message()
        );
    }
}
