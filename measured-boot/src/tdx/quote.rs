//! The measurement registers of a TDX quote (v4, or v5 with a TD 1.0/1.5 body).

use super::Mr48;
use crate::error::{MeasureError, le_u16, le_u32};

/// Size of the quote header.
const HEADER: usize = 48;
/// TEE type of TDX in the quote header.
const TEE_TYPE_TDX: u32 = 0x81;

/// The measurement registers of a TD report body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteMeasurements {
    /// MRTD: the build-time measurement of the TD (firmware).
    pub mrtd: Mr48,
    /// MRCONFIGID (the initdata digest under Kata/CoCo).
    pub mrconfigid: Mr48,
    /// RTMR0..3.
    pub rtmrs: [Mr48; 4],
}

fn mr(body: &[u8], off: usize) -> Mr48 {
    let mut m = [0u8; 48];
    m.copy_from_slice(&body[off..off + 48]);
    m
}

impl QuoteMeasurements {
    /// Reads the registers from a raw quote. The quote's signature is not checked
    /// here (that is the attestation crate's job).
    pub fn from_quote(quote: &[u8]) -> Result<Self, MeasureError> {
        let version = le_u16(quote, 0)
            .ok_or_else(|| MeasureError::Quote("shorter than its header".into()))?;
        let tee = le_u32(quote, 4).unwrap_or(0);
        if tee != TEE_TYPE_TDX {
            return Err(MeasureError::Quote(format!(
                "TEE type {tee:#x} is not TDX (0x81)"
            )));
        }
        let body_at = match version {
            4 => HEADER,
            // v5: u16 body type, u32 body size, then the body.
            5 => HEADER + 6,
            v => {
                return Err(MeasureError::Quote(format!(
                    "unsupported quote version {v}"
                )));
            }
        };
        let body = quote
            .get(body_at..body_at + 584)
            .ok_or_else(|| MeasureError::Quote(format!("truncated: {} bytes", quote.len())))?;
        Ok(Self {
            mrtd: mr(body, 136),
            mrconfigid: mr(body, 184),
            rtmrs: [mr(body, 328), mr(body, 376), mr(body, 424), mr(body, 472)],
        })
    }
}
