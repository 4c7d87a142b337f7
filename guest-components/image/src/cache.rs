//! Blob cache keyed by digest, shared by every pull in the process that names the same
//! directory (the containers of one pod). Each digest has an async lock, so concurrent pulls
//! of the same image download each blob once and the others wait and reuse it.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use sha2::{Digest, Sha256};

use crate::ImageError;
use crate::registry::digest_hex;

static CACHES: LazyLock<Mutex<HashMap<PathBuf, Arc<BlobCache>>>> = LazyLock::new(Default::default);
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of verified blobs, `<dir>/blobs/sha256/<hex>`.
#[derive(Debug)]
pub struct BlobCache {
    dir: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Removes a partially written file unless it was committed.
struct PartialFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl BlobCache {
    /// The process-wide cache for `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Arc<Self>, ImageError> {
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .map_err(|e| ImageError::io(format!("creating cache {}", blobs.display()), e))?;
        let key = std::fs::canonicalize(dir)
            .map_err(|e| ImageError::io(format!("resolving cache {}", dir.display()), e))?;
        let mut caches = CACHES
            .lock()
            .map_err(|_| ImageError::Task("cache registry poisoned".into()))?;
        Ok(caches
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Self {
                    dir: key,
                    locks: Mutex::new(HashMap::new()),
                })
            })
            .clone())
    }

    /// Where the blob `digest` lives once cached.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .dir
            .join("blobs")
            .join("sha256")
            .join(digest_hex(digest)?))
    }

    fn lock_for(&self, digest: &str) -> Result<Arc<tokio::sync::Mutex<()>>, ImageError> {
        let mut locks = self
            .locks
            .lock()
            .map_err(|_| ImageError::Task("cache locks poisoned".into()))?;
        Ok(locks.entry(digest.to_owned()).or_default().clone())
    }

    /// Return the path of blob `digest` (`size` bytes), calling `fetch` to write it into a
    /// temporary file when it is not cached yet. `fetch` must verify digest and size itself.
    /// A cached blob is re-hashed before reuse. Returns the path and whether it was a hit.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        digest: &str,
        size: u64,
        fetch: F,
    ) -> Result<(PathBuf, bool), ImageError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), ImageError>>,
    {
        let path = self.blob_path(digest)?;
        let lock = self.lock_for(digest)?;
        let _guard = lock.lock().await;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            let check = path.clone();
            let want = digest.to_owned();
            let ok = tokio::task::spawn_blocking(move || file_matches(&check, &want, size))
                .await
                .map_err(|e| ImageError::Task(e.to_string()))?;
            if ok {
                tracing::debug!(digest, "blob cache hit");
                return Ok((path, true));
            }
            tracing::warn!(digest, "cached blob is corrupt, fetching again");
            let _ = tokio::fs::remove_file(&path).await;
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut partial = PartialFile {
            path: path.with_extension(format!("partial-{}-{n}", std::process::id())),
            committed: false,
        };
        fetch(partial.path.clone()).await?;
        tokio::fs::rename(&partial.path, &path)
            .await
            .map_err(|e| ImageError::io(format!("committing {}", path.display()), e))?;
        partial.committed = true;
        Ok((path, false))
    }
}

/// Whether the file has the given size and sha256 digest.
pub(crate) fn file_matches(path: &Path, digest: &str, size: u64) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = Sha256::new();
    match std::io::copy(&mut file, &mut hasher) {
        Ok(n) if n == size => format!("sha256:{}", hex::encode(hasher.finalize())) == digest,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_fetches_of_one_digest_download_once() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(tmp.path()).unwrap();
        let data = b"layer bytes".to_vec();
        let digest = crate::registry::sha256_digest(&data);
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = BlobCache::open(tmp.path()).unwrap();
            let (digest, data, calls) = (digest.clone(), data.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&digest, data.len() as u64, |p| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        tokio::fs::write(&p, &data)
                            .await
                            .map_err(|e| ImageError::io("w", e))
                    })
                    .await
                    .unwrap()
            }));
        }
        let mut hits = 0;
        for t in tasks {
            let (path, hit) = t.await.unwrap();
            assert_eq!(std::fs::read(path).unwrap(), data);
            hits += usize::from(hit);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(hits, 7);
        // A corrupted cache entry is detected and refetched.
        std::fs::write(cache.blob_path(&digest).unwrap(), b"tampered!!!").unwrap();
        let (_, hit) = cache
            .get_or_fetch(&digest, data.len() as u64, |p| async move {
                tokio::fs::write(&p, b"layer bytes")
                    .await
                    .map_err(|e| ImageError::io("w", e))
            })
            .await
            .unwrap();
        assert!(!hit);
        // A failing fetch leaves no partial file.
        let other = crate::registry::sha256_digest(b"other");
        let err = cache
            .get_or_fetch(&other, 5, |p| async move {
                tokio::fs::write(&p, b"oth")
                    .await
                    .map_err(|e| ImageError::io("w", e))?;
                Err(ImageError::Task("network down".into()))
            })
            .await;
        assert!(err.is_err());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
