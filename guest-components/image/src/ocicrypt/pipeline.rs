//! One-pass HMAC-and-decrypt of an ocicrypt layer on two threads.
//!
//! ocicrypt MACs the *ciphertext* (encrypt-then-MAC), so HMAC-SHA256 and AES-256-CTR of a chunk
//! are independent computations over the same input. The calling thread reads a chunk, hands
//! a shared reference to it to a hasher thread through a bounded channel, decrypts it itself
//! and writes the plaintext out; the hasher thread returns the chunk buffer for reuse once it
//! has been MACed. Each thread sees every chunk once, so the whole runs at the speed of the
//! slower stage (HMAC-SHA256) instead of the sum of both.
//!
//! The output written here is *unverified* plaintext: the caller must discard it unless this
//! returns `Ok` (see [`super::cipher::LayerCipherKey::decrypt_verified`]).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc;

use aes::cipher::StreamCipher;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::OcicryptError;

/// Size of one pipeline chunk: large enough that the per-chunk channel traffic is noise,
/// small enough that a chunk is still in the shared cache when the second thread reads it.
pub(crate) const PIPELINE_CHUNK: usize = 1 << 20;
/// Chunks queued for the hasher at most; bounds memory to (depth + 2) chunks.
const PIPELINE_DEPTH: usize = 3;

/// A ciphertext chunk shared by the decrypting thread and the hasher thread.
struct Chunk {
    data: Arc<Vec<u8>>,
    len: usize,
}

/// MAC `ciphertext` with HMAC-SHA256 under `mac_key` on a helper thread while decrypting it
/// with `cipher` into `out` on this one. Returns the length once the MAC equals
/// `expected_mac` (compared in constant time); on any error `out` holds garbage the caller
/// must discard.
pub(crate) fn hmac_and_decrypt<R, W, C>(
    mac_key: &[u8],
    expected_mac: &[u8],
    cipher: &mut C,
    ciphertext: &mut R,
    out: &mut W,
) -> Result<u64, OcicryptError>
where
    R: Read,
    W: Write,
    C: StreamCipher,
{
    // RustCrypto `sha2` picks its SHA-NI backend at run time (cpufeatures); measured faster
    // than ring's HMAC on this CPU (guest-image-bench prints both).
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(mac_key)
        .map_err(|_| OcicryptError::InvalidOptions("bad HMAC key length".into()))?;
    let (to_hasher, hasher_inbox) = mpsc::sync_channel::<Chunk>(PIPELINE_DEPTH);
    let (to_pool, pool_inbox) = mpsc::channel::<Chunk>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            for chunk in hasher_inbox {
                mac.update(&chunk.data[..chunk.len]);
                // The decrypting side may already be gone (error path); then the buffer is
                // simply freed.
                let _ = to_pool.send(chunk);
            }
            mac
        });
        let decrypted = decrypt_feeding_hasher(cipher, ciphertext, out, &to_hasher, &pool_inbox);
        // Closing the channel ends the hasher's loop, on success and on error alike.
        drop(to_hasher);
        let mac = hasher
            .join()
            .map_err(|_| OcicryptError::Io(io::Error::other("the HMAC thread panicked")))?;
        let total = decrypted?;
        // Constant-time comparison.
        mac.verify_slice(expected_mac)
            .map_err(|_| OcicryptError::HmacMismatch)?;
        Ok(total)
    })
}

/// The calling thread's stage: read, share with the hasher, decrypt, write.
fn decrypt_feeding_hasher<R, W, C>(
    cipher: &mut C,
    ciphertext: &mut R,
    out: &mut W,
    to_hasher: &mpsc::SyncSender<Chunk>,
    pool_inbox: &mpsc::Receiver<Chunk>,
) -> Result<u64, OcicryptError>
where
    R: Read,
    W: Write,
    C: StreamCipher,
{
    let hasher_gone = || OcicryptError::Io(io::Error::other("the HMAC thread stopped early"));
    let mut plaintext = Zeroizing::new(vec![0u8; PIPELINE_CHUNK]);
    let mut allocated = 0usize;
    let mut total = 0u64;
    loop {
        // A buffer the hasher is done with, or a new one while the pool is below its bound.
        let mut data = match pool_inbox.try_recv() {
            Ok(chunk) => chunk.data,
            Err(_) if allocated < PIPELINE_DEPTH + 2 => {
                allocated += 1;
                Arc::new(vec![0u8; PIPELINE_CHUNK])
            }
            Err(_) => pool_inbox.recv().map_err(|_| hasher_gone())?.data,
        };
        // This thread dropped its own reference after decrypting, so the returned buffer is
        // unshared; should it not be, a fresh one is used rather than waiting.
        let buffer = match Arc::get_mut(&mut data) {
            Some(buffer) => buffer,
            None => {
                data = Arc::new(vec![0u8; PIPELINE_CHUNK]);
                Arc::get_mut(&mut data).ok_or_else(hasher_gone)?
            }
        };
        let len = read_full(ciphertext, buffer).map_err(OcicryptError::Io)?;
        if len == 0 {
            break;
        }
        to_hasher
            .send(Chunk {
                data: Arc::clone(&data),
                len,
            })
            .map_err(|_| hasher_gone())?;
        let plain = &mut plaintext[..len];
        cipher
            .apply_keystream_b2b(&data[..len], plain)
            .map_err(|_| OcicryptError::Io(io::Error::other("keystream length mismatch")))?;
        drop(data);
        out.write_all(plain).map_err(OcicryptError::Io)?;
        total += len as u64;
    }
    out.flush().map_err(OcicryptError::Io)?;
    Ok(total)
}

