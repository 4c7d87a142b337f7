//! SEV-specific firmware metadata: the SEV metadata sections ("ASEV"), the
//! SEV-ES reset block and the SEV hashes-table location.

use crate::error::{MeasureError, le_u32};
use crate::firmware::{FirmwareImage, FooterTable};
use crate::guid::Guid;

/// GUID of the footer entry giving the SEV hashes table GPA (u32) and size.
pub const SEV_HASH_TABLE_RV_GUID: Guid = Guid::parse("7255371f-3a3b-4b04-927b-1da6efa8d454");
/// GUID of the footer entry giving the AP reset vector (u32) for SEV-ES/SNP.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::parse("00f771de-1a7e-4fcb-890e-68c77e2fb44e");
/// GUID of the footer entry giving the offset from the image end of the SEV metadata.
pub const OVMF_SEV_METADATA_GUID: Guid = Guid::parse("dc886566-984a-4798-a75e-5585a7bf67cc");

/// The firmware is mapped so that it ends at 4 GiB.
const FOUR_GIB: u64 = 0x1_0000_0000;
/// Size of the "ASEV" metadata header.
const METADATA_HEADER: usize = 16;
/// Size of one metadata section descriptor.
const SECTION_DESC: usize = 12;
/// Page size.
pub const PAGE: u64 = 4096;

/// The kinds of sections OVMF declares in its SEV metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// Memory pre-validated by the firmware (SEC heap, page tables): zero pages.
    SnpSecMem,
    /// The SNP secrets page.
    SnpSecrets,
    /// The CPUID page.
    Cpuid,
    /// The SVSM calling-area page: zero pages.
    SvsmCaa,
    /// The page holding the SEV hashes table for measured direct boot.
    SnpKernelHashes,
}

impl SectionType {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::SnpSecMem,
            2 => Self::SnpSecrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::SnpKernelHashes,
            _ => return None,
        })
    }
}

/// One SEV metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataSection {
    /// Guest-physical address.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// What the section holds.
    pub kind: SectionType,
}

/// An OVMF image parsed for SEV-SNP measurement.
#[derive(Debug)]
pub struct SevFirmware {
    /// The whole image.
    pub image: FirmwareImage,
    /// Guest-physical address of the first byte of the image.
    pub gpa: u64,
    /// The SEV metadata sections, in declaration order.
    pub sections: Vec<MetadataSection>,
    /// The AP reset EIP from the SEV-ES reset block (0 if none).
    pub sev_es_reset_eip: Option<u32>,
    /// The GPA of the SEV hashes table, if the firmware declares one.
    pub hashes_table_gpa: Option<u32>,
}

impl SevFirmware {
    /// Parses `image` (a whole OVMF build, or its last pages: only the
    /// metadata near the end and the image length matter for the layout).
    pub fn parse(image: impl Into<FirmwareImage>) -> Result<Self, MeasureError> {
        let image = image.into();
        if image.is_empty() || !(image.len() as u64).is_multiple_of(PAGE) {
            return Err(MeasureError::Firmware(format!(
                "image size {} is not a non-zero multiple of 4096 bytes",
                image.len()
            )));
        }
        if image.len() as u64 > FOUR_GIB {
            return Err(MeasureError::Firmware(
                "image larger than 4 GiB".to_string(),
            ));
        }
        let table = FooterTable::parse(&image)?;
        let sections = parse_sev_metadata(&image, &table)?;
        let sev_es_reset_eip = table.get_u32(&image, &SEV_ES_RESET_BLOCK_GUID);
        let hashes_table_gpa = table.get_u32(&image, &SEV_HASH_TABLE_RV_GUID);
        let gpa = FOUR_GIB - image.len() as u64;
        Ok(Self {
            image,
            gpa,
            sections,
            sev_es_reset_eip,
            hashes_table_gpa,
        })
    }

    /// Whether the metadata has a section of `kind`.
    pub fn has_section(&self, kind: SectionType) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }
}

fn parse_sev_metadata(
    image: &[u8],
    table: &FooterTable,
) -> Result<Vec<MetadataSection>, MeasureError> {
    let offset_from_end = table
        .get_u32(image, &OVMF_SEV_METADATA_GUID)
        .ok_or_else(|| {
            MeasureError::Firmware(format!(
                "no SEV metadata entry ({OVMF_SEV_METADATA_GUID}) in the OVMF footer table: not an SEV-SNP capable build"
            ))
        })? as usize;
    let start = image.len().checked_sub(offset_from_end).ok_or_else(|| {
        MeasureError::Firmware(format!(
            "SEV metadata offset {offset_from_end:#x} points before the start of the {}-byte image",
            image.len()
        ))
    })?;
    let header = image
        .get(start..start + METADATA_HEADER)
        .ok_or_else(|| MeasureError::Firmware("SEV metadata header is truncated".to_string()))?;
    if &header[0..4] != b"ASEV" {
        return Err(MeasureError::Firmware(format!(
            "wrong SEV metadata signature {:02x?} (expected \"ASEV\")",
            &header[0..4]
        )));
    }
    let size = le_u32(header, 4).unwrap_or(0) as usize;
    let version = le_u32(header, 8).unwrap_or(0);
    let count = le_u32(header, 12).unwrap_or(0) as usize;
    if version != 1 {
        return Err(MeasureError::Firmware(format!(
            "unsupported SEV metadata version {version} (expected 1)"
        )));
    }
    let items_end = start.checked_add(size).filter(|&e| e <= image.len());
    let items = items_end
        .and_then(|e| image.get(start + METADATA_HEADER..e))
        .ok_or_else(|| {
            MeasureError::Firmware(format!(
                "SEV metadata of {size} bytes at offset {start:#x} runs past the end of the image"
            ))
        })?;
    let needed = count.saturating_mul(SECTION_DESC);
    if needed > items.len() {
        return Err(MeasureError::Firmware(format!(
            "truncated SEV metadata: {count} sections need {needed} bytes, header declares {}",
            items.len()
        )));
    }
    let mut sections: Vec<MetadataSection> = Vec::with_capacity(count);
    for i in 0..count {
        let off = i * SECTION_DESC;
        let gpa = u64::from(le_u32(items, off).unwrap_or(0));
        let size = u64::from(le_u32(items, off + 4).unwrap_or(0));
        let raw = le_u32(items, off + 8).unwrap_or(0);
        let kind = SectionType::from_raw(raw).ok_or_else(|| {
            MeasureError::Firmware(format!(
                "SEV metadata section {i} has unknown type {raw:#x}"
            ))
        })?;
        if !gpa.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) || size == 0 {
            return Err(MeasureError::Firmware(format!(
                "SEV metadata section {i} ({kind:?}) at {gpa:#x} size {size:#x} is not page aligned"
            )));
        }
        if let Some(other) = sections
            .iter()
            .find(|o| gpa < o.gpa + o.size && o.gpa < gpa + size)
        {
            return Err(MeasureError::Firmware(format!(
                "SEV metadata section {i} ({kind:?}, {gpa:#x}+{size:#x}) overlaps {:?} at {:#x}+{:#x}",
                other.kind, other.gpa, other.size
            )));
        }
        sections.push(MetadataSection { gpa, size, kind });
    }
    Ok(sections)
}
