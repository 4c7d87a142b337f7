//! Initdata: the digest of the exact initdata TOML bytes with its declared
//! algorithm, its forms bound into hardware (SNP HOST_DATA, TDX MRCONFIGID), and its
//! two transport encodings: the pod annotation and the initdata disk image.
//!
//! Format (Kata / trustee): `version = "0.1.0"`, `algorithm = "sha256" | "sha384" |
//! "sha512"`, and a `[data]` table of strings. There is no canonicalisation:
//! the digest is over the bytes as given.
//!
//! Encodings:
//! - the annotation `io.katacontainers.config.hypervisor.cc_init_data` is
//!   `base64(std)` of `gzip(toml)` ([`Initdata::from_annotation`]); as in Kata, plain
//!   (un-gzipped) TOML is refused;
//! - the disk image the runtime attaches read-only to the guest is `"initdata"` (8 bytes) ‖
//!   the gzip stream's length (u64 little-endian) ‖ `gzip(toml)`, zero-padded to a multiple
//!   of 512 bytes ([`Initdata::to_image`], [`decode_image`]).
//!
//! Every decoder is bounded: at most [`MAX_GZIP_BYTES`] of gzip and
//! [`MAX_INITDATA_BYTES`] of TOML, whatever a header or a gzip stream claims.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write as _};

use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::error::MeasureError;

/// The only initdata version accepted.
pub const INITDATA_VERSION: &str = "0.1.0";
/// Largest initdata TOML accepted (decompressed). genpolicy documents with an
/// embedded `policy.rego` are tens to a few hundred KiB; Kata's own agent reads far less.
pub const MAX_INITDATA_BYTES: usize = 1024 * 1024;
/// Largest gzip stream accepted (the annotation itself is at most 1 MiB of base64).
pub const MAX_GZIP_BYTES: usize = 1024 * 1024;
/// Largest annotation value accepted before decoding (base64 of [`MAX_GZIP_BYTES`]).
const MAX_ANNOTATION_BYTES: usize = MAX_GZIP_BYTES / 3 * 4 + 4;
/// First bytes of an initdata disk image.
pub const IMAGE_MAGIC: [u8; 8] = *b"initdata";
/// Magic plus the little-endian u64 length of the gzip stream.
pub const IMAGE_HEADER_BYTES: usize = 16;
/// The image is padded to whole sectors of this size.
pub const IMAGE_SECTOR_BYTES: usize = 512;

/// Why initdata (as TOML, annotation or disk image) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitdataError {
    /// The annotation is not standard base64.
    #[error("not base64: {0}")]
    NotBase64(String),
    /// The payload is not a gzip stream (plain TOML is not accepted).
    #[error("not gzip: {0}")]
    NotGzip(String),
    /// More than the limit, before or after decompression.
    #[error("{what} exceeds {limit} bytes")]
    TooLarge {
        /// What is too large ("decompressed initdata", "gzip stream", ...).
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The TOML bytes are not UTF-8.
    #[error("not UTF-8: {0}")]
    NotUtf8(String),
    /// Not initdata TOML (syntax, missing `version`/`algorithm`, non-string data).
    #[error("invalid TOML: {0}")]
    InvalidToml(String),
    /// `version` is not [`INITDATA_VERSION`].
    #[error("unsupported version {0:?} (only \"0.1.0\" is accepted)")]
    UnsupportedVersion(String),
    /// `algorithm` is not sha256, sha384 or sha512.
    #[error("unsupported algorithm {0:?} (expected sha256, sha384 or sha512)")]
    UnsupportedAlgorithm(String),
    /// A disk image does not start with [`IMAGE_MAGIC`].
    #[error("not an initdata image (no \"initdata\" magic)")]
    NoMagic,
    /// A disk image is shorter than its header or its declared gzip length.
    #[error("initdata image truncated: {0}")]
    Truncated(String),
    /// Reading a disk image failed.
    #[error("reading the initdata image: {0}")]
    Io(String),
    /// Compressing failed (encoders only).
    #[error("gzip failed: {0}")]
    Compress(String),
}

impl From<InitdataError> for MeasureError {
    fn from(e: InitdataError) -> Self {
        MeasureError::Initdata(e.to_string())
    }
}

/// The digest algorithms initdata may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitdataAlgorithm {
    /// SHA-256 (32 bytes; fits SNP HOST_DATA exactly).
    Sha256,
    /// SHA-384 (48 bytes; fits TDX MRCONFIGID exactly).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl InitdataAlgorithm {
    /// The name as written in the TOML.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Hashes `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Sha384 => Sha384::digest(bytes).to_vec(),
            Self::Sha512 => Sha512::digest(bytes).to_vec(),
        }
    }
}

