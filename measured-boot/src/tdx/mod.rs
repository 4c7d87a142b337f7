//! Intel TDX: MRTD from TDVF metadata, CCEL event-log replay into RTMRs, and
//! the measurement registers of a TD quote.

pub mod eventlog;
pub mod mrtd;
pub mod pe;
pub mod quote;
pub mod rtmr;

/// A 48-byte TDX measurement register (MRTD, RTMRn, MRCONFIGID).
pub type Mr48 = [u8; 48];
