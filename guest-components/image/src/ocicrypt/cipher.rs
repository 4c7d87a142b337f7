//! The ocicrypt layer cipher `AES_256_CTR_HMAC_SHA256`: AES-256-CTR (128-bit big-endian
//! counter, IV = the 16-byte nonce) and HMAC-SHA256 (key = the symmetric key) over the
//! ciphertext, encrypt-then-MAC.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::OcicryptError;
use super::pipeline;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// Read size of the streaming passes.
const CHUNK: usize = 256 * 1024;

/// Everything needed to check and decrypt one layer, unwrapped from its annotations.
pub struct LayerCipherKey {
    pub(crate) symkey: Zeroizing<[u8; 32]>,
    pub(crate) nonce: [u8; 16],
    pub(crate) expected_hmac: Vec<u8>,
    /// `digest` from the private options: the digest of the (compressed) plaintext layer.
    pub(crate) plaintext_digest: Option<String>,
}

impl std::fmt::Debug for LayerCipherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerCipherKey")
            .field("symkey", &"<redacted>")
            .field("plaintext_digest", &self.plaintext_digest)
            .finish_non_exhaustive()
    }
}

impl LayerCipherKey {
    /// Build from raw parts (used by tests and by tooling that encrypts).
    pub fn new(symkey: [u8; 32], nonce: [u8; 16], expected_hmac: Vec<u8>) -> Self {
        Self {
            symkey: Zeroizing::new(symkey),
            nonce,
            expected_hmac,
            plaintext_digest: None,
        }
    }

    /// The digest of the unencrypted layer recorded in the private options, if any.
    pub fn plaintext_digest(&self) -> Option<&str> {
        self.plaintext_digest.as_deref()
    }

    /// Read `ciphertext` to its end and check the HMAC in constant time. Nothing is decrypted.
    pub fn verify_hmac<R: Read>(&self, mut ciphertext: R) -> Result<u64, OcicryptError> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.symkey[..])
            .map_err(|_| OcicryptError::InvalidOptions("bad HMAC key length".into()))?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let n = match ciphertext.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OcicryptError::Io(e)),
            };
            mac.update(&buf[..n]);
            total += n as u64;
        }
        mac.verify_slice(&self.expected_hmac)
            .map_err(|_| OcicryptError::HmacMismatch)?;
        Ok(total)
    }

    /// A reader yielding the plaintext of `ciphertext`. Only call after [`Self::verify_hmac`]
    /// accepted the same bytes.
    pub fn decrypting_reader<R: Read>(&self, ciphertext: R) -> DecryptingReader<R> {
        DecryptingReader {
            inner: ciphertext,
            cipher: Aes256Ctr::new(self.symkey.as_ref().into(), (&self.nonce).into()),
        }
    }

    /// One pass over `ciphertext`: HMAC it and decrypt it into an **unnamed** staging file
    /// created in `staging_dir` (`O_TMPFILE`: it has no name, so nothing else can open it, and
    /// the kernel frees it when the returned value or an error drops it). The plaintext is
    /// handed out only as [`VerifiedPlaintext`], which exists only once the HMAC over the
    /// whole ciphertext matched: no plaintext is used or exposed before that.
    ///
    /// HMAC (helper thread) and AES-CTR (this thread) run as a two-stage pipeline over
    /// 1 MiB chunks, so the throughput approaches that of HMAC-SHA256 alone when two cores
    /// are free.
    pub fn decrypt_verified<R: Read>(
        &self,
        ciphertext: R,
        staging_dir: &Path,
    ) -> Result<VerifiedPlaintext, OcicryptError> {
        let mut staging = tempfile::tempfile_in(staging_dir).map_err(OcicryptError::Io)?;
        let len = self.decrypt_then_verify_into(ciphertext, &mut staging)?;
        staging
            .seek(SeekFrom::Start(0))
            .map_err(OcicryptError::Io)?;
        Ok(VerifiedPlaintext { file: staging, len })
    }

    /// HMAC and decrypt `ciphertext` into `out` in one pass; the result is `Ok` only when the
    /// HMAC matched. On error the caller must discard everything written to `out`, which is
    /// why this is private: [`Self::decrypt_verified`] enforces that.
    fn decrypt_then_verify_into<R: Read, W: Write>(
        &self,
        mut ciphertext: R,
        mut out: W,
    ) -> Result<u64, OcicryptError> {
        let mut cipher = Aes256Ctr::new(self.symkey.as_ref().into(), (&self.nonce).into());
        pipeline::hmac_and_decrypt(
            &self.symkey[..],
            &self.expected_hmac,
            &mut cipher,
            &mut ciphertext,
            &mut out,
        )
    }
}

