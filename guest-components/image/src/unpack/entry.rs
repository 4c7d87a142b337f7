//! Applying tar entries onto the root, one layer after the other.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Bound;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::limits::{BlockPadder, LimitKind, MeteredReader, UnpackLimits};
use super::path::{
    RootDir, clear_dir_keeping, display, entry_components, hardlink_components, lstat_at,
    remove_all_at,
};
use super::{Compression, UnpackError, UnpackSummary};

/// How many skipped special files are listed by name in the summary.
const MAX_LISTED_SPECIAL: usize = 32;
/// Copy buffer for file contents.
const COPY_BUFFER: usize = 256 * 1024;

/// Applies layers, in order, to one root directory. See the [module docs](super).
#[derive(Debug)]
pub struct Unpacker {
    root: RootDir,
    limits: UnpackLimits,
    apply_ownership: bool,
    summary: UnpackSummary,
    buffer: Vec<u8>,
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// What one layer has written so far: whiteouts only apply to lower layers.
#[derive(Default)]
struct LayerState {
    /// Paths of the layer's entries (ordered, so that everything below a path is one range).
    created: BTreeSet<Vec<OsString>>,
    dir_times: Vec<(Vec<OsString>, i64)>,
    /// Length of the real tar stream once its end was reached (see [`BlockPadder`]).
    stream_end: Rc<Cell<Option<u64>>>,
    /// What is left of the total byte budget (see [`MeteredReader`]).
    budget_left: Rc<Cell<u64>>,
}

impl LayerState {
    /// Whether this layer wrote `path` itself or anything below it (which makes `path` a
    /// directory of this layer, if only an implied one).
    fn wrote_at_or_below(&self, path: &[OsString]) -> bool {
        // All paths that start with `path` sort together, right from `path` on.
        self.created
            .range::<[OsString], _>((Bound::Included(path), Bound::Unbounded))
            .next()
            .is_some_and(|first| first.starts_with(path))
    }
}

fn io_err(context: impl Into<String>, errno: Errno) -> UnpackError {
    UnpackError::Io {
        context: context.into(),
        source: errno.into(),
    }
}

impl Unpacker {
    /// Start unpacking into `root`, an existing directory (normally empty). Ownership from the
    /// archive is applied when running as root.
    pub fn new(root: &Path, limits: UnpackLimits) -> Result<Self, UnpackError> {
        Ok(Self {
            root: RootDir::open(root)?,
            limits,
            apply_ownership: rustix::process::geteuid().is_root(),
            summary: UnpackSummary::default(),
            buffer: vec![0u8; COPY_BUFFER],
        })
    }

    /// Whether to chown entries to the archive's uid/gid (default: when running as root).
    pub fn set_apply_ownership(&mut self, apply: bool) {
        self.apply_ownership = apply;
    }

    /// What has been done so far.
    pub fn summary(&self) -> &UnpackSummary {
        &self.summary
    }

    /// Finish and return the counts.
    pub fn into_summary(self) -> UnpackSummary {
        self.summary
    }

