//! Guest-side confidential data hub: fetches secrets from the KBS after remote attestation
//! (through `kbs-client`) and serves them to the rest of the guest — today the key-encryption
//! keys of encrypted image layers, as a [`guest_image::KeyResolver`].
//!
//! The attester is chosen by the runtime class the agent was started for ([`TeeClass`]):
//! - `coco-dev`: the TEE device if one is present, otherwise the **sample** attester (evidence
//!   without hardware signature; a KBS releases secrets to it only under a coco-dev policy);
//! - `tdx`, `snp`: the matching TEE device must be present; a missing or different device is
//!   an error ([`CdhError::NoTeeDevice`], [`CdhError::TeeMismatch`]), never a fallback.
//!
//! With initdata ([`initdata`]), the KBS comes from its `cdh.toml` / `aa.toml` and the
//! initdata TOML is sent in the attestation's `init-data` ([`CdhConfig::init_data`]), so
//! the KBS can check it against the TEE's binding (HOST_DATA / MRCONFIGID) and report it.
#![forbid(unsafe_code)]

pub mod initdata;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use attestation::Tee;
use attestation::attester::{DetectPaths, detect_tee_at};
use guest_image::{KbsUri, KeyResolveError, KeyResolver};
use kbs_client::{KbsClientBuilder, KbsClientError, KbsKeyResolver, SampleFallback};
use zeroize::Zeroizing;

/// The KBC name CoCo's `aa_kbc_params` uses for the KBS protocol.
pub const CC_KBC: &str = "cc_kbc";

/// What kind of guest the agent runs in, as set by the runtime class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeClass {
    /// No TEE required (`kata-qemu-coco-dev`): sample evidence allowed when no device exists.
    CocoDev,
    /// Intel TDX guest: a TDX device is required.
    Tdx,
    /// AMD SEV-SNP guest: an SNP device is required.
    Snp,
}

impl TeeClass {
    /// The name used on the kernel command line.
    pub fn name(self) -> &'static str {
        match self {
            TeeClass::CocoDev => "coco-dev",
            TeeClass::Tdx => "tdx",
            TeeClass::Snp => "snp",
        }
    }

    /// Whether this class may attest with sample evidence.
    pub fn allows_sample(self) -> bool {
        self == TeeClass::CocoDev
    }

    /// The TEE this class requires, if any.
    pub fn required_tee(self) -> Option<Tee> {
        match self {
            TeeClass::CocoDev => None,
            TeeClass::Tdx => Some(Tee::Tdx),
            TeeClass::Snp => Some(Tee::Snp),
        }
    }
}

impl fmt::Display for TeeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TeeClass {
    type Err = CdhError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "coco-dev" => Ok(TeeClass::CocoDev),
            "tdx" => Ok(TeeClass::Tdx),
            "snp" | "sev-snp" => Ok(TeeClass::Snp),
            other => Err(CdhError::InvalidTeeClass(other.to_owned())),
        }
    }
}

