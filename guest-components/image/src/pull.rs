//! The pull pipeline: resolve, check policy, fetch and verify config, unwrap layer keys,
//! download layers concurrently (bounded) into the blob cache, and unpack them in order into
//! a staging directory that becomes the destination only when everything verified.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

use crate::cache::BlobCache;
use crate::ocicrypt::{self, DecryptionKeys, LayerCipherKey};
use crate::policy::Policy;
use crate::registry::{CredentialSource, Descriptor, Platform, RegistryClient, digest_hex};
use crate::retry::RetryPolicy;
use crate::unpack::{Compression, UnpackLimits, UnpackSummary, Unpacker};
use crate::{ImageError, KeyResolver, PrivateKey};

/// Receives progress of a pull (the CLI draws bars from it). All methods default to no-ops.
pub trait ProgressSink: Send + Sync {
    /// A layer is about to be fetched.
    fn layer_started(&self, _index: usize, _digest: &str, _size: u64) {}
    /// Bytes of layer `index` downloaded so far.
    fn layer_progress(&self, _index: usize, _downloaded: u64) {}
    /// Layer `index` is on disk and verified (`cached`: it was already in the cache).
    fn layer_downloaded(&self, _index: usize, _cached: bool) {}
    /// Layer `index` is unpacked.
    fn layer_unpacked(&self, _index: usize) {}
}

/// Options of [`pull_image`].
#[derive(Clone)]
pub struct PullOptions {
    /// Registries (`host[:port]`) reached over plain HTTP. Everything else uses HTTPS.
    pub insecure_registries: Vec<String>,
    /// Private keys for JWE-wrapped layer keys.
    pub decryption_keys: Vec<PrivateKey>,
    /// Resolver for `provider.attestation-agent` layer keys (the KBS client).
    pub key_resolver: Option<Arc<dyn KeyResolver>>,
    /// Registry credentials; anonymous when `None`.
    pub credentials: Option<Arc<dyn CredentialSource>>,
    /// Unpack limits for the whole image.
    pub limits: UnpackLimits,
    /// Layers downloaded at the same time.
    pub max_concurrent_downloads: usize,
    /// Blob cache shared between pulls; a private temporary directory when `None`.
    pub cache_dir: Option<PathBuf>,
    /// Progress reports.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Platform to select from image indexes.
    pub platform: Platform,
    /// Image security policy; when `None` every image is accepted.
    pub policy: Option<Arc<Policy>>,
    /// Retries of registry requests (manifests, blobs, authentication) that failed with
    /// 429, 502, 503, 504 or a network error.
    pub retry: RetryPolicy,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            decryption_keys: Vec::new(),
            key_resolver: None,
            credentials: None,
            limits: UnpackLimits::default(),
            max_concurrent_downloads: 3,
            cache_dir: None,
            progress: None,
            platform: Platform::default(),
            policy: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// What the agent needs from the image config to build the container process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageConfig {
    /// `User` (name, uid, or `uid:gid`).
    pub user: Option<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
    /// Image OS.
    pub os: String,
    /// Image architecture.
    pub architecture: String,
}

/// Result of a successful pull.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Digest of the platform image manifest.
    pub manifest_digest: String,
    /// Digest of the index, when the reference named one.
    pub index_digest: Option<String>,
    /// Digest of the config blob.
    pub config_digest: String,
    /// The process-relevant part of the config.
    pub config: ImageConfig,
    /// What the unpacker did.
    pub summary: UnpackSummary,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<ContainerConfig>,
    rootfs: RootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    user: Option<String>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// Everything known about one layer before it is fetched.
struct LayerPlan {
    index: usize,
    desc: Descriptor,
    compression: Compression,
    key: Option<Arc<LayerCipherKey>>,
    diff_id: String,
}

/// The directory being filled; removed on drop unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Staging {
    fn create(dest: &Path) -> Result<Self, ImageError> {
        let bad = |reason: &str| ImageError::Destination {
            path: dest.display().to_string(),
            reason: reason.to_owned(),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| bad("has no final component"))?;
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| ImageError::io(format!("creating {}", parent.display()), e))?;
        match std::fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {
                let mut entries = std::fs::read_dir(dest)
                    .map_err(|e| ImageError::io(format!("reading {}", dest.display()), e))?;
                if entries.next().is_some() {
                    return Err(bad("exists and is not empty"));
                }
            }
            Ok(_) => return Err(bad("exists and is not a directory")),
            Err(_) => {}
        }
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!(
            ".{}.partial-{}-{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        std::fs::create_dir(&path)
            .map_err(|e| ImageError::io(format!("creating staging {}", path.display()), e))?;
        Ok(Self {
            path,
            committed: false,
        })
    }

    fn commit(mut self, dest: &Path) -> Result<(), ImageError> {
        if dest.exists() {
            std::fs::remove_dir(dest)
                .map_err(|e| ImageError::io(format!("replacing empty {}", dest.display()), e))?;
        }
        std::fs::rename(&self.path, dest)
            .map_err(|e| ImageError::io(format!("moving rootfs to {}", dest.display()), e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove staging");
        }
    }
}

