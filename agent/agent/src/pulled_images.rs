//! The in-guest image pull [`ImageService`]: `image_guest_pull` storages are resolved by
//! `guest-image` (registry pull, digest checks, ocicrypt decryption with keys the
//! confidential data hub fetches from the KBS after attestation, safe unpack), inside the
//! guest. Nothing of the host-shared filesystem is trusted.
//!
//! Rules:
//! - In-guest pull is off unless the kernel command line says `agent.guest_pull=true`; then
//!   every reference is pulled, except `cocoon-baked:<name>`, which — like every reference
//!   while the pull is off — is served by the baked-rootfs service ([`BakedImages`]).
//! - A container's image is unpacked into `/run/kata-containers/<cid>/image-rootfs` and
//!   bind-mounted on its rootfs path; blobs (ciphertext as served, digest-checked) are cached
//!   per sandbox in [`BLOB_CACHE_DIR`] and shared by its containers.
//! - Encrypted layers get their key-encryption key from the KBS named by
//!   `agent.aa_kbc_params=cc_kbc::<url>`; the attester follows `agent.tee_class=` (`coco-dev`
//!   may use sample evidence; `tdx`/`snp` require their device, with no fallback). When the
//!   data hub cannot be set up (e.g. no TEE device), encrypted pulls fail with that reason.
//! - Registries in `agent.insecure_registries=host:port,...` are reached over plain HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_core::{ImageError, ImageService};
use confidential_data_hub::{CdhConfig, ConfidentialDataHub, TeeClass, kbs_url_from_aa_kbc_params};
use guest_image::{KbsUri, KeyResolveError, KeyResolver, PullOptions};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use zeroize::Zeroizing;

use crate::images::BakedImages;

/// Per-sandbox blob cache in the guest (tmpfs).
pub const BLOB_CACHE_DIR: &str = "/run/cocoon/image-cache";

/// Prefix that always names a baked rootfs.
const BAKED_PREFIX: &str = "cocoon-baked:";

/// In-guest pull settings from the kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestPullConfig {
    /// `agent.guest_pull=true|false`.
    pub enabled: bool,
    /// KBS URL from `agent.aa_kbc_params=cc_kbc::<url>`.
    pub kbs_url: Option<String>,
    /// `agent.tee_class=coco-dev|tdx|snp`; `None` means detect and require a TEE device.
    pub tee_class: Option<TeeClass>,
    /// `agent.insecure_registries=host:port,...` (plain HTTP).
    pub insecure_registries: Vec<String>,
}

impl GuestPullConfig {
    /// The `agent.*` keys this module reads.
    pub const KEYS: [&'static str; 4] = [
        "guest_pull",
        "aa_kbc_params",
        "tee_class",
        "insecure_registries",
    ];

    /// Applies `agent.<key>=<value>`; the error names what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "guest_pull" => {
                self.enabled = match value {
                    "true" | "1" | "on" | "" => true,
                    "false" | "0" | "off" => false,
                    _ => return Err("expected true or false".into()),
                }
            }
            "aa_kbc_params" => {
                self.kbs_url = Some(kbs_url_from_aa_kbc_params(value).map_err(|e| e.to_string())?)
            }
            "tee_class" => {
                self.tee_class = Some(value.parse::<TeeClass>().map_err(|e| e.to_string())?)
            }
            "insecure_registries" => {
                let list: Vec<String> = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = list
                    .iter()
                    .find(|r| r.contains(['/', '@', ' ']) || r.starts_with(':'))
                {
                    return Err(format!("{bad:?} is not a registry host[:port]"));
                }
                self.insecure_registries = list;
            }
            _ => return Err(format!("unknown guest pull key {key:?}")),
        }
        Ok(())
    }
}

/// A key resolver standing in for a data hub that could not be set up: every request fails
/// with the reason (so an encrypted pull says why no key is available).
struct UnavailableResolver(String);

#[async_trait::async_trait]
impl KeyResolver for UnavailableResolver {
    async fn resolve(&self, kid: &KbsUri) -> Result<Zeroizing<Vec<u8>>, KeyResolveError> {
        Err(KeyResolveError(format!(
            "{kid}: the confidential data hub is unavailable: {}",
            self.0
        )))
    }
}

/// [`ImageService`] pulling images inside the guest, with the baked store for `cocoon-baked:`.
pub struct PulledImages {
    baked: BakedImages,
    config: GuestPullConfig,
    resolver: Option<Arc<dyn KeyResolver>>,
    cache_dir: PathBuf,
}

impl PulledImages {
    /// Builds the service; sets up the data hub when a KBS is configured.
    pub fn new(baked: BakedImages, config: GuestPullConfig) -> Self {
        let resolver: Option<Arc<dyn KeyResolver>> = match (&config.kbs_url, config.enabled) {
            (Some(url), true) => {
                let class = config.tee_class;
                let hub = match class {
                    Some(class) => ConfidentialDataHub::new(&CdhConfig::new(url.clone(), class))
                        .map_err(|e| e.to_string()),
                    None => Err("agent.tee_class is not set (coco-dev, tdx or snp)".to_owned()),
                };
                match hub {
                    Ok(hub) => Some(Arc::new(hub)),
                    Err(reason) => {
                        tracing::error!(%reason, "confidential data hub unavailable");
                        Some(Arc::new(UnavailableResolver(reason)))
                    }
                }
            }
            _ => None,
        };
        Self {
            baked,
            config,
            resolver,
            cache_dir: PathBuf::from(BLOB_CACHE_DIR),
        }
    }

