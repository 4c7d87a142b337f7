//! The pinned Debian kernel package: parse the pin, download the `.deb` with apt, verify
//! its sha256, and extract it into the cache.

use crate::error::{GuestBuildError, io_err};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The contents of `runtime/guest/guest-kernel.toml`, the one place the kernel is pinned.
pub const PINNED_KERNEL_TOML: &str = include_str!("../guest-kernel.toml");

/// A Debian kernel package pinned by name, exact version and `.deb` sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelPin {
    /// Binary package name, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// Exact Debian version, e.g. `6.1.192-2`.
    pub version: String,
    /// Lowercase hex sha256 of the `.deb`.
    pub sha256: String,
}

impl KernelPin {
    /// The pin compiled into this crate from `guest-kernel.toml`.
    pub fn pinned() -> Result<Self, GuestBuildError> {
        Self::from_toml_str(PINNED_KERNEL_TOML)
    }

    /// Parses and validates a pin from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, GuestBuildError> {
        let pin: Self =
            toml::from_str(text).map_err(|e| GuestBuildError::InvalidPin(e.to_string()))?;
        pin.validate()?;
        Ok(pin)
    }

    /// Reads and validates a pin file.
    pub fn from_file(path: &Path) -> Result<Self, GuestBuildError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::from_toml_str(&text)
            .map_err(|e| GuestBuildError::InvalidPin(format!("{}: {e}", path.display())))
    }

    /// Checks the fields are safe to pass to apt and use in file names.
    pub fn validate(&self) -> Result<(), GuestBuildError> {
        let release = self
            .package
            .strip_prefix("linux-image-")
            .unwrap_or_default();
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.~".contains(c))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        };
        if release.is_empty() || !name_ok(&self.package) {
            return Err(GuestBuildError::InvalidPin(format!(
                "package {:?} is not a linux-image-<release> package name",
                self.package
            )));
        }
        if !name_ok(&self.version.replace(':', "")) {
            return Err(GuestBuildError::InvalidPin(format!(
                "version {:?} is not a Debian version",
                self.version
            )));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(GuestBuildError::InvalidPin(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                self.sha256
            )));
        }
        Ok(())
    }

    /// File name apt gives the downloaded package (`:` in the version becomes `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_amd64.deb",
            self.package,
            self.version.replace(':', "%3a")
        )
    }
}

/// The kernel release (`uname -r`) of a pinned package, e.g. `6.1.0-56-cloud-amd64`.
pub fn kernel_release(pin: &KernelPin) -> String {
    pin.package
        .strip_prefix("linux-image-")
        .unwrap_or(&pin.package)
        .to_owned()
}

/// The cache directory: `$COCOON_CACHE`, or `/var/cache/cocoon`.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("COCOON_CACHE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/cache/cocoon"), PathBuf::from)
}

/// Streams a file through sha256 and returns `(lowercase hex, size)`.
pub fn sha256_file(path: &Path) -> Result<(String, u64), GuestBuildError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Path of the pinned `.deb` in the cache (whether or not it exists yet).
pub fn cached_deb_path(pin: &KernelPin, cache_dir: &Path) -> PathBuf {
    cache_dir.join("debs").join(pin.deb_file_name())
}

