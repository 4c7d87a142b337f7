//! A large layer is streamed to disk, never held in memory whole: the pull of an image with
//! one 96 MiB layer of incompressible bytes raises the process's peak RSS by far less than
//! the layer's size.
//!
//! This file holds one test so that nothing else runs in (and allocates in) its process
//! while the peak is measured. Everything that could raise the peak before the pull stays
//! small or out of the process: the layer is generated and written as a stream, and the
//! push is skopeo's (a child process), to a docker-registry that is another process too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use common::*;
use guest_image::{PullOptions, pull_image};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
/// The layer's one file: 96 MiB of pseudo-random bytes.
const LAYER_FILE: u64 = 96 * MIB;
/// Upper bound of the peak RSS growth during the pull (measured: 1.5-3 MiB).
///
/// Why it catches a layer held in memory: random bytes do not compress, so the blob (zstd
/// raw blocks), the tar inside it and the file inside that are all a little over 96 MiB.
/// Anything that keeps the whole blob, tar or file in memory at one moment (a `Vec` filled
/// from the response or `bytes().await`, the staged file read back into memory, a
/// decompressed layer collected before it is untarred) holds 96 MiB at once. The only
/// memory it could use without raising the RSS is memory already resident but free, which
/// is at most the anonymous RSS before the pull (`RssAnon`, ~18 MiB here, most of it the
/// warm-up's): so the RSS has to rise by at least `96 MiB - RssAnon` (~78 MiB) at some
/// point, which VmHWM records. The measured growth is `VmHWM after - VmRSS before`, never
/// less than the pull's own rise, whatever the peak before it was. The test checks that
/// this margin holds (`96 MiB - RssAnon > MAX_PEAK_GROWTH`), so a layer in memory cannot
/// pass; even a third of the layer in memory at once would be caught.
///
/// Why streaming stays far below it: a streaming pull holds a few buffers at once (the
/// 1 MiB `BufWriter` of the blob file, hyper's read buffer and body chunks, tokio's up to
/// 2 MiB per file operation, the 256 KiB copy buffers of the unpacker, zstd's window).
const MAX_PEAK_GROWTH: u64 = 32 * MIB;

/// Deterministic pseudo-random bytes, `remaining` of them: AES-128-GCM ciphertexts of
/// zeros under a fixed key, one 64 KiB block per nonce. (`ring`, built optimised in the dev
/// profile and not generic, is fast here; a generator in this crate's unoptimised code, or
/// the generic `ctr`/`aes` stack instantiated here, takes 10 s and more for 96 MiB.)
struct Noise {
    key: LessSafeKey,
    block: Vec<u8>,
    /// Bytes of `block` already handed out.
    used: usize,
    counter: u64,
    remaining: u64,
}

impl Noise {
    fn new(remaining: u64) -> Self {
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[0x5e; 16]).unwrap()),
            block: vec![0; 64 << 10],
            used: 64 << 10,
            counter: 0,
            remaining,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.used == self.block.len() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&self.counter.to_le_bytes());
            self.counter += 1;
            self.block.fill(0);
            // The tag is not needed: only the ciphertext is noise.
            let _tag = self
                .key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut self.block,
                )
                .unwrap();
            self.used = 0;
        }
        let n = (self.block.len() - self.used)
            .min(buf.len())
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.used..self.used + n]);
        self.used += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Passes reads (or writes) through, hashing and counting the bytes.
