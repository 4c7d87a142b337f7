//! Expected launch measurements (SNP launch digest, TDX MRTD/RTMR) and reference values.
//!
//! - [`snp`]: the AMD SEV-SNP launch digest, byte-identical to `sev-snp-measure`.
//! - [`tdx`]: TDX MRTD from TDVF metadata, and CCEL event-log replay into RTMRs.
//! - [`initdata`]: the initdata digest and its HOST_DATA / MRCONFIGID forms.
//! - [`explain`]: which input accounts for a digest difference.
//! - [`refvalues`]: reference values for our KBS and for trustee's RVPS.
#![deny(unsafe_code)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod explain;
pub mod firmware;
pub mod guid;
pub mod initdata;
pub mod refvalues;
pub mod snp;
pub mod tdx;

pub use error::MeasureError;