/// Errors of the confidential data hub.
#[derive(Debug, thiserror::Error)]
pub enum CdhError {
    /// The TEE class name is unknown.
    #[error("unknown TEE class {0:?}: expected coco-dev, tdx or snp")]
    InvalidTeeClass(String),
    /// `aa_kbc_params` is malformed or names an unsupported KBC.
    #[error("invalid aa_kbc_params {value:?}: {reason}")]
    InvalidKbcParams {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TEE class requires a device that this guest does not have.
    #[error(
        "runtime class {class} requires a {class} TEE device but none was found (no sample fallback outside coco-dev)"
    )]
    NoTeeDevice {
        /// The configured class.
        class: TeeClass,
    },
    /// The guest has a different TEE than its class requires.
    #[error("runtime class {class} requires {class} but this guest is {found:?}")]
    TeeMismatch {
        /// The configured class.
        class: TeeClass,
        /// The detected TEE.
        found: Tee,
    },
    /// The KBS client failed (handshake, policy refusal, transport, JWE).
    #[error("KBS: {0}")]
    Kbs(#[from] KbsClientError),
    /// A config file from initdata (`cdh.toml`, `aa.toml`) is unusable.
    #[error("initdata {file}: {reason}")]
    InvalidInitdataConfig {
        /// The `[data]` key of the file.
        file: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Returns the KBS URL of CoCo's `aa_kbc_params` value `cc_kbc::<url>`.
pub fn kbs_url_from_aa_kbc_params(value: &str) -> Result<String, CdhError> {
    let bad = |reason: &str| CdhError::InvalidKbcParams {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let (kbc, url) = value
        .split_once("::")
        .ok_or_else(|| bad("expected <kbc>::<url>"))?;
    if kbc != CC_KBC {
        return Err(bad("only the cc_kbc (KBS protocol) KBC is supported"));
    }
    checked_kbs_url(url).map_err(bad)
}

/// `url` without trailing slashes when it is an `http://` or `https://` URL with a host.
fn checked_kbs_url(url: &str) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("the KBS URL must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(['@', ' ', '?', '#']) {
        return Err("the KBS URL has no usable host");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The TEE whose attester `class` uses when detection found `detected`.
pub fn attester_tee(class: TeeClass, detected: Option<Tee>) -> Result<Tee, CdhError> {
    match (class.required_tee(), detected) {
        (None, Some(found)) => Ok(found),
        (None, None) => Ok(Tee::Sample),
        (Some(required), Some(found)) if found == required => Ok(found),
        (Some(_), Some(found)) => Err(CdhError::TeeMismatch { class, found }),
        (Some(_), None) => Err(CdhError::NoTeeDevice { class }),
    }
}

/// How to reach the KBS and attest.
#[derive(Debug, Clone)]
pub struct CdhConfig {
    /// KBS base URL (`http://10.0.2.101:8080`).
    pub kbs_url: String,
    /// Runtime class of this guest.
    pub tee_class: TeeClass,
    /// Where TEE devices are looked for ([`DetectPaths::default`]: the real system).
    pub detect_paths: DetectPaths,
    /// The initdata TOML plaintext, sent as the attestation's `init-data` (`None`: no
    /// initdata, `init-data` is null).
    pub init_data: Option<String>,
    /// An extra trusted root (PEM) for an `https://` KBS (initdata's `kbs_cert`).
    pub kbs_root_cert: Option<String>,
}

impl CdhConfig {
    /// A configuration detecting TEE devices at their real paths, without initdata.
    pub fn new(kbs_url: impl Into<String>, tee_class: TeeClass) -> Self {
        Self {
            kbs_url: kbs_url.into(),
            tee_class,
            detect_paths: DetectPaths::default(),
            init_data: None,
            kbs_root_cert: None,
        }
    }
}

/// The data hub: one attested KBS session (re-attesting when the token expires), shared by
/// every secret request of the guest.
pub struct ConfidentialDataHub {
    resolver: KbsKeyResolver,
    tee: Tee,
    class: TeeClass,
}

impl fmt::Debug for ConfidentialDataHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfidentialDataHub")
            .field("tee", &self.tee)
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl ConfidentialDataHub {
    /// Choose the attester for the class (failing when a TEE class finds no device) and
    /// prepare the KBS client. No network traffic happens until the first request.
    pub fn new(config: &CdhConfig) -> Result<Self, CdhError> {
        let detected = detect_tee_at(&config.detect_paths);
        let tee = attester_tee(config.tee_class, detected)?;
        let fallback = if config.tee_class.allows_sample() {
            SampleFallback::Allow
        } else {
            SampleFallback::Forbid
        };
        if tee == Tee::Sample {
            tracing::warn!(
                class = %config.tee_class,
                "no TEE device: attesting with sample evidence (coco-dev only)"
            );
        }
        let mut builder = KbsClientBuilder::new(&config.kbs_url)
            .tee(tee)
            .sample_fallback(fallback);
        if let Some(toml) = &config.init_data {
            builder = builder.init_data(toml.clone());
        }
        if let Some(pem) = &config.kbs_root_cert {
            builder = builder.root_cert(pem.clone());
        }
        let client = builder.build()?;
        tracing::info!(
            kbs = %config.kbs_url,
            ?tee,
            class = %config.tee_class,
            init_data = config.init_data.is_some(),
            "confidential data hub ready"
        );
        Ok(Self {
            resolver: KbsKeyResolver::new(client),
            tee,
            class: config.tee_class,
        })
    }

    /// The TEE whose evidence this hub presents.
    pub fn tee(&self) -> Tee {
        self.tee
    }

    /// The runtime class it was configured for.
    pub fn tee_class(&self) -> TeeClass {
        self.class
    }

    /// Fetch the resource `kbs:///repository/type/tag` (attesting first when needed).
    pub async fn get_resource(&self, uri: &str) -> Result<Zeroizing<Vec<u8>>, CdhError> {
        Ok(self.resolver.resolve(uri).await?)
    }
}

#[async_trait]
impl KeyResolver for ConfidentialDataHub {
    async fn resolve(&self, kid: &KbsUri) -> Result<Zeroizing<Vec<u8>>, KeyResolveError> {
        let uri = kid.to_string();
        self.get_resource(&uri).await.map_err(|e| {
            tracing::warn!(%uri, error = %e, "layer key not released");
            KeyResolveError(format!("{uri} from the KBS: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aa_kbc_params_parsing() {
        assert_eq!(
            kbs_url_from_aa_kbc_params("cc_kbc::http://10.0.2.101:8080").unwrap(),
            "http://10.0.2.101:8080"
        );
        assert_eq!(
            kbs_url_from_aa_kbc_params("cc_kbc::https://kbs.example/").unwrap(),
            "https://kbs.example"
        );
        for bad in [
            "",
            "cc_kbc",
            "offline_fs_kbc::null",
            "cc_kbc::10.0.2.101:8080",
            "cc_kbc::http://",
            "cc_kbc::http://user@host",
        ] {
            let err = kbs_url_from_aa_kbc_params(bad).unwrap_err();
            assert!(
                matches!(err, CdhError::InvalidKbcParams { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn tee_class_names() {
        for c in [TeeClass::CocoDev, TeeClass::Tdx, TeeClass::Snp] {
            assert_eq!(c.name().parse::<TeeClass>().unwrap(), c);
        }
        assert_eq!("sev-snp".parse::<TeeClass>().unwrap(), TeeClass::Snp);
        assert!(matches!(
            "sample".parse::<TeeClass>(),
            Err(CdhError::InvalidTeeClass(_))
        ));
    }

    #[test]
    fn sample_only_for_coco_dev_and_tee_classes_need_their_device() {
        assert_eq!(attester_tee(TeeClass::CocoDev, None).unwrap(), Tee::Sample);
        assert_eq!(
            attester_tee(TeeClass::CocoDev, Some(Tee::Snp)).unwrap(),
            Tee::Snp
        );
        assert_eq!(
            attester_tee(TeeClass::Tdx, Some(Tee::Tdx)).unwrap(),
            Tee::Tdx
        );
        assert!(matches!(
            attester_tee(TeeClass::Tdx, None),
            Err(CdhError::NoTeeDevice {
                class: TeeClass::Tdx
            })
        ));
        assert!(matches!(
            attester_tee(TeeClass::Snp, None),
            Err(CdhError::NoTeeDevice { .. })
        ));
        assert!(matches!(
            attester_tee(TeeClass::Snp, Some(Tee::Tdx)),
            Err(CdhError::TeeMismatch { .. })
        ));
    }
}
