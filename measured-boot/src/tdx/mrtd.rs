//! MRTD of a TD booted from a TDVF (OVMF with TDX support) image.
//!
//! The TDVF descriptor is found through the OVMF footer GUID table (entry
//! `e47a6535-984a-4798-865e-4685a7bf8ec2`: u32 offset from the image end). It
//! lists sections (`DataOffset u32, RawDataSize u32, MemoryAddress u64,
//! MemoryDataSize u64, Type u32, Attributes u32`). The VMM adds every page of
//! every section that is not PAGE.AUG (TDH.MEM.PAGE.ADD: the GPA is
//! measured) and, for sections with MR.EXTEND, extends the page contents in
//! 256-byte chunks (TDH.MR.EXTEND: the GPA and the chunk are measured). MRTD
//! is SHA-384 over the 128-byte records of those operations, in order.

use sha2::{Digest, Sha384};

use super::Mr48;
use crate::error::{MeasureError, le_u32, le_u64};
use crate::firmware::FooterTable;
use crate::guid::Guid;

/// GUID of the footer entry locating the TDVF descriptor.
pub const TDX_METADATA_OFFSET_GUID: Guid = Guid::parse("e47a6535-984a-4798-865e-4685a7bf8ec2");
/// Section attribute: extend the contents into MRTD.
pub const ATTR_MR_EXTEND: u32 = 1;
/// Section attribute: the pages are added after boot (PAGE.AUG), not measured.
pub const ATTR_PAGE_AUG: u32 = 2;
const PAGE: u64 = 4096;
const CHUNK: usize = 256;
/// Upper bound on measured pages (a 64 GiB TD's worth), to bound work on hostile input.
const MAX_PAGES: u64 = 16 * 1024 * 1024;

/// The order in which the VMM issues PAGE.ADD and MR.EXTEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageAddOrder {
    /// For each page: PAGE.ADD then its 16 MR.EXTENDs (upstream KVM/QEMU).
    #[default]
    SinglePass,
    /// For each section: all PAGE.ADDs, then all MR.EXTENDs (older TDX QEMU trees).
    TwoPass,
}

/// One TDVF section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section data in the image.
    pub data_offset: u32,
    /// Size of the section data in the image.
    pub raw_data_size: u32,
    /// Guest-physical address.
    pub memory_address: u64,
    /// Size in guest memory.
    pub memory_data_size: u64,
    /// Section type (0 BFV, 1 CFV, 2 TD_HOB, 3 TEMP_MEM, 4 PERM_MEM, 5 PAYLOAD, 6 PAYLOAD_PARAM).
    pub section_type: u32,
    /// Attributes ([`ATTR_MR_EXTEND`], [`ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

/// A TDVF image and its sections.
#[derive(Debug, Clone)]
pub struct Tdvf {
    image: Vec<u8>,
    /// The sections, in descriptor order.
    pub sections: Vec<TdvfSection>,
}

fn fw_err(msg: String) -> MeasureError {
    MeasureError::Firmware(msg)
}

