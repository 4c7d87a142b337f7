//! Which runtime-class configuration a pod uses, and which annotations it may carry.
//!
//! Selection, first match wins (like Kata, minus the unsafe part):
//! 1. the shim option `ConfigPath` (containerd's `[plugins.cri...runtimes.X.options]
//!    ConfigPath`, or `ctr run --runtime-config-path`): set by the node administrator;
//! 2. the environment variable `COCOON_CONFIG`, then `KATA_CONF_FILE`, of the shim (inherited
//!    from containerd's environment, so also administrator-controlled);
//! 3. `/etc/cocoon/configuration.toml`, then `/opt/cocoon/share/defaults/configuration.toml`.
//!
//! The pod annotation `io.katacontainers.config_path` is **always refused**: it would let
//! whoever creates a pod choose a host file (and with it the QEMU binary, firmware and kernel).
//! Every other `io.katacontainers.config.*` annotation outside the hypervisor allow-list of
//! the class is refused too, so a setting never silently fails to apply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runtime_config::{ANNOTATION_PREFIX, AnnotationOverrides, RuntimeClassConfig};

use crate::CoreError;

/// Environment variable naming the configuration file (Cocoon's name).
pub const ENV_COCOON_CONFIG: &str = "COCOON_CONFIG";
/// Environment variable naming the configuration file (Kata's name).
pub const ENV_KATA_CONF_FILE: &str = "KATA_CONF_FILE";
/// Kata's annotation for the configuration path: always refused.
pub const CONFIG_PATH_ANNOTATION: &str = "io.katacontainers.config_path";
/// Prefix of all Kata configuration annotations.
pub const KATA_CONFIG_PREFIX: &str = "io.katacontainers.config.";
/// Fallback configuration files, in order.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = [
    "/etc/cocoon/configuration.toml",
    "/opt/cocoon/share/defaults/configuration.toml",
];

/// Where the chosen configuration path came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Shim option `ConfigPath`.
    ShimOption,
    /// An environment variable.
    Env(&'static str),
    /// A default location.
    Default,
}

/// The chosen configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChoice {
    /// Absolute path of the TOML file.
    pub path: PathBuf,
    /// Where it came from.
    pub origin: ConfigOrigin,
}

fn absolute(path: &str, what: &str) -> Result<PathBuf, CoreError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Err(CoreError::Config(format!(
            "{what} {path:?} must be an absolute path"
        )))
    }
}

/// Chooses the configuration file. `env` looks up a variable, `exists` tests a default path.
pub fn select_config(
    shim_option: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    annotations: &BTreeMap<String, String>,
    exists: impl Fn(&Path) -> bool,
) -> Result<ConfigChoice, CoreError> {
    if annotations.contains_key(CONFIG_PATH_ANNOTATION) {
        return Err(forbidden_config_path());
    }
    if let Some(p) = shim_option.filter(|p| !p.is_empty()) {
        return Ok(ConfigChoice {
            path: absolute(p, "shim option ConfigPath")?,
            origin: ConfigOrigin::ShimOption,
        });
    }
    for var in [ENV_COCOON_CONFIG, ENV_KATA_CONF_FILE] {
        if let Some(p) = env(var).filter(|p| !p.is_empty()) {
            return Ok(ConfigChoice {
                path: absolute(&p, var)?,
                origin: ConfigOrigin::Env(var),
            });
        }
    }
    DEFAULT_CONFIG_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .map(|path| ConfigChoice {
            path,
            origin: ConfigOrigin::Default,
        })
        .ok_or_else(|| {
            CoreError::Config(format!(
                "no runtime configuration: set the runtime option ConfigPath, or {ENV_COCOON_CONFIG}, or install {}",
                DEFAULT_CONFIG_PATHS[0]
            ))
        })
}

fn forbidden_config_path() -> CoreError {
    CoreError::ForbiddenAnnotation {
        key: CONFIG_PATH_ANNOTATION.to_string(),
        reason: "the configuration file is chosen by the node (runtime option ConfigPath), never by a pod".into(),
    }
}

