//! Decoder for the LZ4 *legacy* stream format, the one the Linux kernel uses for
//! `CONFIG_KERNEL_LZ4` payloads (`lz4 -l`).
//!
//! Layout: the magic `02 21 4c 18` (0x184C2102 little-endian), then blocks, each a
//! little-endian `u32` compressed size followed by that many bytes of a raw LZ4 block
//! that decompresses to at most 8 MiB. The magic may appear again between blocks
//! (concatenated streams); it is skipped. There is no checksum and no end marker.

use thiserror::Error;

/// The legacy-format magic number as it appears on disk.
pub const LEGACY_MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];

/// Largest decompressed size of one legacy block (`LZ4IO_LEGACY_BLOCK_SIZE`).
pub const LEGACY_BLOCK_SIZE: usize = 8 << 20;

/// Why an LZ4 legacy stream could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Lz4LegacyError {
    /// The input does not start with [`LEGACY_MAGIC`].
    #[error("not an LZ4 legacy stream: first bytes are {found:02x?}, expected 02 21 4c 18")]
    BadMagic {
        /// The first (up to four) bytes found.
        found: Vec<u8>,
    },
    /// A block header or block body runs past the end of the input.
    #[error(
        "LZ4 legacy stream truncated at offset {offset}: block needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// Offset of the block header.
        offset: usize,
        /// Bytes the block needs (header or body).
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A block's data is not valid LZ4 or decompresses to more than 8 MiB.
    #[error("LZ4 legacy block at offset {offset} is corrupt: {reason}")]
    CorruptBlock {
        /// Offset of the block header.
        offset: usize,
        /// What the block decoder reported.
        reason: String,
    },
}

/// Decodes a whole LZ4 legacy stream (magic included) into a new buffer.
///
/// Decoding stops at the end of `input`; callers that know of trailing data (the kernel
/// appends the decompressed size as a `u32`) must cut it off first.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, Lz4LegacyError> {
    if !input.starts_with(&LEGACY_MAGIC) {
        return Err(Lz4LegacyError::BadMagic {
            found: input.iter().take(4).copied().collect(),
        });
    }
    let mut out = Vec::with_capacity(input.len().saturating_mul(4));
    let mut block = vec![0u8; LEGACY_BLOCK_SIZE];
    let mut pos = LEGACY_MAGIC.len();
    while pos < input.len() {
        let header_offset = pos;
        let Some(header) = input.get(pos..pos + 4) else {
            return Err(Lz4LegacyError::Truncated {
                offset: header_offset,
                needed: 4,
                available: input.len() - pos,
            });
        };
        pos += 4;
        if header == LEGACY_MAGIC {
            continue;
        }
        let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(body) = input.get(pos..pos.saturating_add(size)) else {
            return Err(Lz4LegacyError::Truncated {
                offset: header_offset,
                needed: size,
                available: input.len() - pos,
            });
        };
        pos += size;
        let written = lz4_flex::block::decompress_into(body, &mut block).map_err(|e| {
            Lz4LegacyError::CorruptBlock {
                offset: header_offset,
                reason: e.to_string(),
            }
        })?;
        out.extend_from_slice(&block[..written]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Compresses `data` with the real `lz4` tool in legacy mode (`lz4 -l`), as the kernel build does.
    fn lz4_cli_legacy(data: &[u8], level: &str) -> Vec<u8> {
        let mut child = Command::new("lz4")
            .args(["-l", level, "-c", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the lz4 tool (Debian package lz4) is needed for this test");
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// Deterministic, partly compressible test data (xorshift noise mixed with text runs).
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(3) {
                data.extend_from_slice(b"virtio_ring virtio vsock overlay ");
            } else {
                data.extend_from_slice(&state.to_le_bytes());
            }
        }
        data.truncate(len);
        data
    }

    #[test]
    fn decodes_lz4_cli_output_across_several_blocks() {
        // 20 MiB spans three 8 MiB legacy blocks, the last one partial.
        let data = sample(20 << 20);
        let compressed = lz4_cli_legacy(&data, "-1");
        assert_eq!(&compressed[..4], &LEGACY_MAGIC);
        let decoded = decode(&compressed).unwrap();
        assert_eq!(decoded.len(), data.len());
        assert!(decoded == data, "decoded bytes differ from the original");
    }

    #[test]
    fn decodes_high_compression_and_empty_input() {
        let data = sample(100_000);
        let decoded = decode(&lz4_cli_legacy(&data, "-12")).unwrap();
        assert!(decoded == data);
        assert_eq!(
            decode(&lz4_cli_legacy(&[], "-1")).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn skips_repeated_magic_between_concatenated_streams() {
        let a = sample(5000);
        let b = b"second stream".repeat(300);
        let mut joined = lz4_cli_legacy(&a, "-1");
        joined.extend_from_slice(&lz4_cli_legacy(&b, "-1"));
        let mut expected = a.clone();
        expected.extend_from_slice(&b);
        assert!(decode(&joined).unwrap() == expected);
    }

    #[test]
    fn rejects_bad_magic_truncation_and_corruption() {
        assert_eq!(
            decode(b"\x04\x22\x4d\x18rest").unwrap_err(),
            Lz4LegacyError::BadMagic {
                found: vec![0x04, 0x22, 0x4d, 0x18]
            }
        );
        let good = lz4_cli_legacy(&sample(50_000), "-1");
        let cut = &good[..good.len() - 10];
        assert!(matches!(
            decode(cut).unwrap_err(),
            Lz4LegacyError::Truncated { offset: 4, .. }
        ));
        // A dangling partial header.
        let mut dangling = good.clone();
        dangling.extend_from_slice(&[1, 2]);
        assert!(matches!(
            decode(&dangling).unwrap_err(),
            Lz4LegacyError::Truncated {
                needed: 4,
                available: 2,
                ..
            }
        ));
        // A block whose body is garbage: a match offset pointing before the output start.
        let mut corrupt = LEGACY_MAGIC.to_vec();
        corrupt.extend_from_slice(&3u32.to_le_bytes());
        corrupt.extend_from_slice(&[0x0f, 0xff, 0xff]);
        assert!(matches!(
            decode(&corrupt).unwrap_err(),
            Lz4LegacyError::CorruptBlock { offset: 4, .. }
        ));
    }
}
