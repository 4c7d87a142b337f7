//! AMD SEV-SNP: report parsing, certificate chain and verification.

pub mod certs;
pub mod report;
pub mod verify;

pub use certs::{VekExtensions, VekKind, verify_vek_chain};
pub use report::{Product, SnpReport, SnpTcb};
pub use verify::{SnpPolicy, SnpVerifyInput, verify_snp};