impl Tdvf {
    /// Parses the TDVF descriptor of `image`.
    pub fn parse(image: Vec<u8>) -> Result<Self, MeasureError> {
        let table = FooterTable::parse(&image)?;
        let from_end = table
            .get_u32(&image, &TDX_METADATA_OFFSET_GUID)
            .ok_or_else(|| {
                fw_err(format!(
                    "no TDX metadata entry ({TDX_METADATA_OFFSET_GUID}) in the OVMF footer table: not a TDVF build"
                ))
            })? as usize;
        let at = image.len().checked_sub(from_end).ok_or_else(|| {
            fw_err(format!(
                "TDVF descriptor offset {from_end:#x} points before the image start"
            ))
        })?;
        let hdr = image
            .get(at..at + 16)
            .ok_or_else(|| fw_err("TDVF descriptor header is truncated".into()))?;
        if &hdr[..4] != b"TDVF" {
            return Err(fw_err(format!(
                "wrong TDVF descriptor signature {:02x?} (expected \"TDVF\")",
                &hdr[..4]
            )));
        }
        let length = le_u32(hdr, 4).unwrap_or(0) as usize;
        let version = le_u32(hdr, 8).unwrap_or(0);
        let count = le_u32(hdr, 12).unwrap_or(0) as usize;
        if version != 1 {
            return Err(fw_err(format!(
                "unsupported TDVF descriptor version {version}"
            )));
        }
        let needed = count.checked_mul(32).and_then(|n| n.checked_add(16));
        if needed.is_none_or(|n| n > length || at + length > image.len()) {
            return Err(fw_err(format!(
                "truncated TDVF descriptor: {count} sections do not fit in its {length} bytes"
            )));
        }
        let mut sections: Vec<TdvfSection> = Vec::with_capacity(count);
        let mut pages = 0u64;
        for i in 0..count {
            let o = at + 16 + 32 * i;
            let s = TdvfSection {
                data_offset: le_u32(&image, o).unwrap_or(0),
                raw_data_size: le_u32(&image, o + 4).unwrap_or(0),
                memory_address: le_u64(&image, o + 8).unwrap_or(0),
                memory_data_size: le_u64(&image, o + 16).unwrap_or(0),
                section_type: le_u32(&image, o + 24).unwrap_or(0),
                attributes: le_u32(&image, o + 28).unwrap_or(0),
            };
            if !s.memory_address.is_multiple_of(PAGE) || !s.memory_data_size.is_multiple_of(PAGE) {
                return Err(fw_err(format!(
                    "TDVF section {i} at {:#x}+{:#x} is not page aligned",
                    s.memory_address, s.memory_data_size
                )));
            }
            let end = s
                .memory_address
                .checked_add(s.memory_data_size)
                .ok_or_else(|| fw_err(format!("TDVF section {i} wraps the address space")))?;
            if u64::from(s.raw_data_size) > s.memory_data_size {
                return Err(fw_err(format!(
                    "TDVF section {i}: raw size {:#x} exceeds memory size {:#x}",
                    s.raw_data_size, s.memory_data_size
                )));
            }
            if s.attributes & ATTR_MR_EXTEND != 0
                && u64::from(s.data_offset) + s.memory_data_size > image.len() as u64
            {
                return Err(fw_err(format!(
                    "TDVF section {i}: measured data {:#x}+{:#x} lies outside the {}-byte image",
                    s.data_offset,
                    s.memory_data_size,
                    image.len()
                )));
            }
            if let Some(o) = sections.iter().find(|o| {
                s.memory_address < o.memory_address + o.memory_data_size && o.memory_address < end
            }) {
                return Err(fw_err(format!(
                    "TDVF section {i} ({:#x}+{:#x}) overlaps section at {:#x}+{:#x}",
                    s.memory_address, s.memory_data_size, o.memory_address, o.memory_data_size
                )));
            }
            pages += s.memory_data_size / PAGE;
            if pages > MAX_PAGES {
                return Err(fw_err(format!(
                    "TDVF sections declare more than {MAX_PAGES} pages"
                )));
            }
            sections.push(s);
        }
        Ok(Self { image, sections })
    }

    /// MRTD with the given PAGE.ADD / MR.EXTEND order.
    pub fn mrtd(&self, order: PageAddOrder) -> Mr48 {
        let mut h = Sha384::new();
        for s in &self.sections {
            let pages = s.memory_data_size / PAGE;
            let add = |h: &mut Sha384, p: u64| {
                if s.attributes & ATTR_PAGE_AUG == 0 {
                    h.update(record(b"MEM.PAGE.ADD", s.memory_address + p * PAGE));
                }
            };
            let extend = |h: &mut Sha384, p: u64| {
                if s.attributes & ATTR_MR_EXTEND == 0 {
                    return;
                }
                let base = s.data_offset as usize + (p * PAGE) as usize;
                for c in 0..(PAGE as usize / CHUNK) {
                    let gpa = s.memory_address + p * PAGE + (c * CHUNK) as u64;
                    h.update(record(b"MR.EXTEND", gpa));
                    // Range checked in `parse`.
                    h.update(&self.image[base + c * CHUNK..base + (c + 1) * CHUNK]);
                }
            };
            match order {
                PageAddOrder::SinglePass => {
                    for p in 0..pages {
                        add(&mut h, p);
                        extend(&mut h, p);
                    }
                }
                PageAddOrder::TwoPass => {
                    (0..pages).for_each(|p| add(&mut h, p));
                    (0..pages).for_each(|p| extend(&mut h, p));
                }
            }
        }
        h.finalize().into()
    }
}

/// The 128-byte record of a TDX module operation: ASCII name padded to 16, GPA, zeros.
fn record(name: &[u8], gpa: u64) -> [u8; 128] {
    let mut r = [0u8; 128];
    r[..name.len()].copy_from_slice(name);
    r[16..24].copy_from_slice(&gpa.to_le_bytes());
    r
}
