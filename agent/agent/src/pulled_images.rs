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
//!   `agent.aa_kbc_params=cc_kbc::<url>`, or by initdata's `cdh.toml` / `aa.toml`, which
//!   wins ([`crate::initdata`]); with initdata, its TOML is sent in the attestation's
//!   `init-data`. The attester follows `agent.tee_class=` (`coco-dev`
//!   may use sample evidence; `tdx`/`snp` require their device, with no fallback). When the
//!   data hub cannot be set up (e.g. no TEE device), encrypted pulls fail with that reason.
//! - Registries in `agent.insecure_registries=host:port,...` are reached over plain HTTP.
//! - `agent.image_policy=kbs:///repo/type/tag` names a containers-policy.json and
//!   `agent.image_registry_auth=kbs:///repo/type/tag` an auth.json (registry credentials),
//!   both fetched from the KBS through the data hub (after attestation) for every pull. A
//!   resource that cannot be fetched or parsed fails the pull; there is no fallback to
//!   accepting every image or to anonymous access.
//! - `agent.image_max_unpacked_bytes=N[K|M|G|T]` bounds the uncompressed size of an image
//!   (the guest's rootfs is tmpfs); default: the smaller of 4 GiB and half of `MemTotal`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_core::{ImageError, ImageService};
use confidential_data_hub::{CdhConfig, ConfidentialDataHub, TeeClass, kbs_url_from_aa_kbc_params};
use guest_image::policy::Policy;
use guest_image::{
    AuthFileCredentials, CredentialSource, KbsUri, KeyResolveError, KeyResolver, PullOptions,
    UnpackLimits,
};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use zeroize::Zeroizing;

use crate::images::BakedImages;

/// Per-sandbox blob cache in the guest (tmpfs).
pub const BLOB_CACHE_DIR: &str = "/run/cocoon/image-cache";

/// Prefix that always names a baked rootfs.
const BAKED_PREFIX: &str = "cocoon-baked:";

/// Upper bound of the default unpacked-size limit.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// The default unpacked-size limit when `MemTotal` cannot be read.
const FALLBACK_MAX_UNPACKED_BYTES: u64 = 1 << 30;

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
    /// `agent.image_policy=kbs:///repo/type/tag`: containers-policy.json from the KBS.
    pub image_policy: Option<KbsUri>,
    /// `agent.image_registry_auth=kbs:///repo/type/tag`: auth.json from the KBS.
    pub image_registry_auth: Option<KbsUri>,
    /// `agent.image_max_unpacked_bytes=N[K|M|G|T]`; `None`: [`default_max_unpacked_bytes`].
    pub max_unpacked_bytes: Option<u64>,
    /// The initdata TOML sent as the attestation's `init-data` (from the initdata device,
    /// never from the command line).
    pub init_data: Option<String>,
    /// Extra trusted root (PEM) for an `https://` KBS (initdata's `kbs_cert`).
    pub kbs_root_cert: Option<String>,
}

impl GuestPullConfig {
    /// The `agent.*` keys this module reads.
    pub const KEYS: [&'static str; 7] = [
        "guest_pull",
        "aa_kbc_params",
        "tee_class",
        "insecure_registries",
        "image_policy",
        "image_registry_auth",
        "image_max_unpacked_bytes",
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
            "image_policy" => self.image_policy = Some(parse_kbs_uri(value)?),
            "image_registry_auth" => self.image_registry_auth = Some(parse_kbs_uri(value)?),
            "image_max_unpacked_bytes" => self.max_unpacked_bytes = Some(parse_size(value)?),
            _ => return Err(format!("unknown guest pull key {key:?}")),
        }
        Ok(())
    }
}

fn parse_kbs_uri(value: &str) -> Result<KbsUri, String> {
    value
        .parse::<KbsUri>()
        .map_err(|_| "expected kbs:///<repository>/<type>/<tag> with plain segments".to_owned())
}