    /// Apply one layer read from `reader` (compressed as given) and return its diff_id
    /// (`sha256:` of the uncompressed tar stream, read to its end).
    pub fn unpack_layer<R: Read>(
        &mut self,
        reader: R,
        compression: Compression,
    ) -> Result<String, UnpackError> {
        match compression {
            Compression::None => self.unpack_tar(BufReader::with_capacity(COPY_BUFFER, reader)),
            Compression::Gzip => self.unpack_tar(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(COPY_BUFFER, reader),
            )),
            Compression::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                    COPY_BUFFER,
                    reader,
                ))
                .map_err(UnpackError::Corrupt)?;
                self.unpack_tar(decoder)
            }
        }
    }

    fn unpack_tar<D: Read>(&mut self, decoded: D) -> Result<String, UnpackError> {
        let remaining = self
            .limits
            .max_total_bytes
            .saturating_sub(self.summary.bytes);
        let mut layer = LayerState::default();
        let padded = BlockPadder::new(
            MeteredReader::new(decoded, remaining, layer.budget_left.clone()),
            layer.stream_end.clone(),
        );
        let mut archive = tar::Archive::new(padded);
        let applied = self.apply_entries(&mut archive, &mut layer);
        let mut padded = archive.into_inner();
        // The diff_id covers the whole stream, end-of-archive blocks and padding included.
        let drained = applied.and_then(|()| {
            io::copy(&mut padded, &mut io::sink())
                .map(|_| ())
                .map_err(UnpackError::Corrupt)
        });
        let metered = padded.into_inner();
        self.summary.bytes += metered.consumed();
        if metered.exceeded() {
            return Err(UnpackError::LimitExceeded {
                kind: LimitKind::TotalBytes,
                limit: self.limits.max_total_bytes,
            });
        }
        drained?;
        for (dir, mtime) in &layer.dir_times {
            // Best effort: the directory may have been replaced later in the layer.
            if let Ok(Some(fd)) = self.root.resolve_dir(dir, false, &display(dir)) {
                let _ = rustix::fs::futimens(&fd, &times(*mtime));
            }
        }
        self.summary.layers += 1;
        Ok(metered.finish())
    }

    fn apply_entries<R: Read>(
        &mut self,
        archive: &mut tar::Archive<R>,
        layer: &mut LayerState,
    ) -> Result<(), UnpackError> {
        for entry in archive.entries().map_err(UnpackError::Corrupt)? {
            let mut entry = entry.map_err(UnpackError::Corrupt)?;
            self.summary.entries += 1;
            if self.summary.entries > self.limits.max_entries {
                return Err(UnpackError::LimitExceeded {
                    kind: LimitKind::Entries,
                    limit: self.limits.max_entries,
                });
            }
            self.apply_entry(&mut entry, layer)?;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        layer: &mut LayerState,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        if kind == EntryType::GNUSparse {
            // Refused before anything is created: see `UnpackError::SparseEntry`.
            return Err(UnpackError::SparseEntry {
                entry: name,
                format: "GNU type S",
            });
        }
        let comps = entry_components(&raw_name)?;
        let Some((leaf, parent)) = comps.split_last() else {
            // The root itself ("./"): its metadata belongs to the runtime, not the image.
            return Ok(());
        };
        if let Some(whiteout) = leaf.as_bytes().strip_prefix(b".wh.") {
            return self.whiteout(parent, whiteout, &name, layer);
        }
        let meta = read_meta(entry, &name)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                self.write_file(entry, parent, leaf, &meta, &name, layer)?;
                let data_end = entry.raw_file_position().saturating_add(entry.size());
                if layer.stream_end.get().is_some_and(|end| data_end > end) {
                    return Err(UnpackError::Corrupt(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("layer stream ends inside the data of {name}"),
                    )));
                }
                self.summary.files += 1;
            }
            EntryType::Directory => {
                self.make_dir(parent, leaf, &meta, &name)?;
                layer.dir_times.push((comps.clone(), meta.mtime));
                self.summary.directories += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(UnpackError::EmptySymlink { entry: name });
                }
                self.make_symlink(parent, leaf, &target, &meta, &name)?;
                self.summary.symlinks += 1;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                self.make_hardlink(parent, leaf, &target, &name)?;
                self.summary.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                tracing::debug!(entry = %name, "skipping device node or fifo");
                self.summary.skipped_special += 1;
                if self.summary.skipped_special_names.len() < MAX_LISTED_SPECIAL {
                    self.summary.skipped_special_names.push(name);
                }
                return Ok(());
            }
            other => {
                tracing::debug!(entry = %name, kind = ?other, "skipping unsupported tar entry type");
                self.summary.skipped_other += 1;
                return Ok(());
            }
        }
        layer.created.insert(comps);
        Ok(())
    }

    fn parent_dir(&self, parent: &[OsString], entry: &str) -> Result<OwnedFd, UnpackError> {
        self.root
            .resolve_dir(parent, true, entry)?
            .ok_or_else(|| io_err(format!("creating the parent of {entry}"), Errno::NOENT))
    }

    fn whiteout(
        &mut self,
        parent: &[OsString],
        whiteout: &[u8],
        entry: &str,
        layer: &mut LayerState,
    ) -> Result<(), UnpackError> {
        let keep = |path: &[OsString]| layer.wrote_at_or_below(path);
        if whiteout == b".wh..opq" {
            // Hides everything the lower layers put below the directory, at any depth; what
            // this layer wrote there, before or after the marker, stays (OCI image spec,
            // "Opaque Whiteout"; umoci 0.4.7 unpacks to the same trees, and containerd's
            // naive applier also walks the whole directory).
            let dir = self.parent_dir(parent, entry)?;
            clear_dir_keeping(&dir, &mut parent.to_vec(), &keep, 0)?;
            self.summary.whiteouts += 1;
            if !parent.is_empty() {
                // The marker makes its directory part of this layer (an opaque one).
                layer.created.insert(parent.to_vec());
            }
            return Ok(());
        }
        if whiteout.starts_with(b".wh.") {
            // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): not part of the tree.
            self.summary.skipped_other += 1;
            return Ok(());
        }
        if whiteout.is_empty() || whiteout == b"." || whiteout == b".." {
            return Err(UnpackError::InvalidWhiteout {
                entry: entry.to_owned(),
            });
        }
        let target = OsStr::from_bytes(whiteout);
        let mut path = parent.to_vec();
        path.push(target.to_os_string());
        self.summary.whiteouts += 1;
        let Some(dir) = self.root.resolve_dir(parent, false, entry)? else {
            return Ok(());
        };
        if !layer.wrote_at_or_below(&path) {
            return remove_all_at(&dir, target, 0);
        }
        // The layer also wrote this path or below it: whiteouts only apply to lower layers
        // (OCI image spec), so keep the layer's own entries and hide the lower content below
        // them, as umoci 0.4.7 does.
        if lstat_at(&dir, target)? != Some(FileType::Directory) {
            return Ok(());
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let sub = rustix::fs::openat(&dir, target, flags, Mode::empty()).map_err(|e| {
            io_err(
                format!("opening {} for whiteout {entry}", display(&path)),
                e,
            )
        })?;
        clear_dir_keeping(&sub, &mut path, &keep, 0)
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &[OsString],
        leaf: &OsStr,
        meta: &Meta,
        name: &str,
        layer: &LayerState,
    ) -> Result<(), UnpackError> {
        let size = entry.size();
        if size > self.limits.max_file_bytes {
            return Err(UnpackError::LimitExceeded {
                kind: LimitKind::FileBytes,
                limit: self.limits.max_file_bytes,
            });
        }
        // The data still has to come through the meter: refuse now what cannot fit, before
        // anything is created (the meter would stop it later, after writing the budget).
        if size > layer.budget_left.get() {
            return Err(UnpackError::LimitExceeded {
                kind: LimitKind::TotalBytes,
                limit: self.limits.max_total_bytes,
            });
        }
        let dir = self.parent_dir(parent, name)?;
        remove_all_at(&dir, leaf, 0)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, leaf, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_err(format!("creating {name}"), e))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Corrupt(e)),
            };
            written += n as u64;
            if written > self.limits.max_file_bytes {
                return Err(UnpackError::LimitExceeded {
                    kind: LimitKind::FileBytes,
                    limit: self.limits.max_file_bytes,
                });
            }
            file.write_all(&self.buffer[..n])
                .map_err(|e| UnpackError::Io {
                    context: format!("writing {name}"),
                    source: e,
                })?;
        }
        self.apply_meta(&file, meta, name)?;
        rustix::fs::futimens(&file, &times(meta.mtime))
            .map_err(|e| io_err(format!("setting times of {name}"), e))
    }

    fn make_dir(
        &mut self,
        parent: &[OsString],
        leaf: &OsStr,
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let dir = self.parent_dir(parent, name)?;
        match lstat_at(&dir, leaf)? {
            Some(FileType::Directory) => {}
            existing => {
                if existing.is_some() {
                    // Also replaces a symlink: never chmod/chown through one.
                    remove_all_at(&dir, leaf, 0)?;
                }
                match rustix::fs::mkdirat(&dir, leaf, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(format!("creating directory {name}"), e)),
                }
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, leaf, flags, Mode::empty())
            .map_err(|e| io_err(format!("opening directory {name}"), e))?;
        self.apply_meta(&fd, meta, name)
    }

    fn make_symlink(
        &mut self,
        parent: &[OsString],
        leaf: &OsStr,
        target: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), UnpackError> {
        let dir = self.parent_dir(parent, name)?;
        remove_all_at(&dir, leaf, 0)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, leaf)
            .map_err(|e| io_err(format!("creating symlink {name}"), e))?;
        if self.apply_ownership
            && let Some((uid, gid)) = ids(meta)
        {
            rustix::fs::chownat(&dir, leaf, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(format!("chown of symlink {name}"), e))?;
        }
        rustix::fs::utimensat(&dir, leaf, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(format!("setting times of symlink {name}"), e))
    }

    fn make_hardlink(
        &mut self,
        parent: &[OsString],
        leaf: &OsStr,
        target: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let target_comps = hardlink_components(target, name)?;
        let shown = String::from_utf8_lossy(target).into_owned();
        let missing = || UnpackError::HardlinkTargetMissing {
            entry: name.to_owned(),
            target: shown.clone(),
        };
        let (target_leaf, target_parent) = target_comps.split_last().ok_or_else(missing)?;
        let target_dir = self
            .root
            .resolve_dir(target_parent, false, name)?
            .ok_or_else(missing)?;
        let target_stat =
            match rustix::fs::statat(&target_dir, target_leaf, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => return Err(missing()),
                Err(e) => return Err(io_err(format!("inspecting hard link target of {name}"), e)),
            };
        if FileType::from_raw_mode(target_stat.st_mode) == FileType::Directory {
            return Err(UnpackError::HardlinkToDirectory {
                entry: name.to_owned(),
                target: shown,
            });
        }
        let dir = self.parent_dir(parent, name)?;
        if let Ok(st) = rustix::fs::statat(&dir, leaf, AtFlags::SYMLINK_NOFOLLOW)
            && st.st_dev == target_stat.st_dev
            && st.st_ino == target_stat.st_ino
        {
            return Ok(());
        }
        remove_all_at(&dir, leaf, 0)?;
        rustix::fs::linkat(&target_dir, target_leaf, &dir, leaf, AtFlags::empty())
            .map_err(|e| io_err(format!("creating hard link {name}"), e))
    }

    /// chown (first: it clears set-id bits), chmod, xattrs.
    fn apply_meta(&mut self, fd: impl AsFd, meta: &Meta, name: &str) -> Result<(), UnpackError> {
        let fd = fd.as_fd();
        if self.apply_ownership
            && let Some((uid, gid)) = ids(meta)
        {
            rustix::fs::fchown(fd, Some(uid), Some(gid))
                .map_err(|e| io_err(format!("chown of {name}"), e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io_err(format!("chmod of {name}"), e))?;
        for (key, value) in &meta.xattrs {
            if !xattr_allowed(key) {
                tracing::debug!(entry = %name, xattr = %key, "refusing extended attribute");
                self.summary.xattrs_not_applied += 1;
                continue;
            }
            if let Err(e) = rustix::fs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty()) {
                tracing::debug!(entry = %name, xattr = %key, error = %e, "cannot set xattr");
                self.summary.xattrs_not_applied += 1;
            }
        }
        Ok(())
    }
}

