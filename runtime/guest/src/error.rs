//! The error type of guest asset builds.

use crate::bzimage::BzImageError;
use crate::cpio::CpioError;
use crate::modules::ModuleError;
use std::path::PathBuf;
use thiserror::Error;

/// Why guest assets could not be built or loaded.
#[derive(Debug, Error)]
pub enum GuestBuildError {
    /// `guest-kernel.toml` is malformed or names something unsafe.
    #[error("invalid kernel pin: {0}")]
    InvalidPin(String),
    /// The agent binary to use as `/init` is missing or unreadable.
    #[error("agent binary {path}: {source}")]
    AgentBinaryMissing {
        /// The path given in the spec.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// A binary (the agent or one of its shared libraries) cannot be prepared for the guest.
    #[error("{what}: {reason}")]
    InvalidBinary {
        /// The binary or library.
        what: String,
        /// What is wrong with it (not an ELF, a missing library, ...).
        reason: String,
    },
    /// `apt-get download` failed or produced no `.deb`.
    #[error("apt-get download {package}={version} failed: {detail}")]
    AptDownload {
        /// The package asked for.
        package: String,
        /// The version asked for.
        version: String,
        /// Exit status and stderr, or what was missing.
        detail: String,
    },
    /// The `.deb` does not have the pinned sha256 (corrupt download or wrong pin).
    #[error("{path}: sha256 is {actual}, but guest-kernel.toml pins {expected}")]
    DebChecksumMismatch {
        /// The downloaded file.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the file.
        actual: String,
    },
    /// `dpkg-deb -x` failed.
    #[error("extracting {path} with dpkg-deb failed: {detail}")]
    DebExtract {
        /// The `.deb` file.
        path: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
    /// The extracted package lacks a file the build needs.
    #[error("kernel package has no {0}")]
    KernelFileMissing(PathBuf),
    /// The kernel image could not be decoded.
    #[error(transparent)]
    BzImage(#[from] BzImageError),
    /// Module lookup or ordering failed.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The initramfs archive could not be assembled.
    #[error("initramfs: {0}")]
    Cpio(#[from] CpioError),
    /// An extra file given by the caller could not be read or has an unsupported type.
    #[error("extra file {guest_path} from {host_path}: {reason}")]
    ExtraFile {
        /// Where it should go in the guest.
        guest_path: String,
        /// Where it was read from.
        host_path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The kernel command line cannot be passed to a kernel.
    #[error("invalid kernel command line: {0}")]
    InvalidCmdline(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `manifest.json` is missing, malformed, or disagrees with the files next to it.
    #[error("guest manifest {path}: {reason}")]
    Manifest {
        /// The manifest or asset file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Builds a closure mapping an `io::Error` to [`GuestBuildError::Io`] for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> GuestBuildError {
    let path = path.to_path_buf();
    move |source| GuestBuildError::Io { path, source }
}
