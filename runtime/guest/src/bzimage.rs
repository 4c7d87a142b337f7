//! x86 bzImage handling: find the compressed payload through the boot-protocol setup
//! header, decompress it (LZ4 legacy) into the uncompressed `vmlinux` ELF, and check the
//! ELF carries the PVH entry note QEMU needs to boot it directly.

use crate::lz4_legacy::{self, LEGACY_MAGIC, Lz4LegacyError};
use object::Endianness;
use object::read::elf::{FileHeader, ProgramHeader};
use thiserror::Error;

/// Offset of `setup_sects` in the boot sector.
const SETUP_SECTS_OFFSET: usize = 0x1f1;
/// Offset of the `HdrS` signature.
const HEADER_MAGIC_OFFSET: usize = 0x202;
/// Offset of the boot protocol version.
const VERSION_OFFSET: usize = 0x206;
/// Offset of `payload_offset` (protocol 2.08+); `payload_length` follows it.
const PAYLOAD_OFFSET_OFFSET: usize = 0x248;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH 32-bit entry point note type.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Why a kernel image could not be turned into a bootable `vmlinux`.
#[derive(Debug, Error)]
pub enum BzImageError {
    /// The file is too short or lacks the `HdrS` setup header signature.
    #[error("not an x86 bzImage: {0}")]
    NotBzImage(String),
    /// The boot protocol predates `payload_offset` (2.08).
    #[error("bzImage boot protocol {major}.{minor:02} is too old (need 2.08+ for payload_offset)")]
    ProtocolTooOld {
        /// Major protocol version.
        major: u8,
        /// Minor protocol version.
        minor: u8,
    },
    /// The payload is compressed with something other than LZ4.
    #[error(
        "bzImage payload is not LZ4 legacy (first bytes {0:02x?}); only CONFIG_KERNEL_LZ4 kernels are supported"
    )]
    UnsupportedCompression(Vec<u8>),
    /// The LZ4 payload failed to decode.
    #[error("bzImage LZ4 payload: {0}")]
    Lz4(#[from] Lz4LegacyError),
    /// The decoded size disagrees with the size the kernel build appended.
    #[error("decompressed kernel is {actual} bytes but the bzImage records {recorded}")]
    SizeMismatch {
        /// Size after decoding.
        actual: usize,
        /// Size recorded in the last four payload bytes.
        recorded: usize,
    },
    /// The decompressed payload is not an x86-64 ELF.
    #[error("decompressed kernel is not an x86-64 ELF: {0}")]
    NotElf(String),
    /// The ELF has no PVH entry note, so QEMU cannot boot it with `-kernel`.
    #[error("vmlinux has no PVH entry note (Xen note type 18); the kernel needs CONFIG_PVH=y")]
    NoPvhNote,
}

/// Where the compressed payload sits inside a bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLocation {
    /// Byte offset of the payload in the file.
    pub offset: usize,
    /// Payload length in bytes (includes the 4-byte size trailer).
    pub length: usize,
}

/// Reads the setup header and returns where the compressed payload lies.
pub fn payload_location(image: &[u8]) -> Result<PayloadLocation, BzImageError> {
    if image.len() < PAYLOAD_OFFSET_OFFSET + 8 {
        return Err(BzImageError::NotBzImage(format!(
            "{} bytes is too short for a setup header",
            image.len()
        )));
    }
    if &image[HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4] != b"HdrS" {
        return Err(BzImageError::NotBzImage(
            "no HdrS signature at 0x202".into(),
        ));
    }
    let version = u16::from_le_bytes([image[VERSION_OFFSET], image[VERSION_OFFSET + 1]]);
    if version < 0x0208 {
        return Err(BzImageError::ProtocolTooOld {
            major: (version >> 8) as u8,
            minor: (version & 0xff) as u8,
        });
    }
    let setup_sects = match image[SETUP_SECTS_OFFSET] {
        0 => 4,
        n => usize::from(n),
    };
    let read_u32 = |at: usize| {
        u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]) as usize
    };
    let offset = (setup_sects + 1) * 512 + read_u32(PAYLOAD_OFFSET_OFFSET);
    let length = read_u32(PAYLOAD_OFFSET_OFFSET + 4);
    match offset.checked_add(length) {
        Some(end) if end <= image.len() && length >= 4 => Ok(PayloadLocation { offset, length }),
        _ => Err(BzImageError::NotBzImage(format!(
            "payload {offset}+{length} lies outside the {}-byte file",
            image.len()
        ))),
    }
}

/// Extracts the uncompressed `vmlinux` ELF from an LZ4-compressed bzImage and checks it
/// has a PVH entry point. Returns the ELF bytes.
pub fn extract_vmlinux(image: &[u8]) -> Result<Vec<u8>, BzImageError> {
    let loc = payload_location(image)?;
    let payload = &image[loc.offset..loc.offset + loc.length];
    if !payload.starts_with(&LEGACY_MAGIC) {
        return Err(BzImageError::UnsupportedCompression(
            payload.iter().take(4).copied().collect(),
        ));
    }
    // The kernel build appends the decompressed size as a little-endian u32 (size_append).
    let (stream, trailer) = payload.split_at(payload.len() - 4);
    let recorded = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    let vmlinux = lz4_legacy::decode(stream)?;
    if vmlinux.len() != recorded {
        return Err(BzImageError::SizeMismatch {
            actual: vmlinux.len(),
            recorded,
        });
    }
    pvh_entry(&vmlinux)?;
    tracing::debug!(
        compressed = loc.length,
        uncompressed = vmlinux.len(),
        "extracted vmlinux from bzImage"
    );
    Ok(vmlinux)
}