/// Fill `buf` as far as the reader allows (short only at the end of the stream).
pub(crate) fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use aes::cipher::KeyIvInit;

    use super::*;
    use crate::ocicrypt::cipher::encrypt_stream;

    type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

    const KEY: [u8; 32] = [0x5a; 32];
    const NONCE: [u8; 16] = [0x0f; 16];

    fn encrypted(len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let plain: Vec<u8> = (0..len)
            .map(|i| (i % 253) as u8 ^ (i >> 12) as u8)
            .collect();
        let mut ct = Vec::new();
        let mac = encrypt_stream(&KEY, &NONCE, &plain[..], &mut ct).unwrap();
        (plain, ct, mac)
    }

    fn run<R: Read, W: Write>(mac: &[u8], mut ct: R, out: &mut W) -> Result<u64, OcicryptError> {
        let mut cipher = Aes256Ctr::new(&KEY.into(), &NONCE.into());
        hmac_and_decrypt(&KEY, mac, &mut cipher, &mut ct, out)
    }

    /// Hands out at most `max` bytes per read, to exercise partial reads.
    struct Trickle<'a> {
        data: &'a [u8],
        max: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn decrypts_every_chunk_boundary_case() {
        for len in [
            0,
            1,
            PIPELINE_CHUNK - 1,
            PIPELINE_CHUNK,
            PIPELINE_CHUNK + 1,
            // More chunks than the pool holds buffers: buffers must be recycled.
            (PIPELINE_DEPTH + 4) * PIPELINE_CHUNK + 12_345,
        ] {
            let (plain, ct, mac) = encrypted(len);
            let mut out = Vec::new();
            assert_eq!(
                run(&mac, &ct[..], &mut out).unwrap(),
                len as u64,
                "len {len}"
            );
            assert!(out == plain, "plaintext differs for len {len}");
        }
    }

    #[test]
    fn short_reads_give_the_same_plaintext() {
        let (plain, ct, mac) = encrypted(3 * PIPELINE_CHUNK + 77);
        let mut out = Vec::new();
        let reader = Trickle {
            data: &ct,
            max: 65_537,
        };
        assert_eq!(run(&mac, reader, &mut out).unwrap(), ct.len() as u64);
        assert!(out == plain);
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_hmac() {
        let (_, ct, mac) = encrypted(2 * PIPELINE_CHUNK + 10);
        for at in [0, PIPELINE_CHUNK - 1, PIPELINE_CHUNK, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[at] ^= 0x01;
            let err = run(&mac, &bad[..], &mut io::sink()).unwrap_err();
            assert!(matches!(err, OcicryptError::HmacMismatch), "at {at}: {err}");
        }
        // A truncated ciphertext, and a MAC of the wrong length, fail too.
        let err = run(&mac, &ct[..ct.len() - 1], &mut io::sink()).unwrap_err();
        assert!(matches!(err, OcicryptError::HmacMismatch), "{err}");
        let err = run(&mac[..16], &ct[..], &mut io::sink()).unwrap_err();
        assert!(matches!(err, OcicryptError::HmacMismatch), "{err}");
    }

    struct FailingReader<'a> {
        data: &'a [u8],
    }

    impl Read for FailingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "source broke",
                ));
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    struct FailingWriter {
        accepted: usize,
        limit: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.accepted + buf.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            self.accepted += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn read_and_write_errors_end_both_threads_with_the_error() {
        let (_, ct, mac) = encrypted(6 * PIPELINE_CHUNK);
        let reader = FailingReader {
            data: &ct[..3 * PIPELINE_CHUNK + 5],
        };
        let err = run(&mac, reader, &mut io::sink()).unwrap_err();
        assert!(
            matches!(&err, OcicryptError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{err}"
        );
        let mut writer = FailingWriter {
            accepted: 0,
            limit: 2 * PIPELINE_CHUNK,
        };
        let err = run(&mac, &ct[..], &mut writer).unwrap_err();
        assert!(
            matches!(&err, OcicryptError::Io(e) if e.kind() == io::ErrorKind::StorageFull),
            "{err}"
        );
        assert_eq!(writer.accepted, 2 * PIPELINE_CHUNK);
    }
}
