//! The one error type of this crate.

use crate::reference::Mismatch;

/// Why evidence could not be produced, parsed, verified or appraised.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// Input bytes or JSON do not have the expected shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (e.g. "SNP report").
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A signature does not verify.
    #[error("signature check failed: {0}")]
    Signature(String),
    /// A certificate chain does not lead to a trusted root, or a certificate is unusable.
    #[error("certificate chain: {0}")]
    CertificateChain(String),
    /// A certificate or collateral item is not valid at the verification time.
    #[error("not valid at {now}: {reason}")]
    Validity {
        /// The verification time (RFC 3339).
        now: String,
        /// Which item is expired or not yet valid.
        reason: String,
    },
    /// The endorsement key's TCB / hardware-ID extensions do not match the report,
    /// or TCB matching against Intel's TCB info failed.
    #[error("TCB check failed: {0}")]
    Tcb(String),
    /// The evidence is authentic but violates the verifier policy (debug, SMT, ...).
    #[error("policy violation: {0}")]
    Policy(String),
    /// The hardware report_data does not equal the expected value.
    #[error("report_data mismatch: expected {expected}, evidence has {found}")]
    ReportDataMismatch {
        /// Expected value (hex, after padding/truncation).
        expected: String,
        /// Value in the evidence (hex).
        found: String,
    },
    /// Claims do not match the reference values.
    #[error("reference values not matched: {}", crate::reference::describe(.0))]
    Appraisal(Vec<Mismatch>),
    /// Something needed for verification was not supplied (collateral, VEK, ...).
    #[error("missing input: {0}")]
    MissingInput(String),
    /// The TEE device is missing or failed.
    #[error("TEE device: {0}")]
    Device(String),
    /// No TEE was detected on this machine.
    #[error("no TEE device detected (looked for configfs-tsm tdx_guest and /dev/sev-guest)")]
    NoTee,
    /// A request that this build does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl AttestationError {
    /// Shorthand for [`AttestationError::Malformed`].
    pub fn malformed(what: impl Into<String>, reason: impl ToString) -> Self {
        Self::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`AttestationError::Io`].
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
