//! Runtime-class configuration: strict TOML schema, defaults, validation, annotation allow-list.
//!
//! One TOML file per runtime class (`configuration-qemu-coco-dev.toml`, `-tdx`, `-snp`).
//! Parsing is strict (`deny_unknown_fields`) and [`RuntimeClassConfig::validate`] rejects
//! combinations QEMU would refuse or that would weaken the sandbox. Pod annotations may only
//! override the few keys named in `runtime.enable_annotations`, and only keys from the fixed
//! safe set [`OverridableKey`]: nothing that reaches a host path or a QEMU device can be set
//! by an annotation.
#![forbid(unsafe_code)]

mod annotations;
mod network;
mod schema;

pub use annotations::{ANNOTATION_PREFIX, AnnotationOverrides, OverridableKey};
pub use network::*;
pub use schema::*;

use std::path::{Path, PathBuf};

/// The runtime classes Cocoon serves, by RuntimeClass handler name.
pub const KNOWN_CLASSES: [(&str, &str); 3] = [
    ("kata-qemu-coco-dev", "configuration-qemu-coco-dev.toml"),
    ("kata-qemu-tdx", "configuration-qemu-tdx.toml"),
    ("kata-qemu-snp", "configuration-qemu-snp.toml"),
];

/// Errors from loading, validating or overriding a runtime-class configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read runtime configuration {path}: {source}")]
    Read {
        /// File that was read.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The TOML text is malformed or has unknown / missing keys.
    #[error("malformed runtime configuration {origin}: {message}")]
    Parse {
        /// File name or `<string>`.
        origin: String,
        /// Parser message (includes line and column).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid runtime configuration: {field}: {reason}")]
    Invalid {
        /// Dotted key of the offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime class name is not one Cocoon serves.
    #[error(
        "unknown runtime class {0:?} (known: kata-qemu-coco-dev, kata-qemu-tdx, kata-qemu-snp)"
    )]
    UnknownClass(String),
    /// An annotation tried to override a key that is not enabled for this class.
    #[error("annotation {key:?} is not allowed by this runtime class (enable_annotations)")]
    AnnotationNotAllowed {
        /// Full annotation key.
        key: String,
    },
    /// An enabled annotation carried a value that does not parse or is out of range.
    #[error("annotation {key:?} has an invalid value: {reason}")]
    AnnotationValue {
        /// Full annotation key.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// File name of the configuration for a RuntimeClass handler name.
pub fn config_file_for_class(class: &str) -> Result<&'static str, ConfigError> {
    KNOWN_CLASSES
        .iter()
        .find(|(name, _)| *name == class)
        .map(|(_, file)| *file)
        .ok_or_else(|| ConfigError::UnknownClass(class.to_string()))
}

/// Finds the configuration file of `class` in the first of `dirs` that has it.
pub fn find_class_config(class: &str, dirs: &[PathBuf]) -> Result<PathBuf, ConfigError> {
    let file = config_file_for_class(class)?;
    dirs.iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| ConfigError::Read {
            path: dirs
                .first()
                .map(|d| d.join(file))
                .unwrap_or_else(|| PathBuf::from(file)),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{file} not found in any configuration directory"),
            ),
        })
}

impl RuntimeClassConfig {
    /// Parses and validates a configuration from TOML text.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: RuntimeClassConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests;