/// A parsed initdata document, with the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initdata {
    /// The exact bytes (what is hashed).
    pub raw: Vec<u8>,
    /// The declared algorithm.
    pub algorithm: InitdataAlgorithm,
    /// The `[data]` entries, in key order.
    pub data: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct InitdataToml {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

impl Initdata {
    /// Parses and validates initdata TOML bytes (the crate's error type; see
    /// [`Initdata::from_toml`] for the typed one).
    pub fn parse(raw: &[u8]) -> Result<Self, MeasureError> {
        Ok(Self::from_toml(raw)?)
    }

    /// Parses and validates initdata TOML bytes: at most [`MAX_INITDATA_BYTES`], UTF-8,
    /// version [`INITDATA_VERSION`], a known algorithm, a `[data]` table of strings.
    pub fn from_toml(raw: &[u8]) -> Result<Self, InitdataError> {
        if raw.len() > MAX_INITDATA_BYTES {
            return Err(InitdataError::TooLarge {
                what: "initdata",
                limit: MAX_INITDATA_BYTES,
            });
        }
        let text = std::str::from_utf8(raw).map_err(|e| InitdataError::NotUtf8(e.to_string()))?;
        let doc: InitdataToml =
            toml::from_str(text).map_err(|e| InitdataError::InvalidToml(e.message().to_owned()))?;
        if doc.version != INITDATA_VERSION {
            return Err(InitdataError::UnsupportedVersion(doc.version));
        }
        let algorithm = match doc.algorithm.as_str() {
            "sha256" => InitdataAlgorithm::Sha256,
            "sha384" => InitdataAlgorithm::Sha384,
            "sha512" => InitdataAlgorithm::Sha512,
            _ => return Err(InitdataError::UnsupportedAlgorithm(doc.algorithm)),
        };
        Ok(Self {
            raw: raw.to_vec(),
            algorithm,
            data: doc.data,
        })
    }

    /// Decodes the Kata annotation form `base64(gzip(toml))` and parses it.
    pub fn from_annotation(value: &str) -> Result<Self, InitdataError> {
        Self::from_toml(&decode_annotation(value)?)
    }

    /// Decompresses `gzip(toml)` (bounded) and parses it.
    pub fn from_gzip(gz: &[u8]) -> Result<Self, InitdataError> {
        Self::from_toml(&gunzip(gz)?)
    }

    /// The digest of the exact bytes with the declared algorithm.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(&self.raw)
    }

    /// The TOML text (lossless for a parsed document, whose bytes were checked UTF-8).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.raw)
    }

    /// The `[data]` entry `key` (`"aa.toml"`, `"cdh.toml"`, `"policy.rego"`, ...).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// The 32-byte SNP HOST_DATA: the digest zero-padded or truncated.
    pub fn snp_host_data(&self) -> [u8; 32] {
        fit(&self.digest())
    }

    /// The 48-byte TDX MRCONFIGID: the digest zero-padded or truncated.
    pub fn tdx_mrconfigid(&self) -> [u8; 48] {
        fit(&self.digest())
    }

    /// The initdata disk image of these exact bytes (see [`encode_image`]).
    pub fn to_image(&self) -> Result<Vec<u8>, InitdataError> {
        Ok(encode_image(&gzip(&self.raw)?))
    }
}

/// Fits a digest into an `N`-byte field: zero-pad a shorter one, truncate a longer one.
pub fn fit<const N: usize>(digest: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = digest.len().min(N);
    out[..n].copy_from_slice(&digest[..n]);
    out
}

/// Decompresses a gzip stream (one or more members, as `gunzip` and Go's reader accept)
/// into at most [`MAX_INITDATA_BYTES`]; anything after the last member is refused.
fn gunzip(gz: &[u8]) -> Result<Vec<u8>, InitdataError> {
    if gz.is_empty() {
        return Err(InitdataError::NotGzip("empty".into()));
    }
    if gz.len() > MAX_GZIP_BYTES {
        return Err(InitdataError::TooLarge {
            what: "gzip stream",
            limit: MAX_GZIP_BYTES,
        });
    }
    let mut out = Vec::new();
    flate2::bufread::MultiGzDecoder::new(gz)
        .take(MAX_INITDATA_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| InitdataError::NotGzip(e.to_string()))?;
    if out.len() > MAX_INITDATA_BYTES {
        return Err(InitdataError::TooLarge {
            what: "decompressed initdata",
            limit: MAX_INITDATA_BYTES,
        });
    }
    Ok(out)
}

fn gzip(raw: &[u8]) -> Result<Vec<u8>, InitdataError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(raw)
        .and_then(|()| enc.finish())
        .map_err(|e| InitdataError::Compress(e.to_string()))
}

