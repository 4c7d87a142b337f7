//! configfs-tsm report interface (`Documentation/ABI/testing/configfs-tsm`):
//! mkdir an entry, check `provider`, write `inblob`, read `outblob`, check
//! `generation` (a concurrent writer would have bumped it), rmdir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::AttestationError;

/// The kernel's configfs-tsm report root.
pub const TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Points where an emulated kernel (tests with a fake tree) must act, because a
/// plain directory does not populate attribute files the way configfs does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsmStep {
    /// The entry directory was just created (configfs creates `provider`, `generation`, ...).
    Created,
    /// `inblob` was just written (the kernel fetches the quote into `outblob`).
    InblobWritten,
    /// The entry is about to be removed (configfs removes attribute files itself).
    Removing,
}

/// Hook called at each [`TsmStep`] with the entry directory.
pub type TsmHook = Box<dyn Fn(TsmStep, &Path) + Send + Sync>;

/// A configfs-tsm report requester.
pub struct TsmReport {
    root: PathBuf,
    provider: String,
    hook: Option<TsmHook>,
}

impl std::fmt::Debug for TsmReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsmReport")
            .field("root", &self.root)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

static ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the entry on every exit path.
struct Entry<'a> {
    dir: PathBuf,
    hook: Option<&'a TsmHook>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hook {
            h(TsmStep::Removing, &self.dir);
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove configfs-tsm entry");
        }
    }
}

fn read_text(path: &Path) -> Result<String, AttestationError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| AttestationError::io(path, e))
}

impl TsmReport {
    /// A requester on `root` expecting `provider` (e.g. `tdx_guest`).
    pub fn new(root: impl Into<PathBuf>, provider: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            provider: provider.into(),
            hook: None,
        }
    }

    /// Install a kernel-emulation hook (fake trees in tests).
    pub fn with_hook(mut self, hook: TsmHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The report root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Request a report for `inblob` and return `outblob`.
    pub fn request(&self, inblob: &[u8]) -> Result<Vec<u8>, AttestationError> {
        if !self.root.is_dir() {
            return Err(AttestationError::Device(format!(
                "configfs-tsm report directory {} is missing (is configfs mounted and the guest driver loaded?)",
                self.root.display()
            )));
        }
        let name = format!(
            "cocoon-{}-{}",
            std::process::id(),
            ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join(name);
        std::fs::create_dir(&dir).map_err(|e| AttestationError::io(&dir, e))?;
        let entry = Entry {
            dir,
            hook: self.hook.as_ref(),
        };
        if let Some(h) = entry.hook {
            h(TsmStep::Created, &entry.dir);
        }
        let provider = read_text(&entry.dir.join("provider"))?;
        if provider != self.provider {
            return Err(AttestationError::Device(format!(
                "configfs-tsm provider is {provider:?}, expected {:?}",
                self.provider
            )));
        }
        let inblob_path = entry.dir.join("inblob");
        std::fs::write(&inblob_path, inblob).map_err(|e| AttestationError::io(&inblob_path, e))?;
        if let Some(h) = entry.hook {
            h(TsmStep::InblobWritten, &entry.dir);
        }
        let outblob_path = entry.dir.join("outblob");
        let outblob =
            std::fs::read(&outblob_path).map_err(|e| AttestationError::io(&outblob_path, e))?;
        let generation_text = read_text(&entry.dir.join("generation"))?;
        let generation: u64 = generation_text.parse().map_err(|_| {
            AttestationError::Device(format!(
                "configfs-tsm generation {generation_text:?} is not a number"
            ))
        })?;
        if generation != 1 {
            return Err(AttestationError::Device(format!(
                "configfs-tsm generation is {generation}, expected 1: another writer used the entry concurrently"
            )));
        }
        if outblob.is_empty() {
            return Err(AttestationError::Device(
                "configfs-tsm returned an empty outblob".into(),
            ));
        }
        tracing::debug!(bytes = outblob.len(), "configfs-tsm report received");
        Ok(outblob)
    }
}