/// `N`, `NK`, `NM`, `NG` or `NT` (binary multiples, case-insensitive), more than zero.
fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || "expected a byte count N, NK, NM, NG or NT (binary multiples), above 0".to_owned();
    let (digits, shift) = match value.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&value[..value.len() - 1], 10),
        Some(b'M') => (&value[..value.len() - 1], 20),
        Some(b'G') => (&value[..value.len() - 1], 30),
        Some(b'T') => (&value[..value.len() - 1], 40),
        _ => (value, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .filter(|&n| n > 0)
        .ok_or_else(bad)
}

/// The default unpacked-size limit from `/proc/meminfo` text: the smaller of
/// [`DEFAULT_MAX_UNPACKED_BYTES`] and half of `MemTotal` (the rootfs is tmpfs, backed by
/// guest memory); 1 GiB when `MemTotal` cannot be read.
pub fn default_max_unpacked_bytes(meminfo: Option<&str>) -> u64 {
    let mem_total = meminfo.and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let mut words = line.split_whitespace().skip(1);
        let kib: u64 = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(kib.checked_mul(1024)?)
    });
    match mem_total {
        Some(bytes) => (bytes / 2).min(DEFAULT_MAX_UNPACKED_BYTES),
        None => FALLBACK_MAX_UNPACKED_BYTES,
    }
}

/// The data hub, or why it could not be set up: then every request (layer key, policy,
/// credentials) fails with that reason.
enum DataHub {
    Ready(Box<ConfidentialDataHub>),
    Unavailable(String),
}

impl DataHub {
    async fn get_resource(&self, uri: &KbsUri) -> Result<Zeroizing<Vec<u8>>, String> {
        match self {
            DataHub::Ready(hub) => hub
                .get_resource(&uri.to_string())
                .await
                .map_err(|e| e.to_string()),
            DataHub::Unavailable(reason) => Err(format!(
                "the confidential data hub is unavailable: {reason}"
            )),
        }
    }
}

#[async_trait::async_trait]
impl KeyResolver for DataHub {
    async fn resolve(&self, kid: &KbsUri) -> Result<Zeroizing<Vec<u8>>, KeyResolveError> {
        match self {
            DataHub::Ready(hub) => hub.resolve(kid).await,
            DataHub::Unavailable(reason) => Err(KeyResolveError(format!(
                "{kid}: the confidential data hub is unavailable: {reason}"
            ))),
        }
    }
}

/// [`ImageService`] pulling images inside the guest, with the baked store for `cocoon-baked:`.
pub struct PulledImages {
    baked: BakedImages,
    config: GuestPullConfig,
    resolver: Option<Arc<DataHub>>,
    cache_dir: PathBuf,
    limits: UnpackLimits,
}

impl PulledImages {
    /// Builds the service; sets up the data hub when a KBS is configured.
    pub fn new(baked: BakedImages, config: GuestPullConfig) -> Self {
        let resolver = match (&config.kbs_url, config.enabled) {
            (Some(url), true) => {
                let class = config.tee_class;
                let hub = match class {
                    Some(class) => ConfidentialDataHub::new(&CdhConfig {
                        init_data: config.init_data.clone(),
                        kbs_root_cert: config.kbs_root_cert.clone(),
                        ..CdhConfig::new(url.clone(), class)
                    })
                    .map_err(|e| e.to_string()),
                    None => Err("agent.tee_class is not set (coco-dev, tdx or snp)".to_owned()),
                };
                match hub {
                    Ok(hub) => Some(Arc::new(DataHub::Ready(Box::new(hub)))),
                    Err(reason) => {
                        tracing::error!(%reason, "confidential data hub unavailable");
                        Some(Arc::new(DataHub::Unavailable(reason)))
                    }
                }
            }
            _ => None,
        };
        let max_total_bytes = config.max_unpacked_bytes.unwrap_or_else(|| {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
            default_max_unpacked_bytes(meminfo.as_deref())
        });
        let defaults = UnpackLimits::default();
        let limits = UnpackLimits {
            max_total_bytes,
            max_file_bytes: defaults.max_file_bytes.min(max_total_bytes),
            ..defaults
        };
        Self {
            baked,
            config,
            resolver,
            cache_dir: PathBuf::from(BLOB_CACHE_DIR),
            limits,
        }
    }