/// Extended attributes we set. Overlayfs' own attributes are refused: the rootfs may later be
/// an overlay lower directory, where `trusted.overlay.*` would change lookups.
fn xattr_allowed(key: &str) -> bool {
    let namespaced =
        key.starts_with("user.") || key.starts_with("security.") || key.starts_with("trusted.");
    namespaced && !key.starts_with("trusted.overlay.") && !key.starts_with("user.overlay.")
}

fn ids(meta: &Meta) -> Option<(Uid, Gid)> {
    let uid = u32::try_from(meta.uid).ok().filter(|v| *v != u32::MAX)?;
    let gid = u32::try_from(meta.gid).ok().filter(|v| *v != u32::MAX)?;
    Some((Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let header = entry.header();
    let mode = header.mode().map_err(UnpackError::Corrupt)? & 0o7777;
    let mut uid = header.uid().map_err(UnpackError::Corrupt)?;
    let mut gid = header.gid().map_err(UnpackError::Corrupt)?;
    let mut mtime = i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0);
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Corrupt)? {
        for ext in exts {
            let ext = ext.map_err(UnpackError::Corrupt)?;
            let Ok(key) = ext.key() else { continue };
            if key.starts_with("GNU.sparse.") {
                return Err(UnpackError::SparseEntry {
                    entry: name.to_owned(),
                    format: "PAX GNU.sparse records",
                });
            }
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse().ok())
            };
            match key {
                "uid" => uid = number().unwrap_or(uid),
                "gid" => gid = number().unwrap_or(gid),
                "mtime" => {
                    mtime = number()
                        .and_then(|v: u64| i64::try_from(v).ok())
                        .unwrap_or(mtime)
                }
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_owned(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}