/// Plaintext of a layer whose HMAC has been verified, in an unnamed staging file that
/// disappears when this is dropped. Reads from the start.
#[derive(Debug)]
pub struct VerifiedPlaintext {
    file: File,
    len: u64,
}

impl VerifiedPlaintext {
    /// Length of the plaintext in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for VerifiedPlaintext {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

/// Streams AES-256-CTR plaintext out of a ciphertext reader.
pub struct DecryptingReader<R> {
    inner: R,
    cipher: Aes256Ctr,
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.cipher.apply_keystream(&mut buf[..n]);
        Ok(n)
    }
}

/// Encrypt `plaintext` into `out` the way ocicrypt does, returning the HMAC over the
/// ciphertext. Used by tests and development tooling; the guest only decrypts.
pub fn encrypt_stream<R: Read, W: Write>(
    symkey: &[u8; 32],
    nonce: &[u8; 16],
    mut plaintext: R,
    mut out: W,
) -> io::Result<Vec<u8>> {
    let mut cipher = Aes256Ctr::new(symkey.into(), nonce.into());
    let mut mac = <HmacSha256 as Mac>::new_from_slice(symkey).map_err(io::Error::other)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = plaintext.read(&mut buf)?;
        if n == 0 {
            break;
        }
        cipher.apply_keystream(&mut buf[..n]);
        mac.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    Ok(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_tamper() {
        let key = [3u8; 32];
        let nonce = [9u8; 16];
        let plain: Vec<u8> = (0..2_600_001u32).map(|i| (i % 251) as u8).collect();
        let mut ct = Vec::new();
        let mac = encrypt_stream(&key, &nonce, &plain[..], &mut ct).unwrap();
        assert_ne!(ct, plain);
        let k = LayerCipherKey::new(key, nonce, mac.clone());
        assert_eq!(k.verify_hmac(&ct[..]).unwrap(), plain.len() as u64);
        let mut out = Vec::new();
        k.decrypting_reader(&ct[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);

        let mut bad = ct.clone();
        bad[5000] ^= 1;
        assert!(matches!(
            k.verify_hmac(&bad[..]),
            Err(OcicryptError::HmacMismatch)
        ));
        // One pass into an unnamed staging file: same plaintext; tampering is refused.
        let dir = tempfile::tempdir().unwrap();
        let mut verified = k.decrypt_verified(&ct[..], dir.path()).unwrap();
        assert_eq!(verified.len(), plain.len() as u64);
        let mut out = Vec::new();
        verified.read_to_end(&mut out).unwrap();
        assert_eq!(out, plain);
        drop(verified);
        assert!(matches!(
            k.decrypt_verified(&bad[..], dir.path()),
            Err(OcicryptError::HmacMismatch)
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let k2 = LayerCipherKey::new([4u8; 32], nonce, mac);
        assert!(matches!(
            k2.verify_hmac(&ct[..]),
            Err(OcicryptError::HmacMismatch)
        ));
    }

    #[test]
    fn ctr_matches_nist_sp800_38a_f5_5() {
        // NIST SP 800-38A F.5.5 CTR-AES256.Encrypt, first block.
        let key: [u8; 32] =
            hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
                .unwrap()
                .try_into()
                .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
            .unwrap();
        let mut ct = Vec::new();
        encrypt_stream(&key, &iv, &pt[..], &mut ct).unwrap();
        assert_eq!(
            hex::encode(ct),
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        );
    }
}