/// Returns the PVH 32-bit entry address recorded in an x86-64 ELF kernel's notes.
pub fn pvh_entry(elf: &[u8]) -> Result<u32, BzImageError> {
    let header = object::elf::FileHeader64::<Endianness>::parse(elf)
        .map_err(|e| BzImageError::NotElf(e.to_string()))?;
    let endian = header
        .endian()
        .map_err(|e| BzImageError::NotElf(e.to_string()))?;
    if header.e_machine(endian) != object::elf::EM_X86_64 {
        return Err(BzImageError::NotElf(format!(
            "e_machine is {}, not x86-64",
            header.e_machine(endian)
        )));
    }
    let segments = header
        .program_headers(endian, elf)
        .map_err(|e| BzImageError::NotElf(e.to_string()))?;
    for segment in segments {
        let Ok(Some(mut notes)) = segment.notes(endian, elf) else {
            continue;
        };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(endian) == XEN_ELFNOTE_PHYS32_ENTRY {
                let desc = note.desc();
                if desc.len() >= 4 {
                    return Ok(u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]]));
                }
            }
        }
    }
    Err(BzImageError::NoPvhNote)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A synthetic bzImage: setup header, `setup_sects` sectors, then the payload.
    fn fake_bzimage(setup_sects: u8, version: u16, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            usize::from(setup_sects)
        };
        let mut img = vec![0u8; (sects + 1) * 512];
        img[SETUP_SECTS_OFFSET] = setup_sects;
        img[HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4].copy_from_slice(b"HdrS");
        img[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&version.to_le_bytes());
        img[PAYLOAD_OFFSET_OFFSET..PAYLOAD_OFFSET_OFFSET + 4].copy_from_slice(&16u32.to_le_bytes());
        img[PAYLOAD_OFFSET_OFFSET + 4..PAYLOAD_OFFSET_OFFSET + 8]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&[0xaa; 16]);
        img.extend_from_slice(payload);
        img.extend_from_slice(b"signature-after-payload");
        img
    }

    #[test]
    fn locates_payload_and_rejects_bad_headers() {
        let img = fake_bzimage(0, 0x020f, b"PAYLOADSIZE");
        let loc = payload_location(&img).unwrap();
        assert_eq!(
            loc,
            PayloadLocation {
                offset: 5 * 512 + 16,
                length: 11
            }
        );
        assert_eq!(&img[loc.offset..loc.offset + loc.length], b"PAYLOADSIZE");

        assert!(matches!(
            payload_location(&fake_bzimage(3, 0x0207, b"xxxx")).unwrap_err(),
            BzImageError::ProtocolTooOld { major: 2, minor: 7 }
        ));
        let mut no_magic = fake_bzimage(3, 0x020f, b"xxxx");
        no_magic[HEADER_MAGIC_OFFSET] = b'X';
        assert!(matches!(
            payload_location(&no_magic),
            Err(BzImageError::NotBzImage(_))
        ));
        assert!(matches!(
            payload_location(&[0u8; 100]),
            Err(BzImageError::NotBzImage(_))
        ));
        let mut too_long = fake_bzimage(3, 0x020f, b"xxxx");
        too_long[PAYLOAD_OFFSET_OFFSET + 4..PAYLOAD_OFFSET_OFFSET + 8]
            .copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            payload_location(&too_long),
            Err(BzImageError::NotBzImage(_))
        ));
    }

    #[test]
    fn rejects_non_lz4_payload_and_non_elf_content() {
        let gzip_payload = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0];
        assert!(matches!(
            extract_vmlinux(&fake_bzimage(3, 0x020f, &gzip_payload)).unwrap_err(),
            BzImageError::UnsupportedCompression(bytes) if bytes == [0x1f, 0x8b, 0x08, 0x00]
        ));
        assert!(matches!(
            pvh_entry(b"\x7fELF-not-really"),
            Err(BzImageError::NotElf(_))
        ));
        // A real ELF (this test binary) without a PVH note.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(pvh_entry(&me), Err(BzImageError::NoPvhNote)));
    }

    #[test]
    fn checks_recorded_size_and_elf_of_decoded_payload() {
        let body = b"definitely not an ELF kernel ".repeat(1000);
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$0\" | lz4 -l -c -",
                &String::from_utf8_lossy(&body),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "lz4 tool needed");
        let mut wrong = out.stdout.clone();
        wrong.extend_from_slice(&(body.len() as u32 + 1).to_le_bytes());
        assert!(matches!(
            extract_vmlinux(&fake_bzimage(3, 0x020f, &wrong)).unwrap_err(),
            BzImageError::SizeMismatch { actual, recorded } if actual == body.len() && recorded == body.len() + 1
        ));
        let mut right = out.stdout;
        right.extend_from_slice(&(body.len() as u32).to_le_bytes());
        assert!(matches!(
            extract_vmlinux(&fake_bzimage(3, 0x020f, &right)).unwrap_err(),
            BzImageError::NotElf(_)
        ));
    }
}
