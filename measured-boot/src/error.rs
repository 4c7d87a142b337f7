//! The error type shared by every measurement in this crate.

use std::path::PathBuf;

/// Everything that can go wrong while computing or checking a measurement.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A file named as a measurement input could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Io {
        /// What the file was meant to be ("firmware", "kernel", ...).
        what: &'static str,
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The firmware image is malformed or lacks something the measurement needs.
    #[error("firmware: {0}")]
    Firmware(String),
    /// A measurement input is invalid (empty kernel, zero vCPUs, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The vCPU type is not one of the QEMU models `sev-snp-measure` knows.
    #[error("unknown vCPU type {name:?}; known types: {known}")]
    UnknownVcpuType {
        /// The name that was given.
        name: String,
        /// The accepted names, comma separated.
        known: String,
    },
    /// The VMM type is not QEMU, ec2 or gce.
    #[error("unknown VMM type {0:?}; known types: QEMU, ec2, gce")]
    UnknownVmmType(String),
    /// The event log is malformed.
    #[error("event log: {0}")]
    EventLog(String),
    /// Replaying the event log does not give the register values that were reported.
    #[error("event log replay mismatch for {register}: log gives {replayed}, quote has {reported}")]
    ReplayMismatch {
        /// The register name, e.g. "RTMR1".
        register: String,
        /// Hex of the replayed value.
        replayed: String,
        /// Hex of the reported value.
        reported: String,
    },
    /// An event's data is not what its digest says was measured: for the event types
    /// whose digest is defined as the hash of (part of) the event data, the SHA-384 of
    /// that data differs from the recorded SHA-384 digest.
    #[error(
        "event log: event {index} ({event_type}, at offset {offset:#x}): {detail}; \
         its data does not match its SHA-384 digest, so it is not what was measured"
    )]
    EventDataMismatch {
        /// 0-based index of the event among the log's TCG_PCR_EVENT2 records.
        index: usize,
        /// The event type's name (e.g. `EV_PLATFORM_CONFIG_FLAGS "td_payload_info"`).
        event_type: String,
        /// Byte offset of the record in the log.
        offset: usize,
        /// What was compared (e.g. the hash of the data and the recorded digest).
        detail: String,
    },
    /// A TDX quote is malformed.
    #[error("TDX quote: {0}")]
    Quote(String),
    /// An initdata document is malformed or uses an unsupported version/algorithm.
    #[error("initdata: {0}")]
    Initdata(String),
    /// A kernel image is not a PE/COFF (EFI stub) image the firmware could measure.
    #[error("kernel PE image: {0}")]
    PeImage(String),
}

impl MeasureError {
    /// Builds an [`MeasureError::Io`] for `path`.
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a little-endian `u16` at `off`, if the bytes are there.
pub(crate) fn le_u16(data: &[u8], off: usize) -> Option<u16> {
    let b = data.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian `u32` at `off`, if the bytes are there.
pub(crate) fn le_u32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian `u64` at `off`, if the bytes are there.
pub(crate) fn le_u64(data: &[u8], off: usize) -> Option<u64> {
    let b = data.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}
