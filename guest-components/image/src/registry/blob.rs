//! Blob downloads into memory (configs, signature payloads) or a file (layers), with the
//! sha256 and size checked while streaming.
//!
//! A download that fails in a way worth retrying (see [`crate::retry`]) is resumed: the next
//! attempt asks for the rest with `Range: bytes=<received>-` and appends to what was
//! already written and hashed. A registry that answers with the whole blob (`200` instead
//! of `206`) or with a partial body of the wrong length makes the download start over: the
//! file is truncated and the hash restarted, so the staged file always holds exactly the
//! bytes that were hashed. The digest is checked over the whole blob at the end, however
//! many attempts it took; a mismatch is final.

use std::io::SeekFrom;
use std::path::Path;

use futures_util::StreamExt;
use oci_client::Reference;
use oci_client::client::{BlobResponse, SizedStream};
use oci_client::manifest::OciDescriptor;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{Descriptor, MAX_DOCUMENT_BYTES, RegistryClient, digest_hex, error_chain};
use crate::ImageError;
use crate::retry::{Failure, Retrier};

/// Bytes received (and written and hashed) so far, across attempts.
struct Received {
    hasher: Sha256,
    bytes: u64,
}

impl Received {
    fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Forget everything received: empty the sink and restart the hash.
    async fn restart(&mut self, sink: &mut BlobSink<'_>) -> Result<(), ImageError> {
        sink.reset().await?;
        self.hasher = Sha256::new();
        self.bytes = 0;
        Ok(())
    }
}

impl RegistryClient {
    /// Fetch a small blob (config) into memory, verifying digest and size.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ImageError> {
        if desc.size > MAX_DOCUMENT_BYTES {
            return Err(ImageError::InvalidManifest {
                what: format!("blob {}", desc.digest),
                reason: format!(
                    "{} bytes is larger than the {} byte limit",
                    desc.size, MAX_DOCUMENT_BYTES
                ),
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
        self.download(reference, desc, &mut BlobSink::Memory(&mut out), &|_| {})
            .await?;
        Ok(out)
    }

    /// Stream a blob into `path` (created or truncated), verifying digest and size while
    /// writing. `progress` gets the byte count so far (it goes back to 0 when a retry has to
    /// start over). Retries resume where the previous attempt stopped when the registry
    /// honours `Range` requests, and start over otherwise.
    pub async fn fetch_blob_to_file(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), ImageError> {
        // Created synchronously: a cancelled pull must not leave a file created late by a
        // blocking-pool task after the caller's cleanup ran.
        let file = std::fs::File::create(path)
            .map(tokio::fs::File::from_std)
            .map_err(|e| ImageError::io(format!("creating {}", path.display()), e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        self.download(reference, desc, &mut BlobSink::File(&mut writer), progress)
            .await?;
        writer
            .flush()
            .await
            .map_err(|e| ImageError::io("flushing blob", e))
    }

    async fn download(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        sink: &mut BlobSink<'_>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), ImageError> {
        digest_hex(&desc.digest)?;
        let what = format!("blob {}", desc.digest);
        let mut retrier = Retrier::new(&self.retry, &what);
        let mut received = Received::new();
        loop {
            match self
                .download_attempt(reference, desc, &what, sink, &mut received, progress)
                .await
            {
                Ok(()) => break,
                Err(Failure::Transient(reason)) => retrier.wait(reason).await?,
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
        let actual = format!("sha256:{}", hex::encode(received.hasher.finalize()));
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                what,
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Open the blob stream: the whole blob when nothing was received yet, else the rest.
    async fn open_stream(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        what: &str,
        sink: &mut BlobSink<'_>,
        received: &mut Received,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<SizedStream, Failure> {
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            urls: None,
            annotations: None,
            ..OciDescriptor::default()
        };
        let offset = received.bytes;
        if offset == 0 {
            return self
                .client
                .pull_blob_stream(reference, &oci_desc)
                .await
                .map_err(|e| self.failure(reference, what, &e));
        }
        let response = self
            .client
            .pull_blob_stream_partial(reference, &oci_desc, offset, None)
            .await
            .map_err(|e| self.failure(reference, what, &e))?;
        match response {
            BlobResponse::Partial(s) => {
                let rest = desc.size.saturating_sub(offset);
                if let Some(n) = s.content_length.filter(|n| *n != rest) {
                    received.restart(sink).await.map_err(Failure::Fatal)?;
                    progress(0);
                    return Err(Failure::Transient(format!(
                        "the registry answered a request for the {rest} bytes from offset \
                         {offset} with {n} bytes; starting over"
                    )));
                }
                tracing::debug!(what, offset, "resuming blob download");
                Ok(s)
            }
            BlobResponse::Full(s) => {
                tracing::debug!(
                    what,
                    offset,
                    "range request answered in full; starting over"
                );
                received.restart(sink).await.map_err(Failure::Fatal)?;
                progress(0);
                Ok(s)
            }
        }
    }

    /// One request. `Ok` once all `desc.size` bytes are in the sink (the digest is the
    /// caller's to check).
    async fn download_attempt(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        what: &str,
        sink: &mut BlobSink<'_>,
        received: &mut Received,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Failure> {
        let mut stream = self
            .open_stream(reference, desc, what, sink, received, progress)
            .await?
            .stream;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // oci-client's own digest check ends a full stream with an error; ours gives
                // the precise message, so only a stream cut short is reported here.
                Err(e) if received.bytes >= desc.size => {
                    tracing::debug!(error = %e, "blob stream ended with an error after all bytes");
                    break;
                }
                Err(e) => {
                    return Err(Failure::Transient(format!(
                        "reading the body after {} of {} bytes: {}",
                        received.bytes,
                        desc.size,
                        error_chain(&e)
                    )));
                }
            };
            let total = received.bytes + chunk.len() as u64;
            if total > desc.size {
                return Err(Failure::Fatal(ImageError::SizeMismatch {
                    what: what.to_owned(),
                    expected: desc.size,
                    actual: total,
                }));
            }
            received.hasher.update(&chunk);
            sink.write(&chunk).await.map_err(Failure::Fatal)?;
            received.bytes = total;
            progress(total);
        }
        if received.bytes < desc.size {
            return Err(Failure::Transient(format!(
                "the body ended after {} of {} bytes",
                received.bytes, desc.size
            )));
        }
        Ok(())
    }
}

/// Where a blob goes: memory (configs) or a buffered file (layers).
enum BlobSink<'a> {
    Memory(&'a mut Vec<u8>),
    File(&'a mut tokio::io::BufWriter<tokio::fs::File>),
}

impl BlobSink<'_> {
    async fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        match self {
            Self::Memory(v) => {
                v.extend_from_slice(data);
                Ok(())
            }
            Self::File(f) => f
                .write_all(data)
                .await
                .map_err(|e| ImageError::io("writing blob", e)),
        }
    }

    /// Drop everything written so far.
    async fn reset(&mut self) -> Result<(), ImageError> {
        match self {
            Self::Memory(v) => v.clear(),
            Self::File(f) => {
                let err = |e| ImageError::io("truncating blob to start over", e);
                // The flush also waits for a write still in flight in the blocking pool, so
                // nothing lands in the file after the truncation.
                f.flush().await.map_err(err)?;
                let file = f.get_mut();
                file.set_len(0).await.map_err(err)?;
                file.seek(SeekFrom::Start(0)).await.map_err(err)?;
            }
        }
        Ok(())
    }
}