/// Decodes `base64(gzip(bytes))` (the `io.katacontainers.config.hypervisor.cc_init_data`
/// annotation) into the raw initdata bytes (not yet validated as initdata).
pub fn decode_annotation(value: &str) -> Result<Vec<u8>, InitdataError> {
    let value = value.trim();
    if value.len() > MAX_ANNOTATION_BYTES {
        return Err(InitdataError::TooLarge {
            what: "annotation",
            limit: MAX_ANNOTATION_BYTES,
        });
    }
    let gz = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| InitdataError::NotBase64(e.to_string()))?;
    gunzip(&gz)
}

/// Encodes raw initdata bytes as the Kata annotation value `base64(gzip(bytes))`.
pub fn encode_annotation(raw: &[u8]) -> Result<String, InitdataError> {
    gzip(raw).map(|gz| base64::engine::general_purpose::STANDARD.encode(gz))
}

/// The initdata disk image around a gzip stream: [`IMAGE_MAGIC`] ‖ `u64` LE length ‖ the
/// stream, zero-padded to a multiple of [`IMAGE_SECTOR_BYTES`].
pub fn encode_image(gz: &[u8]) -> Vec<u8> {
    let used = IMAGE_HEADER_BYTES + gz.len();
    let total = used.div_ceil(IMAGE_SECTOR_BYTES) * IMAGE_SECTOR_BYTES;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&IMAGE_MAGIC);
    out.extend_from_slice(&(gz.len() as u64).to_le_bytes());
    out.extend_from_slice(gz);
    out.resize(total, 0);
    out
}

/// True when `prefix` (the first bytes of a device) starts with [`IMAGE_MAGIC`].
pub fn has_image_magic(prefix: &[u8]) -> bool {
    prefix.starts_with(&IMAGE_MAGIC)
}

/// Reads an initdata disk image from `reader` (positioned at its start): the header, then
/// exactly the declared gzip length (at most [`MAX_GZIP_BYTES`]; the padding is not read),
/// decompressed and validated. Errors name what is wrong.
pub fn decode_image<R: Read>(mut reader: R) -> Result<Initdata, InitdataError> {
    let mut header = [0u8; IMAGE_HEADER_BYTES];
    read_exact(&mut reader, &mut header, "header")?;
    if !has_image_magic(&header) {
        return Err(InitdataError::NoMagic);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[IMAGE_MAGIC.len()..]);
    let len = u64::from_le_bytes(len);
    if len == 0 {
        return Err(InitdataError::NotGzip(
            "the image declares an empty gzip stream".into(),
        ));
    }
    if len > MAX_GZIP_BYTES as u64 {
        return Err(InitdataError::TooLarge {
            what: "declared gzip stream",
            limit: MAX_GZIP_BYTES,
        });
    }
    let mut gz = vec![0u8; len as usize];
    read_exact(&mut reader, &mut gz, "gzip stream")?;
    Initdata::from_gzip(&gz)
}

