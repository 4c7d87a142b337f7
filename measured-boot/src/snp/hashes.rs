//! The SEV hashes table QEMU writes for measured direct boot (`kernel-hashes=on`).
//!
//! Layout (packed, little-endian), padded to a multiple of 16 bytes:
//! `table GUID ‖ u16 len ‖ {cmdline, initrd, kernel}` where each entry is
//! `GUID ‖ u16 len (50) ‖ SHA-256`. The command line is hashed with its
//! trailing NUL; a missing initrd hashes as the empty string.

use sha2::{Digest, Sha256};

use crate::guid::Guid;

const TABLE_GUID: Guid = Guid::parse("9438d606-4f22-4cc9-b479-a793d411fd21");
const KERNEL_GUID: Guid = Guid::parse("4de79437-abd2-427f-b835-d5b172d2045b");
const INITRD_GUID: Guid = Guid::parse("44baf731-3a2f-4bd7-9af1-41e29169781d");
const CMDLINE_GUID: Guid = Guid::parse("97d02dd8-bd20-4c94-aa78-e7714d36ab2a");

const ENTRY_LEN: usize = 16 + 2 + 32;
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// Length of the table after padding to 16 bytes.
pub const PADDED_TABLE_LEN: usize = (TABLE_LEN + 15) & !15;

/// SHA-256 digests of the three direct-boot components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the kernel image.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of the empty string when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line including its trailing NUL.
    pub cmdline: [u8; 32],
}

impl SevHashes {
    /// Hashes the components as QEMU does.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&str>) -> Self {
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            cmdline: cmdline_hash(cmdline),
        }
    }

    /// The padded table bytes.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&TABLE_GUID.0);
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        let entries = [
            (CMDLINE_GUID, &self.cmdline),
            (INITRD_GUID, &self.initrd),
            (KERNEL_GUID, &self.kernel),
        ];
        for (i, (guid, hash)) in entries.iter().enumerate() {
            let o = 18 + i * ENTRY_LEN;
            t[o..o + 16].copy_from_slice(&guid.0);
            t[o + 16..o + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[o + 18..o + 50].copy_from_slice(*hash);
        }
        t
    }

    /// A 4096-byte page with the table at `offset` and zeros elsewhere, or
    /// `None` if the table does not fit in the page at that offset.
    pub fn page(&self, offset: usize) -> Option<[u8; 4096]> {
        let end = offset
            .checked_add(PADDED_TABLE_LEN)
            .filter(|&e| e <= 4096)?;
        let mut page = [0u8; 4096];
        page[offset..end].copy_from_slice(&self.table());
        Some(page)
    }
}

/// SHA-256 of the command line with its trailing NUL (an absent command line is "").
pub fn cmdline_hash(cmdline: Option<&str>) -> [u8; 32] {
    let mut c = Sha256::new();
    c.update(cmdline.unwrap_or("").as_bytes());
    c.update([0u8]);
    c.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_layout() {
        assert_eq!(TABLE_LEN, 168);
        assert_eq!(PADDED_TABLE_LEN, 176);
        let h = SevHashes::new(b"k", None, Some("console=ttyS0"));
        let t = h.table();
        assert_eq!(&t[16..18], &[168, 0]);
        assert_eq!(&t[18 + 16..18 + 18], &[50, 0]);
        // cmdline hash includes the NUL
        let want: [u8; 32] = Sha256::digest(b"console=ttyS0\0").into();
        assert_eq!(&t[36..68], &want);
        assert!(h.page(4096 - 175).is_none());
        assert!(h.page(4096 - 176).is_some());
    }
}