    /// The unpack limits every pull uses.
    pub fn limits(&self) -> UnpackLimits {
        self.limits
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

    /// Fetch a KBS resource named by `agent.<key>`; the error names the key and URI.
    async fn resource(&self, key: &str, uri: &KbsUri) -> Result<Zeroizing<Vec<u8>>, ImageError> {
        let hub = self.resolver.as_ref().ok_or_else(|| {
            ImageError::Failed(format!(
                "agent.{key}={uri} is set but no KBS is configured (agent.aa_kbc_params=cc_kbc::<url>, or initdata's cdh.toml)"
            ))
        })?;
        hub.get_resource(uri).await.map_err(|reason| {
            ImageError::Failed(format!(
                "agent.{key}={uri}: cannot fetch it from the KBS: {reason}"
            ))
        })
    }

    /// The pull options: the policy and registry credentials are fetched from the KBS when
    /// configured; any failure to fetch or parse them fails the pull.
    async fn options(&self) -> Result<PullOptions, ImageError> {
        let policy = match &self.config.image_policy {
            Some(uri) => {
                let json = self.resource("image_policy", uri).await?;
                let policy = Policy::from_json(&json).map_err(|e| {
                    ImageError::Failed(format!(
                        "agent.image_policy={uri}: not a usable containers-policy.json: {e}"
                    ))
                })?;
                Some(Arc::new(policy))
            }
            None => None,
        };
        let credentials = match &self.config.image_registry_auth {
            Some(uri) => {
                let json = self.resource("image_registry_auth", uri).await?;
                let creds = AuthFileCredentials::from_json(&json).map_err(|e| {
                    ImageError::Failed(format!("agent.image_registry_auth={uri}: {e}"))
                })?;
                Some(Arc::new(creds) as Arc<dyn CredentialSource>)
            }
            None => None,
        };
        Ok(PullOptions {
            insecure_registries: self.config.insecure_registries.clone(),
            key_resolver: self.resolver.clone().map(|hub| hub as Arc<dyn KeyResolver>),
            credentials,
            policy,
            limits: self.limits,
            cache_dir: Some(self.cache_dir.clone()),
            ..PullOptions::default()
        })
    }
}

fn image_dir(dest_rootfs: &Path) -> Result<PathBuf, ImageError> {
    dest_rootfs
        .parent()
        .map(|p| p.join("image-rootfs"))
        .ok_or_else(|| ImageError::Failed("rootfs path has no parent".into()))
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
        let options = self.options().await?;
        let pulled = guest_image::pull_image(image_ref, &unpacked, &options)
            .await
            .map_err(|e| {
                ImageError::Failed(format!(
                    "pull {image_ref}: {}",
                    guest_image::registry::error_chain(&e)
                ))
            })?;
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
                ..GuestPullConfig::default()
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
                ..GuestPullConfig::default()
            },
        );
        // This host has no TDX guest device.
        let resolver = svc.resolver.clone().unwrap();
        let kid: KbsUri = "kbs:///default/key/k".parse().unwrap();
        let err = resolver.resolve(&kid).await.unwrap_err();
        assert!(err.0.contains("requires a tdx TEE device"), "{err}");
    }

    #[test]
    fn image_policy_auth_and_limit_keys_parse_and_bad_values_are_named() {
        let cfg = crate::config::parse_words(crate::config::split_cmdline(
            "agent.guest_pull=true agent.image_policy=kbs:///default/policy/images \
             agent.image_registry_auth=kbs:///default/credential/registries \
             agent.image_max_unpacked_bytes=512M",
        ))
        .unwrap();
        let pull = &cfg.guest_pull;
        assert_eq!(
            pull.image_policy
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("kbs:///default/policy/images")
        );
        assert_eq!(
            pull.image_registry_auth
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("kbs:///default/credential/registries")
        );
        assert_eq!(pull.max_unpacked_bytes, Some(512 << 20));
        assert!(cfg.unknown.is_empty());

        let mut c = GuestPullConfig::default();
        for (value, bytes) in [
            ("123", 123u64),
            ("4k", 4 << 10),
            ("2G", 2 << 30),
            ("1T", 1 << 40),
        ] {
            c.set("image_max_unpacked_bytes", value).unwrap();
            assert_eq!(c.max_unpacked_bytes, Some(bytes), "{value}");
        }
        for bad in ["", "0", "0G", "G", "12X", "-1", "1.5G", "99999999999T"] {
            let err = crate::config::parse_words([format!("agent.image_max_unpacked_bytes={bad}")])
                .unwrap_err();
            assert!(
                err.to_string().contains("agent.image_max_unpacked_bytes")
                    && err.to_string().contains("byte count"),
                "{bad}: {err}"
            );
        }
        for key in ["image_policy", "image_registry_auth"] {
            for bad in [
                "",
                "http://kbs/a/b/c",
                "kbs:///a/b",
                "kbs:///a/../c",
                "kbs:///a/b/c/d",
            ] {
                let err = crate::config::parse_words([format!("agent.{key}={bad}")]).unwrap_err();
                assert!(
                    err.to_string().contains(&format!("agent.{key}="))
                        && err.to_string().contains("kbs:///<repository>"),
                    "{key}={bad}: {err}"
                );
            }
        }
    }

    #[test]
    fn default_unpacked_limit_is_half_the_memory_capped_at_4_gib() {
        let meminfo = |kib: u64| format!("MemTotal:       {kib} kB\nMemFree:        1000 kB\n");
        assert_eq!(default_max_unpacked_bytes(Some(&meminfo(2 << 20))), 1 << 30);
        assert_eq!(
            default_max_unpacked_bytes(Some(&meminfo(64 << 20))),
            4 << 30
        );
        assert_eq!(default_max_unpacked_bytes(Some(&meminfo(1000))), 512_000);
        for unreadable in [
            None,
            Some(""),
            Some("MemTotal: lots kB\n"),
            Some("MemTotal: 5 MB\n"),
        ] {
            assert_eq!(
                default_max_unpacked_bytes(unreadable),
                1 << 30,
                "{unreadable:?}"
            );
        }
        // A configured limit bounds the whole image and any single file.
        let svc = PulledImages::new(
            BakedImages::new("/nonexistent"),
            GuestPullConfig {
                max_unpacked_bytes: Some(256 << 20),
                ..GuestPullConfig::default()
            },
        );
        assert_eq!(svc.limits().max_total_bytes, 256 << 20);
        assert_eq!(svc.limits().max_file_bytes, 256 << 20);
        assert_eq!(
            svc.limits().max_entries,
            UnpackLimits::default().max_entries
        );
        // The default is never the library's 32 GiB.
        let svc = PulledImages::new(BakedImages::new("/nonexistent"), GuestPullConfig::default());
        assert!(svc.limits().max_total_bytes <= DEFAULT_MAX_UNPACKED_BYTES);
    }

    const COCO_DEV_POLICY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../attestation/kbs/config/policy-coco-dev.rego"
    );

    /// An in-process KBS (sample evidence, coco-dev resource policy) serving `resources`
    /// (`repo/type/tag` -> content).
    async fn start_kbs(dir: &Path, resources: &[(&str, &[u8])]) -> cocoon_kbs::KbsServer {
        let root = dir.join("resources");
        for (path, content) in resources {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
        let mut config = cocoon_kbs::KbsConfig::for_loopback(root);
        config.allow_sample = true;
        config.resource_policy_file = Some(COCO_DEV_POLICY.into());
        cocoon_kbs::KbsServer::start(config).await.unwrap()
    }

    fn kbs_pull_config(url: &str, policy: Option<&str>, auth: Option<&str>) -> GuestPullConfig {
        GuestPullConfig {
            enabled: true,
            kbs_url: Some(url.to_owned()),
            tee_class: Some(TeeClass::CocoDev),
            insecure_registries: vec!["127.0.0.1:5000".into()],
            image_policy: policy.map(|p| p.parse().unwrap()),
            image_registry_auth: auth.map(|p| p.parse().unwrap()),
            ..GuestPullConfig::default()
        }
    }

    const POLICY: &str = r#"{"default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {"127.0.0.1:5000/denied": [{"type": "reject"}]}}}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn policy_and_registry_auth_from_the_kbs_reach_the_pull_options() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let auth = format!(
            r#"{{"auths": {{"https://127.0.0.1:5000/v1/": {{"auth": "{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("puller:pw")
        );
        let kbs = start_kbs(
            dir.path(),
            &[
                ("default/policy/images", POLICY.as_bytes()),
                ("default/credential/registries", auth.as_bytes()),
            ],
        )
        .await;
        let svc = PulledImages::new(
            BakedImages::new("/nonexistent"),
            kbs_pull_config(
                &kbs.url(),
                Some("kbs:///default/policy/images"),
                Some("kbs:///default/credential/registries"),
            ),
        );
        let opts = svc.options().await.unwrap();
        let policy = opts.policy.expect("policy from the KBS");
        let denied =
            guest_image::registry::RegistryClient::parse_reference("127.0.0.1:5000/denied:1")
                .unwrap();
        let other =
            guest_image::registry::RegistryClient::parse_reference("127.0.0.1:5000/app:1").unwrap();
        assert!(matches!(
            policy.requirements_for(&denied),
            [guest_image::policy::Requirement::Reject]
        ));
        assert!(matches!(
            policy.requirements_for(&other),
            [guest_image::policy::Requirement::InsecureAcceptAnything]
        ));
        let creds = opts.credentials.expect("credentials from the KBS");
        match creds.credentials("127.0.0.1:5000").await.unwrap() {
            guest_image::Credentials::Basic { username, password } => {
                assert_eq!((username.as_str(), password.as_str()), ("puller", "pw"));
            }
            other => panic!("expected basic credentials, got {other:?}"),
        }
        assert!(matches!(
            creds.credentials("quay.io").await.unwrap(),
            guest_image::Credentials::Anonymous
        ));
        assert!(opts.key_resolver.is_some());
        assert_eq!(opts.limits, svc.limits());
        kbs.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unfetchable_or_malformed_kbs_resources_fail_the_pull() {
        let dir = tempfile::tempdir().unwrap();
        let kbs = start_kbs(
            dir.path(),
            &[
                ("default/policy/broken", b"{\"default\": []}"),
                (
                    "default/credential/broken",
                    b"{\"auths\": {\"r.example\": {\"auth\": 1}}}",
                ),
                ("default/policy/images", POLICY.as_bytes()),
            ],
        )
        .await;
        let url = kbs.url();
        let cases: [(GuestPullConfig, &[&str]); 5] = [
            (
                kbs_pull_config(&url, Some("kbs:///default/policy/missing"), None),
                &[
                    "agent.image_policy=kbs:///default/policy/missing",
                    "cannot fetch it from the KBS",
                ],
            ),
            (
                kbs_pull_config(&url, Some("kbs:///default/policy/broken"), None),
                &[
                    "agent.image_policy=kbs:///default/policy/broken",
                    "not a usable containers-policy.json",
                ],
            ),
            (
                kbs_pull_config(&url, None, Some("kbs:///default/credential/missing")),
                &[
                    "agent.image_registry_auth=kbs:///default/credential/missing",
                    "cannot fetch",
                ],
            ),
            (
                kbs_pull_config(
                    &url,
                    Some("kbs:///default/policy/images"),
                    Some("kbs:///default/credential/broken"),
                ),
                &[
                    "agent.image_registry_auth=kbs:///default/credential/broken",
                    "\"auth\" is not a string",
                ],
            ),
            (
                GuestPullConfig {
                    kbs_url: None,
                    ..kbs_pull_config(&url, Some("kbs:///default/policy/images"), None)
                },
                &[
                    "agent.image_policy=kbs:///default/policy/images",
                    "no KBS is configured",
                ],
            ),
        ];
        for (config, expected) in cases {
            let svc = PulledImages::new(BakedImages::new("/nonexistent"), config)
                .with_cache_dir(dir.path().join("cache"));
            let dest = dir.path().join("c1/rootfs");
            // The registry is never contacted: the pull fails while building its options.
            let err = svc
                .pull("127.0.0.1:9/app:1", "c1", &dest)
                .await
                .unwrap_err();
            let text = err.to_string();
            for needle in expected {
                assert!(text.contains(needle), "{needle:?} not in {text}");
            }
            assert!(!dest.exists() && !dir.path().join("c1/image-rootfs").exists());
        }
        kbs.stop().await;
    }
}
