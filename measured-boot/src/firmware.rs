//! The OVMF footer GUID table, shared by the SEV and TDX firmware metadata.
//!
//! OVMF ends with a table of GUID-tagged entries that grows downwards from
//! 32 bytes before the end of the image. Each entry is `data ‖ u16 size ‖ GUID`
//! (size counts the whole entry). The last entry (nearest the end) is the
//! table footer, whose size is the size of the whole table.

use crate::error::{MeasureError, le_u16, le_u32};
use crate::guid::Guid;

/// GUID of the footer entry that closes the OVMF table.
pub const OVMF_TABLE_FOOTER_GUID: Guid = Guid::parse("96b582de-1fb2-45f7-baea-a366c55a082d");

/// Size of an entry header: u16 size + 16-byte GUID.
const ENTRY_HEADER: usize = 18;
/// The table ends this many bytes before the end of the image.
const TABLE_END_FROM_IMAGE_END: usize = 32;

/// One entry of the footer table: its GUID and the byte range of its data in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterEntry {
    /// The entry's GUID.
    pub guid: Guid,
    /// Offset of the entry data in the image.
    pub data_offset: usize,
    /// Length of the entry data.
    pub data_len: usize,
}

/// The parsed footer GUID table of a firmware image.
#[derive(Debug, Clone, Default)]
pub struct FooterTable {
    /// Entries in the order they are read (from the end of the image backwards).
    pub entries: Vec<FooterEntry>,
}

impl FooterTable {
    /// Parses the footer table of `image`.
    ///
    /// Errors name what is wrong: an image too small to hold a footer, a footer
    /// GUID that is not the OVMF table GUID, or entries that run outside the table.
    pub fn parse(image: &[u8]) -> Result<Self, MeasureError> {
        let footer_at = image
            .len()
            .checked_sub(TABLE_END_FROM_IMAGE_END + ENTRY_HEADER)
            .ok_or_else(|| {
                MeasureError::Firmware(format!(
                    "image of {} bytes is too small to hold an OVMF footer table",
                    image.len()
                ))
            })?;
        let footer_guid = Guid::from_slice(&image[footer_at + 2..]).ok_or_else(|| {
            MeasureError::Firmware("image too small for the footer GUID".to_string())
        })?;
        if footer_guid != OVMF_TABLE_FOOTER_GUID {
            return Err(MeasureError::Firmware(format!(
                "no OVMF footer GUID table: expected GUID {OVMF_TABLE_FOOTER_GUID} at offset {:#x}, found {footer_guid}",
                footer_at + 2
            )));
        }
        let table_size = usize::from(le_u16(image, footer_at).unwrap_or(0));
        let table_size = table_size.checked_sub(ENTRY_HEADER).ok_or_else(|| {
            MeasureError::Firmware(format!(
                "OVMF footer table size {table_size} is smaller than its own header"
            ))
        })?;
        let table_start = footer_at.checked_sub(table_size).ok_or_else(|| {
            MeasureError::Firmware(format!(
                "OVMF footer table of {table_size} bytes runs past the start of the image"
            ))
        })?;
        let mut entries = Vec::new();
        // Walk backwards from the footer through [table_start, end).
        let mut end = footer_at;
        while end - table_start >= ENTRY_HEADER {
            let header = end - ENTRY_HEADER;
            let size = usize::from(le_u16(image, header).unwrap_or(0));
            let guid = Guid::from_slice(&image[header + 2..]).ok_or_else(|| {
                MeasureError::Firmware("truncated footer table entry".to_string())
            })?;
            if size < ENTRY_HEADER {
                return Err(MeasureError::Firmware(format!(
                    "OVMF footer table entry {guid} has invalid size {size} (< {ENTRY_HEADER})"
                )));
            }
            if size > end - table_start {
                return Err(MeasureError::Firmware(format!(
                    "OVMF footer table entry {guid} of {size} bytes runs past the start of the table"
                )));
            }
            entries.push(FooterEntry {
                guid,
                data_offset: end - size,
                data_len: size - ENTRY_HEADER,
            });
            end -= size;
        }
        tracing::debug!(entries = entries.len(), "parsed OVMF footer table");
        Ok(Self { entries })
    }

    /// The data of the entry with `guid`. If several entries share a GUID, the one
    /// nearest the start of the image wins (as in `sev-snp-measure`).
    pub fn get<'a>(&self, image: &'a [u8], guid: &Guid) -> Option<&'a [u8]> {
        let e = self.entries.iter().rev().find(|e| &e.guid == guid)?;
        image.get(e.data_offset..e.data_offset + e.data_len)
    }

    /// The first four bytes of the entry with `guid` as a little-endian `u32`.
    pub fn get_u32(&self, image: &[u8], guid: &Guid) -> Option<u32> {
        le_u32(self.get(image, guid)?, 0)
    }
}
