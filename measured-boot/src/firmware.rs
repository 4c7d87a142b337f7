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

/// The bytes of a firmware image: read into memory, or mapped from its file.
///
/// Mapping saves the copy and the page faults of a fresh buffer, which are a fifth of a
/// `cocoon measure snp` run on a 2 MiB OVMF (the rest is hashing).
#[derive(Debug)]
pub enum FirmwareImage {
    /// Bytes in memory (tests, callers that already hold the image).
    Owned(Vec<u8>),
    /// A read-only private mapping of the file, populated at map time.
    Mapped(memmap2::Mmap),
}

impl FirmwareImage {
    /// Maps the file at `path` (`what` names it in errors). An empty file gives an empty
    /// image, which the parsers reject with their own message.
    #[allow(unsafe_code)] // the crate's one unsafe block: see SAFETY below.
    pub fn map(what: &'static str, path: &std::path::Path) -> Result<Self, MeasureError> {
        let file = std::fs::File::open(path).map_err(|e| MeasureError::io(what, path, e))?;
        let len = file
            .metadata()
            .map_err(|e| MeasureError::io(what, path, e))?
            .len();
        if len == 0 {
            return Ok(Self::Owned(Vec::new()));
        }
        // SAFETY: the mapping is read-only and private, and the file is an input this
        // process only reads. Another process writing to it while we hash would change the
        // digest's input, as it would for read(2); one truncating it would raise SIGBUS and
        // end the run with no output written.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| MeasureError::io(what, path, e))?;
        Ok(Self::Mapped(map))
    }
}

impl std::ops::Deref for FirmwareImage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Mapped(m) => m,
        }
    }
}

impl From<Vec<u8>> for FirmwareImage {
    fn from(v: Vec<u8>) -> Self {
        Self::Owned(v)
    }
}

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