fn parse_config(bytes: &[u8], layers: usize) -> Result<(ImageConfig, Vec<String>), ImageError> {
    let file: ConfigFile =
        serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: "image config".into(),
            reason: e.to_string(),
        })?;
    if file.rootfs.kind != "layers" {
        return Err(ImageError::InvalidManifest {
            what: "image config".into(),
            reason: format!("rootfs.type {:?}", file.rootfs.kind),
        });
    }
    if file.rootfs.diff_ids.len() != layers {
        return Err(ImageError::InvalidManifest {
            what: "image config".into(),
            reason: format!(
                "{} diff_ids for {layers} layers in the manifest",
                file.rootfs.diff_ids.len()
            ),
        });
    }
    for d in &file.rootfs.diff_ids {
        digest_hex(d)?;
    }
    let c = file.config.unwrap_or_default();
    let config = ImageConfig {
        user: c.user.filter(|u| !u.is_empty()),
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        labels: c.labels.unwrap_or_default(),
        stop_signal: c.stop_signal,
        os: file.os,
        architecture: file.architecture,
    };
    Ok((config, file.rootfs.diff_ids))
}

/// Pull `reference` and unpack it into `dest_rootfs` (which must not exist or be an empty
/// directory). Nothing is left at `dest_rootfs` or beside it when this returns an error.
pub async fn pull_image(
    reference: &str,
    dest_rootfs: &Path,
    opts: &PullOptions,
) -> Result<PulledImage, ImageError> {
    let reference = RegistryClient::parse_reference(reference)?;
    let client = RegistryClient::try_new(
        &opts.insecure_registries,
        opts.credentials.clone(),
        opts.platform.clone(),
    )?
    .with_retry_policy(opts.retry);
    client.authenticate(&reference).await?;
    let resolved = client.resolve_manifest(&reference).await?;
    tracing::info!(reference = %reference, digest = %resolved.digest, "resolved image manifest");
    if let Some(policy) = &opts.policy {
        policy
            .check(
                &client,
                &reference,
                resolved.index_digest.as_ref().unwrap_or(&resolved.digest),
            )
            .await?;
    }
    let manifest = &resolved.manifest;
    let config_bytes = client
        .fetch_blob_bytes(&reference, &manifest.config)
        .await?;
    let (config, diff_ids) = parse_config(&config_bytes, manifest.layers.len())?;

    let keys = DecryptionKeys {
        private_keys: opts.decryption_keys.clone(),
        resolver: opts.key_resolver.clone(),
    };
    let mut plans = Vec::with_capacity(manifest.layers.len());
    for (index, (desc, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
        let compression = Compression::from_media_type(&desc.media_type)
            .ok_or_else(|| ImageError::UnsupportedMediaType(desc.media_type.clone()))?;
        let key = if ocicrypt::is_encrypted(&desc.media_type) {
            let key = ocicrypt::layer_key(&desc.annotations, &keys)
                .await
                .map_err(|source| ImageError::Decrypt {
                    index,
                    digest: desc.digest.clone(),
                    source,
                })?;
            Some(Arc::new(key))
        } else {
            None
        };
        plans.push(LayerPlan {
            index,
            desc: desc.clone(),
            compression,
            key,
            diff_id,
        });
    }

    let staging = Staging::create(dest_rootfs)?;
    let private_blobs;
    let cache = match &opts.cache_dir {
        Some(dir) => BlobCache::open(dir)?,
        None => {
            let parent = staging.path.parent().unwrap_or(Path::new("."));
            let dir = tempfile::Builder::new()
                .prefix(".guest-image-blobs-")
                .tempdir_in(parent)
                .map_err(|e| ImageError::io("creating blob directory", e))?;
            let cache = BlobCache::open(dir.path())?;
            private_blobs = dir;
            tracing::debug!(dir = %private_blobs.path().display(), "private blob directory");
            cache
        }
    };

    let semaphore = Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1)));
    let mut downloads = JoinSet::new();
    let mut ready = Vec::with_capacity(plans.len());
    for plan in &plans {
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        let (cache, client, reference) = (cache.clone(), client.clone(), reference.clone());
        let (semaphore, progress) = (semaphore.clone(), opts.progress.clone());
        let (desc, index) = (plan.desc.clone(), plan.index);
        downloads.spawn(async move {
            let result = async {
                let _permit = semaphore
                    .acquire_owned()
                    .await
                    .map_err(|e| ImageError::Task(e.to_string()))?;
                if let Some(p) = &progress {
                    p.layer_started(index, &desc.digest, desc.size);
                }
                let report = |n: u64| {
                    if let Some(p) = &progress {
                        p.layer_progress(index, n);
                    }
                };
                let fetch_desc = desc.clone();
                cache
                    .get_or_fetch(&desc.digest, desc.size, |tmp| async move {
                        client
                            .fetch_blob_to_file(&reference, &fetch_desc, &tmp, &report)
                            .await
                    })
                    .await
            }
            .await;
            let _ = tx.send(result);
        });
    }

    let unpacked = unpack_in_order(&staging.path, plans, ready, opts).await;
    // Whatever happened, no download may outlive this call: abort the rest and wait until
    // their futures (and the partial-file guards inside) are dropped.
    downloads.abort_all();
    while downloads.join_next().await.is_some() {}
    let summary = unpacked?;
    tokio::task::spawn_blocking({
        let dest = dest_rootfs.to_path_buf();
        move || staging.commit(&dest)
    })
    .await
    .map_err(|e| ImageError::Task(e.to_string()))??;
    tracing::info!(reference = %reference, layers = summary.layers, entries = summary.entries, "image unpacked");
    Ok(PulledImage {
        manifest_digest: resolved.digest,
        index_digest: resolved.index_digest,
        config_digest: manifest.config.digest.clone(),
        config,
        summary,
    })
}

