//! Safe unpacking of OCI layer tarballs into one flattened root filesystem.
//!
//! Layers are applied in order onto a single directory (no per-layer directories and no
//! overlay mount): whiteouts delete from what earlier layers wrote, opaque markers clear a
//! directory's lower content. Every filesystem operation is done relative to directory file
//! descriptors obtained by [`path::RootDir::resolve_dir`], so no entry can create, modify,
//! chmod, chown or link anything outside the root.

mod entry;
mod limits;
mod path;

use std::io;

pub use entry::Unpacker;
pub use limits::{DEFAULT_MAX_TOTAL_BYTES, LimitKind, UnpackLimits};

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (possibly several members, as Go's reader accepts).
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
}

impl Compression {
    /// The compression of a layer media type (OCI or Docker), ignoring a `+encrypted` suffix.
    /// Returns `None` for media types that are not layers this crate can unpack.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let base = media_type.strip_suffix("+encrypted").unwrap_or(media_type);
        match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Counts of what one [`Unpacker`] did, for logs and the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Layers applied.
    pub layers: usize,
    /// Tar entries seen.
    pub entries: u64,
    /// Uncompressed tar bytes read.
    pub bytes: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts (plain and opaque) applied.
    pub whiteouts: u64,
    /// Device nodes and FIFOs that were skipped (a container gets its /dev from the runtime).
    pub skipped_special: u64,
    /// The first few skipped special files, by name.
    pub skipped_special_names: Vec<String>,
    /// Entry types this unpacker does not materialise (e.g. GNU volume headers), skipped.
    pub skipped_other: u64,
    /// Extended attributes that could not be applied or were refused (best effort).
    pub xattrs_not_applied: u64,
}

/// Why an unpack was refused or failed. The destination may hold a partial tree afterwards;
/// [`crate::pull_image`] unpacks into a staging directory that it removes on error.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry name starts with `/`.
    #[error("refused tar entry {entry:?}: absolute path")]
    AbsolutePath {
        /// Entry name as found in the archive.
        entry: String,
    },
    /// An entry name contains a `..` component.
    #[error("refused tar entry {entry:?}: `..` path component")]
    ParentTraversal {
        /// Entry name.
        entry: String,
    },
    /// Writing the entry would go through a symlink whose target climbs out of the root.
    #[error("refused tar entry {entry:?}: symlink {link:?} -> {target:?} points outside the root")]
    SymlinkEscape {
        /// Entry name.
        entry: String,
        /// The symlink met on the way.
        link: String,
        /// Its target.
        target: String,
    },
    /// A hard link's target lies outside the root (`..`) or is empty.
    #[error("refused hard link {entry:?}: target {target:?} is outside the root")]
    HardlinkEscape {
        /// Entry name.
        entry: String,
        /// The link target as found in the archive.
        target: String,
    },
    /// A hard link's target does not exist (in this or an earlier layer).
    #[error("hard link {entry:?}: target {target:?} does not exist")]
    HardlinkTargetMissing {
        /// Entry name.
        entry: String,
        /// Target.
        target: String,
    },
    /// A hard link names a directory.
    #[error("refused hard link {entry:?}: target {target:?} is a directory")]
    HardlinkToDirectory {
        /// Entry name.
        entry: String,
        /// Target.
        target: String,
    },
    /// A whiteout with an empty, `.` or `..` name.
    #[error("refused whiteout {entry:?}: invalid name")]
    InvalidWhiteout {
        /// Entry name.
        entry: String,
    },
    /// A parent path component exists and is neither a directory nor a symlink.
    #[error("tar entry {entry:?}: parent component {component:?} is not a directory")]
    NotADirectory {
        /// Entry name.
        entry: String,
        /// The offending component.
        component: String,
    },
    /// Symlink resolution looped.
    #[error("tar entry {entry:?}: too many levels of symbolic links")]
    TooManySymlinks {
        /// Entry name.
        entry: String,
    },
    /// Too many nested directories.
    #[error("tar entry {entry:?}: path too deep")]
    PathTooDeep {
        /// Entry name.
        entry: String,
    },
    /// A symlink entry without a target.
    #[error("tar entry {entry:?}: symlink without a target")]
    EmptySymlink {
        /// Entry name.
        entry: String,
    },
    /// A sparse file entry: GNU type `S`, or a PAX header with `GNU.sparse.*` records (GNU
    /// tar's PAX sparse formats 0.0, 0.1 and 1.0). Refused: the holes of a type `S` entry are
    /// filled with zeros that never pass through the metered layer stream, so a few kilobytes
    /// of layer could fill guest memory past [`UnpackLimits::max_total_bytes`]; the PAX forms
    /// are not expanded by the tar reader and would be written as their packed encoding.
    /// Image builders (BuildKit, Buildah, umoci, Docker) do not write sparse entries.
    #[error(
        "refused tar entry {entry:?}: sparse file ({format}); sparse entries are not supported \
         because their holes would be written as zeros the unpack limits do not meter"
    )]
    SparseEntry {
        /// Entry name.
        entry: String,
        /// Which sparse encoding was found.
        format: &'static str,
    },
    /// A configured limit was reached (decompression bomb protection).
    #[error("refused layer: {kind} exceeds the limit of {limit}")]
    LimitExceeded {
        /// Which limit.
        kind: LimitKind,
        /// Its value.
        limit: u64,
    },
    /// The layer is not a valid tar stream or its compression is corrupt.
    #[error("corrupt layer stream: {0}")]
    Corrupt(#[source] io::Error),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}
