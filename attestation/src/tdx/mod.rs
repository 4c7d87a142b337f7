//! Intel TDX: quote/collateral inputs and verification.

pub mod quote;
pub mod verify;

pub use quote::{PcsSignedBody, QuoteCollateralV3, parse_collateral_json, parse_pcs_signed_body};
pub use verify::{INTEL_SGX_ROOT_CA_DER, TdxPolicy, TdxVerifyInput, verify_tdx};