fn read_exact<R: Read>(reader: &mut R, buf: &mut [u8], what: &str) -> Result<(), InitdataError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            InitdataError::Truncated(format!("the {what} needs {} bytes", buf.len()))
        }
        _ => InitdataError::Io(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.2.101:8080\"\n'''\n";

    #[test]
    fn image_layout_is_magic_length_gzip_and_sector_padding() {
        let d = Initdata::from_toml(DOC.as_bytes()).unwrap();
        let img = d.to_image().unwrap();
        assert_eq!(&img[..8], b"initdata");
        let len = u64::from_le_bytes(img[8..16].try_into().unwrap()) as usize;
        assert_eq!(img.len() % 512, 0);
        assert_eq!(img.len(), (16 + len).div_ceil(512) * 512);
        assert_eq!(
            &img[16..18],
            &[0x1f, 0x8b],
            "a gzip stream follows the header"
        );
        assert!(img[16 + len..].iter().all(|b| *b == 0), "zero padding");
        assert_eq!(gunzip(&img[16..16 + len]).unwrap(), DOC.as_bytes());
        let back = decode_image(img.as_slice()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.digest(), Sha256::digest(DOC.as_bytes()).to_vec());
    }

    #[test]
    fn exact_sector_fill_gets_no_extra_sector() {
        assert_eq!(encode_image(&[7u8; 512 - 16]).len(), 512);
        assert_eq!(encode_image(&[7u8; 512 - 15]).len(), 1024);
        assert_eq!(encode_image(&[]).len(), 512);
    }

    #[test]
    fn malformed_images_are_refused_with_the_reason() {
        let good = Initdata::from_toml(DOC.as_bytes())
            .unwrap()
            .to_image()
            .unwrap();
        let len = u64::from_le_bytes(good[8..16].try_into().unwrap()) as usize;
        let mut no_magic = good.clone();
        no_magic[0] = b'I';
        assert_eq!(
            decode_image(no_magic.as_slice()),
            Err(InitdataError::NoMagic)
        );
        assert!(matches!(
            decode_image(&good[..10]),
            Err(InitdataError::Truncated(_))
        ));
        assert!(matches!(
            decode_image(&good[..16 + len - 1]),
            Err(InitdataError::Truncated(_))
        ));
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_image(huge.as_slice()),
            Err(InitdataError::TooLarge { .. })
        ));
        let mut zero = good.clone();
        zero[8..16].copy_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            decode_image(zero.as_slice()),
            Err(InitdataError::NotGzip(_))
        ));
        let mut corrupt = good.clone();
        corrupt[16] ^= 0xff;
        assert!(matches!(
            decode_image(corrupt.as_slice()),
            Err(InitdataError::NotGzip(_))
        ));
        // A length that takes in padding: the zeros after the stream are not gzip.
        let mut long = good.clone();
        long[8..16].copy_from_slice(&((len + 4) as u64).to_le_bytes());
        assert!(matches!(
            decode_image(long.as_slice()),
            Err(InitdataError::NotGzip(_))
        ));
        let bad_version =
            encode_image(&gzip(b"version = \"0.2.0\"\nalgorithm = \"sha256\"\n").unwrap());
        assert_eq!(
            decode_image(bad_version.as_slice()),
            Err(InitdataError::UnsupportedVersion("0.2.0".into()))
        );
        let bad_alg = encode_image(&gzip(b"version = \"0.1.0\"\nalgorithm = \"sm3\"\n").unwrap());
        assert_eq!(
            decode_image(bad_alg.as_slice()),
            Err(InitdataError::UnsupportedAlgorithm("sm3".into()))
        );
    }

    #[test]
    fn decompression_is_bounded() {
        // 2 MiB of spaces compress to a few KiB; the decoder stops at the limit.
        let bomb = gzip(&vec![b' '; 2 * MAX_INITDATA_BYTES]).unwrap();
        assert!(bomb.len() < 16 * 1024);
        assert_eq!(
            Initdata::from_gzip(&bomb),
            Err(InitdataError::TooLarge {
                what: "decompressed initdata",
                limit: MAX_INITDATA_BYTES
            })
        );
        let ann = base64::engine::general_purpose::STANDARD.encode(&bomb);
        assert!(matches!(
            Initdata::from_annotation(&ann),
            Err(InitdataError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_annotation(&"A".repeat(MAX_ANNOTATION_BYTES + 4)),
            Err(InitdataError::TooLarge {
                what: "annotation",
                ..
            })
        ));
    }

    #[test]
    fn annotation_must_be_base64_of_gzip() {
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(matches!(
            Initdata::from_annotation("not base64!"),
            Err(InitdataError::NotBase64(_))
        ));
        // Plain TOML in base64 is refused, as Kata refuses it.
        assert!(matches!(
            Initdata::from_annotation(&b64.encode(DOC)),
            Err(InitdataError::NotGzip(_))
        ));
        let ann = encode_annotation(DOC.as_bytes()).unwrap();
        let d = Initdata::from_annotation(&ann).unwrap();
        assert_eq!(d.text(), DOC);
        assert_eq!(d.algorithm, InitdataAlgorithm::Sha256);
        assert!(d.get("cdh.toml").unwrap().contains("10.0.2.101"));
        // Concatenated gzip members decode as one stream; trailing garbage does not.
        let mut two = gzip(&DOC.as_bytes()[..10]).unwrap();
        two.extend(gzip(&DOC.as_bytes()[10..]).unwrap());
        assert_eq!(Initdata::from_gzip(&two).unwrap().raw, DOC.as_bytes());
        let mut trailing = gzip(DOC.as_bytes()).unwrap();
        trailing.extend_from_slice(b"garbage");
        assert!(matches!(
            Initdata::from_gzip(&trailing),
            Err(InitdataError::NotGzip(_))
        ));
    }

    #[test]
    fn errors_convert_to_measure_errors_with_their_text() {
        let e = Initdata::parse(b"version = \"0.1.0\"\nalgorithm = \"md5\"\n").unwrap_err();
        assert!(matches!(e, MeasureError::Initdata(_)));
        assert!(
            e.to_string().contains("unsupported algorithm \"md5\""),
            "{e}"
        );
        assert!(matches!(
            Initdata::from_toml(b"\xff\xfe"),
            Err(InitdataError::NotUtf8(_))
        ));
    }
}