/// Unpack layers in manifest order as their downloads complete.
async fn unpack_in_order(
    root: &Path,
    plans: Vec<LayerPlan>,
    ready: Vec<oneshot::Receiver<Result<(PathBuf, bool), ImageError>>>,
    opts: &PullOptions,
) -> Result<UnpackSummary, ImageError> {
    let mut unpacker = Unpacker::new(root, opts.limits).map_err(|source| ImageError::Unpack {
        index: 0,
        digest: String::new(),
        source,
    })?;
    for (plan, rx) in plans.into_iter().zip(ready) {
        let (blob, cached) = rx
            .await
            .map_err(|_| ImageError::Task("download task ended without a result".into()))??;
        if let Some(p) = &opts.progress {
            p.layer_downloaded(plan.index, cached);
        }
        let index = plan.index;
        unpacker = tokio::task::spawn_blocking(move || {
            unpack_one(&mut unpacker, &blob, &plan).map(|()| unpacker)
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))??;
        if let Some(p) = &opts.progress {
            p.layer_unpacked(index);
        }
    }
    Ok(unpacker.into_summary())
}

/// Verify (HMAC first for encrypted layers), decrypt, decompress and unpack one layer, then
/// check its diff_id.
fn unpack_one(unpacker: &mut Unpacker, blob: &Path, plan: &LayerPlan) -> Result<(), ImageError> {
    let mut file =
        File::open(blob).map_err(|e| ImageError::io(format!("opening {}", blob.display()), e))?;
    let unpack_err = |source| ImageError::Unpack {
        index: plan.index,
        digest: plan.desc.digest.clone(),
        source,
    };
    let diff_id = match &plan.key {
        Some(key) => {
            // Rule: no plaintext is used before the HMAC over the whole ciphertext is
            // verified. One pipelined pass (HMAC thread + AES-CTR thread) decrypts into an
            // unnamed staging file beside the blob, which is handed out only once the HMAC
            // matched and vanishes on drop (or on failure, unread).
            let staging_dir = blob.parent().unwrap_or(Path::new("."));
            let plaintext = key
                .decrypt_verified(&mut file, staging_dir)
                .map_err(|source| ImageError::Decrypt {
                    index: plan.index,
                    digest: plan.desc.digest.clone(),
                    source,
                })?;
            unpacker
                .unpack_layer(plaintext, plan.compression)
                .map_err(unpack_err)?
        }
        None => unpacker
            .unpack_layer(file, plan.compression)
            .map_err(unpack_err)?,
    };
    if diff_id != plan.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("diff_id of layer {} ({})", plan.index, plan.desc.digest),
            expected: plan.diff_id.clone(),
            actual: diff_id,
        });
    }
    Ok(())
}