/// Verifies a `.deb` against the pin.
pub fn verify_deb(pin: &KernelPin, path: &Path) -> Result<(), GuestBuildError> {
    let (actual, _) = sha256_file(path)?;
    if actual != pin.sha256 {
        return Err(GuestBuildError::DebChecksumMismatch {
            path: path.to_path_buf(),
            expected: pin.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Returns the verified pinned `.deb` from the cache, downloading it with
/// `apt-get download <package>=<version>` when absent or corrupt.
pub fn fetch_deb(pin: &KernelPin, cache_dir: &Path) -> Result<PathBuf, GuestBuildError> {
    pin.validate()?;
    let dest = cached_deb_path(pin, cache_dir);
    if dest.exists() {
        match verify_deb(pin, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) => {
                tracing::warn!(error = %e, "cached kernel package is corrupt; downloading it again");
                std::fs::remove_file(&dest).map_err(io_err(&dest))?;
            }
        }
    }
    let debs = cache_dir.join("debs");
    std::fs::create_dir_all(&debs).map_err(io_err(&debs))?;
    let staging = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&debs)
        .map_err(io_err(&debs))?;
    let spec = format!("{}={}", pin.package, pin.version);
    tracing::info!(package = %spec, "downloading kernel package with apt-get");
    let apt_failed = |detail: String| GuestBuildError::AptDownload {
        package: pin.package.clone(),
        version: pin.version.clone(),
        detail,
    };
    let output = Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(staging.path())
        .output()
        .map_err(|e| apt_failed(format!("cannot run apt-get: {e}")))?;
    if !output.status.success() {
        return Err(apt_failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let downloaded = staging.path().join(pin.deb_file_name());
    if !downloaded.is_file() {
        return Err(apt_failed(format!(
            "apt-get succeeded but {} was not written",
            pin.deb_file_name()
        )));
    }
    verify_deb(pin, &downloaded)?;
    std::fs::rename(&downloaded, &dest).map_err(io_err(&dest))?;
    Ok(dest)
}

/// Paths inside an extracted kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedKernel {
    /// Root of the extracted package.
    pub root: PathBuf,
    /// `boot/vmlinuz-<release>` (the bzImage).
    pub bzimage: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// Extracts a verified `.deb` with `dpkg-deb -x` into `cache_dir/kernels/<name>` (once;
/// later calls reuse it) and returns the paths the build needs.
pub fn extract_kernel(
    pin: &KernelPin,
    deb: &Path,
    cache_dir: &Path,
) -> Result<ExtractedKernel, GuestBuildError> {
    let kernels = cache_dir.join("kernels");
    let root = kernels.join(format!(
        "{}_{}_{}",
        pin.package,
        pin.version.replace(':', "%3a"),
        &pin.sha256[..16]
    ));
    if !root.is_dir() {
        std::fs::create_dir_all(&kernels).map_err(io_err(&kernels))?;
        let staging = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(&kernels)
            .map_err(io_err(&kernels))?;
        let out = staging.path().join("pkg");
        let output = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&out)
            .output()
            .map_err(|e| GuestBuildError::DebExtract {
                path: deb.to_path_buf(),
                detail: format!("cannot run dpkg-deb: {e}"),
            })?;
        if !output.status.success() {
            return Err(GuestBuildError::DebExtract {
                path: deb.to_path_buf(),
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        // A concurrent build may have won the race; its tree is identical.
        if let Err(e) = std::fs::rename(&out, &root)
            && !root.is_dir()
        {
            return Err(io_err(&root)(e));
        }
    }
    let release = kernel_release(pin);
    let kernel = ExtractedKernel {
        bzimage: root.join("boot").join(format!("vmlinuz-{release}")),
        modules_dir: root.join("lib/modules").join(&release),
        root,
    };
    for needed in [&kernel.bzimage, &kernel.modules_dir] {
        if !needed.exists() {
            return Err(GuestBuildError::KernelFileMissing(needed.clone()));
        }
    }
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pinned_file_parses_and_names_the_release() {
        let pin = KernelPin::pinned().unwrap();
        assert!(pin.package.ends_with("-cloud-amd64"), "{}", pin.package);
        assert_eq!(format!("linux-image-{}", kernel_release(&pin)), pin.package);
        assert!(pin.deb_file_name().starts_with(&pin.package));
    }

    #[test]
    fn bad_pins_are_rejected_with_the_field_named() {
        let good =
            "package = \"linux-image-6.1.0-1-cloud-amd64\"\nversion = \"1:6.1-2~bpo\"\nsha256 = \"";
        let sha = "ab".repeat(32);
        let pin = KernelPin::from_toml_str(&format!("{good}{sha}\"")).unwrap();
        assert_eq!(
            pin.deb_file_name(),
            "linux-image-6.1.0-1-cloud-amd64_1%3a6.1-2~bpo_amd64.deb"
        );
        let cases = [
            (format!("{good}{}\"", "AB".repeat(32)), "sha256"),
            (format!("{good}abc\""), "sha256"),
            (
                format!("package = \"linux-headers-x\"\nversion = \"1\"\nsha256 = \"{sha}\""),
                "package",
            ),
            (
                format!("package = \"linux-image-x;rm\"\nversion = \"1\"\nsha256 = \"{sha}\""),
                "package",
            ),
            (
                format!("package = \"linux-image-x\"\nversion = \"1 2\"\nsha256 = \"{sha}\""),
                "version",
            ),
            (format!("{good}{sha}\"\nextra = 1"), "extra"),
            ("package = \"linux-image-x\"".to_owned(), "version"),
        ];
        for (text, field) in cases {
            let err = KernelPin::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }

    #[test]
    fn corrupt_deb_is_reported_with_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.deb");
        std::fs::write(&path, b"not the package").unwrap();
        let pin = KernelPin::pinned().unwrap();
        match verify_deb(&pin, &path).unwrap_err() {
            GuestBuildError::DebChecksumMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, pin.sha256);
                assert_eq!(actual, hex::encode(Sha256::digest(b"not the package")));
            }
            other => panic!("unexpected {other}"),
        }
    }
}
