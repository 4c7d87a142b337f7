//! Resource limits for unpacking (decompression bombs, entry floods) and the metered reader
//! that enforces the byte budget while computing the layer's diff_id.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// Default of [`UnpackLimits::max_total_bytes`] and [`UnpackLimits::max_file_bytes`]: 8 GiB.
///
/// Why 8 GiB: in the guest the root filesystem is unpacked onto tmpfs, i.e. into the VM's
/// memory, so the limit is what a hostile image may make the guest allocate. 8 GiB holds the
/// uncompressed trees of ordinary application images with a wide margin (distribution base
/// images are tens to hundreds of MiB, typical application images well under 2 GiB) while
/// refusing the classic 10 GB zip/gzip bomb. It is still more memory than many guests have:
/// the agent lowers it to half of `MemTotal` (at most 4 GiB). The largest images (CUDA or ML
/// development images) come close to it or exceed it; callers pulling those must raise it
/// explicitly (`cocoon image pull --max-unpacked-bytes`).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 8 << 30;

/// Upper bounds applied to one image (all its layers together) while unpacking.
///
/// They defend against decompression bombs: a few kilobytes of gzip or zstd can expand to
/// terabytes of zeros, and a tar stream can announce millions of empty entries. A file whose
/// announced size exceeds the per-file limit or what is left of the total is refused before
/// anything of it is written. Sparse entries are refused outright (their holes would not pass
/// through the meter; see [`crate::UnpackError::SparseEntry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Maximum number of uncompressed tar bytes read over all layers (headers and padding
    /// included). Default [`DEFAULT_MAX_TOTAL_BYTES`].
    pub max_total_bytes: u64,
    /// Maximum number of tar entries over all layers. Default 2,000,000.
    pub max_entries: u64,
    /// Maximum size of a single regular file. Default [`DEFAULT_MAX_TOTAL_BYTES`] (a larger
    /// value than `max_total_bytes` has no effect).
    pub max_file_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_entries: 2_000_000,
            max_file_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// Which limit an archive ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// [`UnpackLimits::max_total_bytes`].
    TotalBytes,
    /// [`UnpackLimits::max_entries`].
    Entries,
    /// [`UnpackLimits::max_file_bytes`].
    FileBytes,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TotalBytes => "total uncompressed bytes",
            Self::Entries => "number of entries",
            Self::FileBytes => "size of one file",
        })
    }
}

/// Reads the uncompressed tar stream, hashes it (the diff_id) and refuses to go past the
/// remaining byte budget.
pub(crate) struct MeteredReader<R> {
    inner: R,
    hasher: Sha256,
    consumed: u64,
    remaining: u64,
    exceeded: bool,
    /// What is left of the budget, published for up-front size checks of the entries.
    left: Rc<Cell<u64>>,
}

impl<R: Read> MeteredReader<R> {
    /// Meter `inner` with a budget of `remaining` bytes, publishing what is left in `left`.
    pub(crate) fn new(inner: R, remaining: u64, left: Rc<Cell<u64>>) -> Self {
        left.set(remaining);
        Self {
            inner,
            hasher: Sha256::new(),
            consumed: 0,
            remaining,
            exceeded: false,
            left,
        }
    }

    /// Bytes read so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether a read was refused because the budget ran out.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// `sha256:<hex>` of everything read.
    pub(crate) fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // Only an error if there is really more data.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded = true;
                    Err(io::Error::other("uncompressed size limit exceeded"))
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.hasher.update(&buf[..n]);
        self.consumed += n as u64;
        self.remaining -= n as u64;
        self.left.set(self.remaining);
        Ok(n)
    }
}

/// Tolerates tar streams that stop right after the last entry's data, without the padding
/// and the two zero end-of-archive blocks (umoci 0.4.7 writes such layers; Go's tar reader,
/// and so containerd and docker, accept them). When the inner stream ends, zeros are served
/// up to the next block boundary plus two blocks, and the real length is published so that
/// an entry whose data really was cut short is still reported as corrupt.
pub(crate) struct BlockPadder<R> {
    inner: R,
    position: u64,
    real_end: Rc<Cell<Option<u64>>>,
    zeros_left: u64,
}

impl<R: Read> BlockPadder<R> {
    pub(crate) fn new(inner: R, real_end: Rc<Cell<Option<u64>>>) -> Self {
        Self {
            inner,
            position: 0,
            real_end,
            zeros_left: 0,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for BlockPadder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.real_end.get().is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                return Ok(n);
            }
            self.real_end.set(Some(self.position));
            self.zeros_left = (512 - self.position % 512) % 512 + 1024;
        }
        let n = buf
            .len()
            .min(usize::try_from(self.zeros_left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.zeros_left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metered_reader_stops_at_budget_and_hashes() {
        let data = vec![7u8; 1000];
        let left = Rc::new(Cell::new(0));
        let mut r = MeteredReader::new(&data[..], 1000, left.clone());
        assert_eq!(left.get(), 1000);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 1000);
        assert!(!r.exceeded());
        assert_eq!(left.get(), 0);
        assert_eq!(
            r.finish(),
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );

        let mut r = MeteredReader::new(&data[..], 999, left);
        let err = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("limit"));
        assert!(r.exceeded());
        assert_eq!(r.consumed(), 999);
    }
}
