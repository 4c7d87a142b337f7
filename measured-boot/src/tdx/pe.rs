//! The Authenticode digest of a PE/COFF image, as UEFI firmware computes it when it
//! measures an EFI application (edk2 `DxeTpm2MeasureBootLib` / `DxeTdxMeasureBootLib`):
//! the headers without the `CheckSum` field and the certificate-table directory entry,
//! then every section's raw data in file order, then whatever follows the sections
//! except the attribute certificate table.
//!
//! A Linux bzImage with an EFI stub is such an image; its digest is the kernel event
//! (EV_EFI_BOOT_SERVICES_APPLICATION) of RTMR1 in an OVMF direct boot.

use sha2::Digest;

use crate::error::{MeasureError, le_u16, le_u32};

/// PE32 optional-header magic.
const PE32_MAGIC: u16 = 0x10b;
/// PE32+ optional-header magic.
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// Index of the certificate table in the data directories.
const CERT_DIR_INDEX: usize = 4;
/// Size of one section header.
const SECTION_HEADER_LEN: usize = 40;

fn bad(msg: impl Into<String>) -> MeasureError {
    MeasureError::PeImage(msg.into())
}

fn slice(image: &[u8], start: usize, end: usize, what: &str) -> Result<usize, MeasureError> {
    if start > end || end > image.len() {
        return Err(bad(format!(
            "{what} ({start:#x}..{end:#x}) lies outside the {}-byte image",
            image.len()
        )));
    }
    Ok(end - start)
}

/// The Authenticode digest of `image` with hash `D` (SHA-384 for TDX RTMRs, SHA-256
/// for what `osslsigncode` prints about a SHA-256-signed image).
pub fn authenticode_digest<D: Digest>(image: &[u8]) -> Result<Vec<u8>, MeasureError> {
    if image.get(..2) != Some(b"MZ".as_slice()) {
        return Err(bad("no MZ (DOS) header: not an EFI-stub kernel"));
    }
    let pe = le_u32(image, 0x3c).ok_or_else(|| bad("truncated DOS header"))? as usize;
    if image.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0".as_slice()) {
        return Err(bad(format!(
            "no PE signature at {pe:#x}: the kernel has no EFI stub"
        )));
    }
    let coff = pe + 4;
    let sections =
        usize::from(le_u16(image, coff + 2).ok_or_else(|| bad("truncated COFF header"))?);
    let opt_len =
        usize::from(le_u16(image, coff + 16).ok_or_else(|| bad("truncated COFF header"))?);
    let opt = coff + 20;
    let magic = le_u16(image, opt).ok_or_else(|| bad("truncated optional header"))?;
    let (dirs_count_at, dirs_at) = match magic {
        PE32_MAGIC => (opt + 92, opt + 96),
        PE32_PLUS_MAGIC => (opt + 108, opt + 112),
        m => return Err(bad(format!("unknown optional-header magic {m:#x}"))),
    };
    let checksum_at = opt + 64;
    let headers_len =
        le_u32(image, opt + 60).ok_or_else(|| bad("truncated optional header"))? as usize;
    let dirs =
        le_u32(image, dirs_count_at).ok_or_else(|| bad("truncated optional header"))? as usize;
    let cert_entry_at = (dirs > CERT_DIR_INDEX).then_some(dirs_at + CERT_DIR_INDEX * 8);
    let cert_len = match cert_entry_at {
        Some(at) => {
            le_u32(image, at + 4).ok_or_else(|| bad("truncated data directories"))? as usize
        }
        None => 0,
    };

    let mut h = D::new();
    slice(image, 0, checksum_at, "header before CheckSum")?;
    h.update(&image[..checksum_at]);
    match cert_entry_at {
        Some(at) => {
            slice(
                image,
                checksum_at + 4,
                at,
                "header before the certificate entry",
            )?;
            h.update(&image[checksum_at + 4..at]);
            slice(image, at + 8, headers_len, "rest of the headers")?;
            h.update(&image[at + 8..headers_len]);
        }
        None => {
            slice(image, checksum_at + 4, headers_len, "headers")?;
            h.update(&image[checksum_at + 4..headers_len]);
        }
    }
    let table = opt + opt_len;
    let mut raw: Vec<(usize, usize)> = Vec::with_capacity(sections);
    for i in 0..sections {
        let s = table + i * SECTION_HEADER_LEN;
        let size = le_u32(image, s + 16).ok_or_else(|| bad("truncated section table"))? as usize;
        let ptr = le_u32(image, s + 20).ok_or_else(|| bad("truncated section table"))? as usize;
        if size > 0 {
            raw.push((ptr, size));
        }
    }
    raw.sort_unstable();
    let mut hashed = headers_len;
    for (ptr, size) in raw {
        slice(image, ptr, ptr.saturating_add(size), "section data")?;
        h.update(&image[ptr..ptr + size]);
        hashed += size;
    }
    if image.len() > hashed + cert_len {
        h.update(&image[hashed..image.len() - cert_len]);
    }
    Ok(h.finalize().to_vec())
}

/// The SHA-384 Authenticode digest (what OVMF extends into RTMR1 for the kernel).
pub fn authenticode_sha384(image: &[u8]) -> Result<[u8; 48], MeasureError> {
    let d = authenticode_digest::<sha2::Sha384>(image)?;
    let mut out = [0u8; 48];
    out.copy_from_slice(&d);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_pe_inputs_are_rejected_with_a_reason() {
        let e = authenticode_sha384(b"\x7fELF....").unwrap_err().to_string();
        assert!(e.contains("no MZ"), "{e}");
        let mut img = vec![0u8; 0x100];
        img[..2].copy_from_slice(b"MZ");
        img[0x3c] = 0x80;
        let e = authenticode_sha384(&img).unwrap_err().to_string();
        assert!(e.contains("no PE signature"), "{e}");
    }
}