    /// Uses `dir` as the blob cache instead of [`BLOB_CACHE_DIR`].
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// Whether `image_ref` goes to a registry (else to the baked store).
    pub fn pulls(&self, image_ref: &str) -> bool {
        self.config.enabled && !image_ref.starts_with(BAKED_PREFIX)
    }

    fn options(&self) -> PullOptions {
        PullOptions {
            insecure_registries: self.config.insecure_registries.clone(),
            key_resolver: self.resolver.clone(),
            cache_dir: Some(self.cache_dir.clone()),
            ..PullOptions::default()
        }
    }
}

fn image_dir(dest_rootfs: &Path) -> Result<PathBuf, ImageError> {
    dest_rootfs
        .parent()
        .map(|p| p.join("image-rootfs"))
        .ok_or_else(|| ImageError::Failed("rootfs path has no parent".into()))
}

/// The error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[async_trait::async_trait]
impl ImageService for PulledImages {
    async fn pull(&self, image_ref: &str, cid: &str, dest: &Path) -> Result<(), ImageError> {
        if !self.pulls(image_ref) {
            return self.baked.pull(image_ref, cid, dest).await;
        }
        let unpacked = image_dir(dest)?;
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| ImageError::Failed(format!("create blob cache: {e}")))?;
        tracing::info!(image = image_ref, cid, "pulling image in the guest");
        let pulled = guest_image::pull_image(image_ref, &unpacked, &self.options())
            .await
            .map_err(|e| ImageError::Failed(format!("pull {image_ref}: {}", chain(&e))))?;
        tracing::info!(
            image = image_ref,
            digest = pulled.manifest_digest,
            layers = pulled.summary.layers,
            "image pulled"
        );
        let mounted = std::fs::create_dir_all(dest)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                mount(
                    Some(&unpacked),
                    dest,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| e.to_string())
            });
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir_all(&unpacked);
            return Err(ImageError::Failed(format!(
                "prepare rootfs: bind-mount pulled image: {e}"
            )));
        }
        Ok(())
    }

    async fn release(&self, cid: &str, dest: &Path) -> Result<(), ImageError> {
        // Both services mount on `dest`; the baked release unmounts it and removes the
        // container directory (with `image-rootfs` in it).
        if self.config.enabled {
            match umount2(dest, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(e) => {
                    return Err(ImageError::Failed(format!("unmount rootfs: {e}")));
                }
            }
        }
        self.baked.release(cid, dest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_bad_values_are_named() {
        let mut c = GuestPullConfig::default();
        c.set("guest_pull", "true").unwrap();
        c.set("aa_kbc_params", "cc_kbc::http://10.0.2.101:8080")
            .unwrap();
        c.set("tee_class", "coco-dev").unwrap();
        c.set("insecure_registries", "10.0.2.100:5000,localhost:5001")
            .unwrap();
        assert_eq!(
            c,
            GuestPullConfig {
                enabled: true,
                kbs_url: Some("http://10.0.2.101:8080".into()),
                tee_class: Some(TeeClass::CocoDev),
                insecure_registries: vec!["10.0.2.100:5000".into(), "localhost:5001".into()],
            }
        );
        assert!(c.set("guest_pull", "maybe").is_err());
        assert!(c.set("aa_kbc_params", "offline_fs_kbc::x").is_err());
        assert!(c.set("tee_class", "sample").unwrap_err().contains("sample"));
        assert!(c.set("insecure_registries", "http://x/").is_err());
    }

    #[test]
    fn kernel_command_line_words_reach_the_guest_pull_config() {
        let cfg = crate::config::parse_words(crate::config::split_cmdline(
            "console=hvc0 agent.guest_pull=true agent.aa_kbc_params=cc_kbc::http://10.0.2.101:8080 \
             agent.tee_class=snp agent.insecure_registries=10.0.2.100:5000",
        ))
        .unwrap();
        assert!(cfg.guest_pull.enabled);
        assert_eq!(cfg.guest_pull.tee_class, Some(TeeClass::Snp));
        assert_eq!(cfg.guest_pull.insecure_registries, ["10.0.2.100:5000"]);
        assert!(cfg.unknown.is_empty());
        let err = crate::config::parse_words(["agent.tee_class=sev"]).unwrap_err();
        assert!(err.to_string().contains("agent.tee_class=\"sev\""), "{err}");
    }

    #[test]
    fn baked_prefix_and_disabled_pull_go_to_the_baked_store() {
        let off = PulledImages::new(BakedImages::new("/nonexistent"), GuestPullConfig::default());
        assert!(!off.pulls("10.0.2.100:5000/busybox:latest"));
        let on = PulledImages::new(
            BakedImages::new("/nonexistent"),
            GuestPullConfig {
                enabled: true,
                ..GuestPullConfig::default()
            },
        );
        assert!(on.pulls("10.0.2.100:5000/busybox:latest"));
        assert!(!on.pulls("cocoon-baked:busybox"));
    }

    #[tokio::test]
    async fn a_tee_class_without_device_makes_encrypted_pulls_fail_with_the_reason() {
        let svc = PulledImages::new(
            BakedImages::new("/nonexistent"),
            GuestPullConfig {
                enabled: true,
                kbs_url: Some("http://127.0.0.1:9".into()),
                tee_class: Some(TeeClass::Tdx),
                insecure_registries: Vec::new(),
            },
        );
        // This host has no TDX guest device.
        let resolver = svc.resolver.clone().unwrap();
        let kid: KbsUri = "kbs:///default/key/k".parse().unwrap();
        let err = resolver.resolve(&kid).await.unwrap_err();
        assert!(err.0.contains("requires a tdx TEE device"), "{err}");
    }
}