/// Checks a container's annotations against the policy and, for the container that boots
/// the VM, applies the allowed hypervisor overrides to `cfg`.
pub fn apply_pod_annotations(
    cfg: &mut RuntimeClassConfig,
    annotations: &BTreeMap<String, String>,
) -> Result<AnnotationOverrides, CoreError> {
    for key in annotations.keys() {
        if key == CONFIG_PATH_ANNOTATION {
            return Err(forbidden_config_path());
        }
        if key.starts_with(KATA_CONFIG_PREFIX) && !key.starts_with(ANNOTATION_PREFIX) {
            return Err(CoreError::ForbiddenAnnotation {
                key: key.clone(),
                reason: format!(
                    "only {ANNOTATION_PREFIX}<key> annotations enabled by the runtime class are supported"
                ),
            });
        }
    }
    cfg.apply_annotations(annotations).map_err(|e| match e {
        runtime_config::ConfigError::AnnotationNotAllowed { key } => {
            CoreError::ForbiddenAnnotation {
                key,
                reason: format!(
                    "not in enable_annotations of runtime class {}",
                    cfg.runtime.class
                ),
            }
        }
        other => CoreError::Config(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn shipped(class: &str) -> RuntimeClassConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/configs")
            .join(runtime_config::config_file_for_class(class).unwrap());
        RuntimeClassConfig::load(&path).unwrap()
    }

    #[test]
    fn selection_order() {
        let none = ann(&[]);
        let env = |v: &str| match v {
            ENV_COCOON_CONFIG => Some("/env/cocoon.toml".to_string()),
            ENV_KATA_CONF_FILE => Some("/env/kata.toml".to_string()),
            _ => None,
        };
        let c = select_config(Some("/opt/x.toml"), env, &none, |_| true).unwrap();
        assert_eq!(
            (c.path.to_str(), c.origin),
            (Some("/opt/x.toml"), ConfigOrigin::ShimOption)
        );
        let c = select_config(None, env, &none, |_| true).unwrap();
        assert_eq!(c.origin, ConfigOrigin::Env(ENV_COCOON_CONFIG));
        let kata_only = |v: &str| (v == ENV_KATA_CONF_FILE).then(|| "/k.toml".to_string());
        let c = select_config(Some(""), kata_only, &none, |_| true).unwrap();
        assert_eq!(c.path, PathBuf::from("/k.toml"));
        let c = select_config(None, |_| None, &none, |p| p.starts_with("/opt")).unwrap();
        assert_eq!(c.path, PathBuf::from(DEFAULT_CONFIG_PATHS[1]));
        assert_eq!(c.origin, ConfigOrigin::Default);
        let e = select_config(None, |_| None, &none, |_| false).unwrap_err();
        assert!(e.to_string().contains("ConfigPath"), "{e}");
        let e = select_config(Some("rel.toml"), |_| None, &none, |_| true).unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn config_path_annotation_is_always_refused() {
        let a = ann(&[(CONFIG_PATH_ANNOTATION, "/tmp/evil.toml")]);
        let e = select_config(Some("/opt/x.toml"), |_| None, &a, |_| true).unwrap_err();
        assert!(matches!(e, CoreError::ForbiddenAnnotation { .. }), "{e}");
        let mut cfg = shipped("kata-qemu-coco-dev");
        let e = apply_pod_annotations(&mut cfg, &a).unwrap_err();
        assert!(
            e.to_string().contains("io.katacontainers.config_path"),
            "{e}"
        );
    }

    #[test]
    fn annotation_policy_table() {
        // (class, annotation, value, expected: Ok(vcpus) or Err(substring))
        let cases: &[(&str, &str, &str, Result<u32, &str>)] = &[
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.default_vcpus",
                "2",
                Ok(2),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.path",
                "/tmp/qemu",
                Err("not allowed"),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.kernel",
                "/tmp/k",
                Err("not allowed"),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.firmware",
                "/tmp/fw",
                Err("not allowed"),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.jailer_path",
                "/x",
                Err("not allowed"),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.agent.kernel_modules",
                "x",
                Err("only io.katacontainers.config.hypervisor."),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.runtime.experimental_force_guest_pull",
                "true",
                Err("only"),
            ),
            (
                "kata-qemu-coco-dev",
                "io.katacontainers.config.hypervisor.default_vcpus",
                "lots",
                Err("invalid value"),
            ),
            ("kata-qemu-coco-dev", "example.com/unrelated", "x", Ok(1)),
        ];
        for (class, key, value, want) in cases {
            let mut cfg = shipped(class);
            let got = apply_pod_annotations(&mut cfg, &ann(&[(key, value)]));
            match (got, want) {
                (Ok(_), Ok(vcpus)) => {
                    assert_eq!(cfg.hypervisor.qemu.default_vcpus, *vcpus, "{key}")
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{key}: {e}"),
                (got, want) => panic!("{key}: got {got:?}, want {want:?}"),
            }
        }
    }
}
