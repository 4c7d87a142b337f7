//! TEE evidence (TDX, SNP, sample) and its verification against reference values.
//!
//! * [`report_data`]: the KBS 0.4.0 binding of nonce + tee-pubkey into report_data.
//! * [`evidence`]: CoCo's evidence JSON formats and the [`Tee`] names.
//! * [`attester`]: evidence from the hardware (configfs-tsm, /dev/sev-guest) and the
//!   fenced sample attester; all TEE device access lives here.
//! * [`snp`], [`tdx`], [`sample`]: verifiers producing [`Claims`]; [`verify()`] dispatches.
//! * [`reference`]: [`ReferenceValues`] and [`appraise`].
#![forbid(unsafe_code)]

pub mod attester;
pub mod claims;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod evidence;
pub mod reference;
pub mod report_data;
pub mod sample;
pub mod snp;
pub mod tdx;
pub mod time;
pub mod verify;

pub use attester::{Attester, detect_tee};
pub use claims::Claims;
pub use error::AttestationError;
pub use evidence::{SampleEvidence, SnpEvidence, TdxEvidence, Tee};
pub use reference::{Appraisal, AppraisalPolicy, Mismatch, ReferenceValues, appraise};
pub use report_data::{HashAlgorithm, TeePubKey, runtime_data_digest};
pub use snp::SnpPolicy;
pub use tdx::TdxPolicy;
pub use verify::{VerifyOptions, verify};
