//! Pod annotations that may override a runtime-class setting.
//!
//! Kata learned the hard way (host paths and QEMU arguments settable from pod annotations)
//! that overrides must be an allow-list. Here the set of keys that *can* ever be overridden
//! is fixed in code ([`OverridableKey`]), and each class enables a subset of it.

use std::collections::BTreeMap;

use crate::{ConfigError, RuntimeClassConfig, schema};

/// Prefix of the Kata annotations that configure the hypervisor.
pub const ANNOTATION_PREFIX: &str = "io.katacontainers.config.hypervisor.";

/// The only settings a pod annotation can ever change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OverridableKey {
    /// vCPU count of the sandbox VM.
    DefaultVcpus,
    /// Memory of the sandbox VM in MiB.
    DefaultMemory,
    /// Extra kernel parameters (measured for TDX/SNP, so attestation sees them).
    KernelParams,
    /// Initdata (base64 of gzip of the initdata TOML); bound into the TEE evidence.
    CcInitData,
}

impl OverridableKey {
    /// Every overridable key.
    pub const ALL: [OverridableKey; 4] = [
        OverridableKey::DefaultVcpus,
        OverridableKey::DefaultMemory,
        OverridableKey::KernelParams,
        OverridableKey::CcInitData,
    ];

    /// Kata's short name, as written in `enable_annotations`.
    pub fn short_name(self) -> &'static str {
        match self {
            OverridableKey::DefaultVcpus => "default_vcpus",
            OverridableKey::DefaultMemory => "default_memory",
            OverridableKey::KernelParams => "kernel_params",
            OverridableKey::CcInitData => "cc_init_data",
        }
    }

    /// Looks a key up by its short name.
    pub fn from_short_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.short_name() == name)
    }
}

/// Values taken from annotations after the allow-list check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnotationOverrides {
    /// Base64 initdata annotation, passed on as is (decoded by measured-boot/policy).
    pub cc_init_data: Option<String>,
}

impl RuntimeClassConfig {
    /// Applies hypervisor annotations in place. Annotations outside the Kata hypervisor prefix
    /// are ignored; one under it that is not enabled for this class is an error (never
    /// silently dropped, so a user sees why a setting did not take).
    pub fn apply_annotations(
        &mut self,
        annotations: &BTreeMap<String, String>,
    ) -> Result<AnnotationOverrides, ConfigError> {
        let mut out = AnnotationOverrides::default();
        for (key, value) in annotations {
            let Some(short) = key.strip_prefix(ANNOTATION_PREFIX) else {
                continue;
            };
            let enabled = OverridableKey::from_short_name(short).filter(|k| {
                self.runtime
                    .enable_annotations
                    .iter()
                    .any(|e| e == k.short_name())
            });
            let Some(k) = enabled else {
                return Err(ConfigError::AnnotationNotAllowed { key: key.clone() });
            };
            let bad = |reason: String| ConfigError::AnnotationValue {
                key: key.clone(),
                reason,
            };
            let qemu = &mut self.hypervisor.qemu;
            match k {
                OverridableKey::DefaultVcpus => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not a number")))?;
                    schema::validate_vcpus(n).map_err(|e| bad(e.to_string()))?;
                    qemu.default_vcpus = n;
                }
                OverridableKey::DefaultMemory => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not a number")))?;
                    schema::validate_memory(n).map_err(|e| bad(e.to_string()))?;
                    qemu.default_memory = n;
                }
                OverridableKey::KernelParams => {
                    schema::validate_kernel_params(value).map_err(|e| bad(e.to_string()))?;
                    if !qemu.kernel_params.is_empty() {
                        qemu.kernel_params.push(' ');
                    }
                    qemu.kernel_params.push_str(value);
                }
                OverridableKey::CcInitData => {
                    if value.is_empty() || value.len() > 1024 * 1024 {
                        return Err(bad("must be 1 byte to 1 MiB of base64".to_string()));
                    }
                    out.cc_init_data = Some(value.clone());
                }
            }
        }
        Ok(out)
    }
}