struct Hashing<T> {
    inner: T,
    hasher: Sha256,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner reader or writer, `sha256:<hex>` and the byte count.
    fn finish(self) -> (T, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Put `data` into the layout's blobs; returns (digest, size).
fn small_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    (write_blob(layout, data), data.len() as u64)
}

/// An image built by [`build_image`].
struct Built {
    layer_digest: String,
    layer_size: u64,
    /// Digest of `/big.bin`.
    file_digest: String,
}

/// An OCI layout at `layout` whose image (tag `big`) has one zstd layer with `/big.bin` (`size`
/// noise bytes), written as a stream.
fn build_image(layout: &Path, size: u64) -> Built {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();

    // zstd, not gzip: the dev profile builds zstd optimised but not zlib-rs, whose inflate
    // takes ~10 s for 96 MiB there. Random bytes do not compress: zstd keeps them in raw
    // blocks, so the blob is a little larger than the file.
    let staged = layout.join("layer.partial");
    let blob = Hashing::new(BufWriter::new(File::create(&staged).unwrap()));
    let tar = Hashing::new(zstd::stream::write::Encoder::new(blob, 1).unwrap());
    let mut builder = tar::Builder::new(tar);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let mut noise = Hashing::new(Noise::new(size));
    builder
        .append_data(&mut header, "big.bin", &mut noise)
        .unwrap();
    let (_, file_digest, file_bytes) = noise.finish();
    assert_eq!(file_bytes, size);
    let (encoder, diff_id, _) = builder.into_inner().unwrap().finish();
    let (mut blob_writer, layer_digest, layer_size) = encoder.finish().unwrap().finish();
    blob_writer.flush().unwrap();
    drop(blob_writer);
    assert!(
        layer_size > size,
        "{layer_size} bytes: compressed after all"
    );
    fs::rename(
        &staged,
        layout
            .join("blobs/sha256")
            .join(layer_digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = small_blob(layout, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) =
        small_blob(layout, &serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "big"},
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    Built {
        layer_digest,
        layer_size,
        file_digest,
    }
}

/// A `kB` field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .trim()
        .strip_suffix("kB")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// Pull `repo:latest` into `dest` and check that `/big.bin` arrived whole (as `built`).
async fn pull_and_check(registry: &Registry, repo: &str, dest: &Path, built: &Built) {
    let opts = PullOptions {
        insecure_registries: vec![registry.host.clone()],
        ..PullOptions::default()
    };
    let pulled = pull_image(&format!("{repo}:latest"), dest, &opts)
        .await
        .unwrap();
    assert_eq!(pulled.summary.layers, 1);
    let mut unpacked = File::open(dest.join("big.bin")).unwrap();
    let mut hasher = Sha256::new();
    let size = io::copy(&mut unpacked, &mut hasher).unwrap();
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    assert_eq!(digest, built.file_digest, "{size} bytes unpacked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_layer_is_streamed_to_disk_not_buffered() {
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let big = build_image(&work.path().join("big"), LAYER_FILE);
    let big_repo = registry.push(&work.path().join("big"), "big", "test/big:latest", &[]);
    let small = build_image(&work.path().join("small"), MIB);
    let small_repo = registry.push(&work.path().join("small"), "big", "test/small:latest", &[]);
    // skopeo pushed the blobs as they were (the size limit below is about them).
    for built in [&big, &small] {
        let stored = fs::metadata(registry.blob_data(&built.layer_digest)).unwrap();
        assert_eq!(stored.len(), built.layer_size);
    }

    // A warm-up pull of a 1 MiB layer first: what any pull costs once, whatever its layers
    // (the HTTP client and TLS set-up, the runtime's blocking threads and their allocator
    // arenas, code paged in; ~20 MiB here, the same for a 8 MiB as for a 192 MiB layer) is
    // then in the RSS before the pull measured, and only what grows with the layer is left.
    pull_and_check(&registry, &small_repo, &work.path().join("warm-up"), &small).await;

    let rss_before = status_bytes("VmRSS");
    let hwm_before = status_bytes("VmHWM");
    let anon_before = status_bytes("RssAnon");
    assert!(
        big.layer_size.saturating_sub(anon_before) > MAX_PEAK_GROWTH,
        "RssAnon {:.1} MiB before the pull: too much resident memory that a buffered layer \
         could reuse for the limit to tell",
        mib(anon_before)
    );
    let started = std::time::Instant::now();
    pull_and_check(&registry, &big_repo, &work.path().join("rootfs"), &big).await;
    let elapsed = started.elapsed();
    let hwm_after = status_bytes("VmHWM");
    // The peak during the pull minus the RSS it started from. Never less than what the pull
    // itself added: if the pull stayed below the earlier peak, this is that peak's excess
    // over the RSS instead, an overestimate. (Hashing the unpacked file above reads it in
    // 8 KiB pieces.)
    let growth = hwm_after.saturating_sub(rss_before);
    eprintln!(
        "{:.1} MiB layer: VmRSS before {:.1} MiB (RssAnon {:.1} MiB), VmHWM before {:.1} MiB, \
         after {:.1} MiB; peak growth {:.1} MiB; pull took {elapsed:?}",
        mib(big.layer_size),
        mib(rss_before),
        mib(anon_before),
        mib(hwm_before),
        mib(hwm_after),
        mib(growth),
    );
    assert!(
        growth < MAX_PEAK_GROWTH,
        "pulling a {:.1} MiB layer raised the peak RSS by {:.1} MiB (limit {:.1} MiB): \
         the layer is held in memory",
        mib(big.layer_size),
        mib(growth),
        mib(MAX_PEAK_GROWTH)
    );
}
