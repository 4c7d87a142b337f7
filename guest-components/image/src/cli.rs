//! Host-side front end for development: `cocoon image pull REF --dest DIR ...` with a
//! progress bar per layer. The lead's binary flattens [`PullArgs`] into its subcommand.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::policy::Policy;
use crate::registry::CredentialSource;
use crate::{
    AuthFileCredentials, ImageError, PrivateKey, ProgressSink, PullOptions, UnpackLimits,
    pull_image,
};

/// Arguments of `image pull`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PullArgs {
    /// Image reference, e.g. `127.0.0.1:5000/demo/busybox:latest` or `repo@sha256:...`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Directory to create with the unpacked root filesystem (must not exist or be empty).
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// PEM private key (RSA or EC) for JWE-encrypted layers; repeatable.
    #[arg(long = "decryption-key", value_name = "FILE")]
    pub decryption_keys: Vec<PathBuf>,
    /// Registry `host[:port]` to reach over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Registry credentials in the containers/docker `auth.json` format (as skopeo's and
    /// podman's `--authfile`); registries without an entry are accessed anonymously.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// containers-policy.json to enforce.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Blob cache directory (default: a temporary directory next to DIR).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Layers downloaded at the same time.
    #[arg(long, default_value_t = 3)]
    pub max_concurrent_downloads: usize,
    /// Refuse the image when its layers unpack to more than SIZE bytes in all (decompression
    /// bomb protection; also caps any single file). A number of bytes, or with a K, M, G or T
    /// suffix (powers of 1024; `KiB`... accepted too). Default: 8GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_unpacked_bytes: Option<u64>,
    /// Refuse the image when its layers hold more than N tar entries in all. Default: 2000000.
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
}

impl PullArgs {
    /// The unpack limits these arguments ask for; the library defaults for what is not given.
    pub fn unpack_limits(&self) -> UnpackLimits {
        let defaults = UnpackLimits::default();
        let max_total_bytes = self.max_unpacked_bytes.unwrap_or(defaults.max_total_bytes);
        UnpackLimits {
            max_total_bytes,
            max_entries: self.max_entries.unwrap_or(defaults.max_entries),
            max_file_bytes: defaults.max_file_bytes.min(max_total_bytes),
        }
    }
}

/// Parse a size: bytes, or a number with a `K`, `M`, `G` or `T` suffix (optionally followed
/// by `iB` or `B`, any case), all powers of 1024.
fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid size {text:?}: expected bytes or a number with K, M, G or T"
            ));
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: no number before the unit"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Draws one bar per layer.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Bars {
    fn with_bar(&self, index: usize, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(&index)
        {
            f(bar);
        }
    }
}

impl ProgressSink for Bars {
    fn layer_started(&self, index: usize, digest: &str, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        let style =
            ProgressStyle::with_template("{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let short = digest.strip_prefix("sha256:").unwrap_or(digest);
        bar.set_prefix(format!("layer {index} {}", &short[..short.len().min(12)]));
        bar.set_message("downloading");
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(index, bar);
        }
    }

    fn layer_progress(&self, index: usize, downloaded: u64) {
        self.with_bar(index, |b| b.set_position(downloaded));
    }

    fn layer_downloaded(&self, index: usize, cached: bool) {
        self.with_bar(index, |b| {
            if let Some(len) = b.length() {
                b.set_position(len);
            }
            b.set_message(if cached {
                "cached, unpacking"
            } else {
                "verified, unpacking"
            });
        });
    }

    fn layer_unpacked(&self, index: usize) {
        self.with_bar(index, |b| b.finish_with_message("unpacked"));
    }
}

/// Run `image pull` with progress bars, printing the manifest digest and a summary.
pub async fn run_pull(args: &PullArgs) -> Result<(), ImageError> {
    let mut keys = Vec::new();
    for path in &args.decryption_keys {
        keys.push(PrivateKey::from_pem_file(path)?);
    }
    let policy = match &args.policy {
        Some(p) => Some(Arc::new(Policy::from_file(p)?)),
        None => None,
    };
    let credentials = match &args.authfile {
        Some(path) => {
            Some(Arc::new(AuthFileCredentials::from_file(path)?) as Arc<dyn CredentialSource>)
        }
        None => None,
    };
    let bars = Arc::new(Bars {
        multi: MultiProgress::new(),
        bars: Mutex::new(HashMap::new()),
    });
    let options = PullOptions {
        insecure_registries: args.insecure_registries.clone(),
        decryption_keys: keys,
        cache_dir: args.cache_dir.clone(),
        max_concurrent_downloads: args.max_concurrent_downloads,
        progress: Some(bars.clone()),
        policy,
        credentials,
        limits: args.unpack_limits(),
        ..PullOptions::default()
    };
    let pulled = pull_image(&args.reference, &args.dest, &options).await?;
    let s = &pulled.summary;
    println!("{}", pulled.manifest_digest);
    println!(
        "unpacked {} layers into {}: {} entries, {} files, {} dirs, {} symlinks, {} hard links, {} whiteouts, {} device nodes skipped",
        s.layers,
        args.dest.display(),
        s.entries,
        s.files,
        s.directories,
        s.symlinks,
        s.hardlinks,
        s.whiteouts,
        s.skipped_special
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        pull: PullArgs,
    }

    #[test]
    fn parses_repeatable_flags() {
        let cmd = Cmd::parse_from([
            "pull",
            "127.0.0.1:5000/a/b:c",
            "--dest",
            "/tmp/r",
            "--decryption-key",
            "k1.pem",
            "--decryption-key",
            "k2.pem",
            "--insecure-registry",
            "127.0.0.1:5000",
            "--policy",
            "p.json",
            "--authfile",
            "auth.json",
        ]);
        assert_eq!(cmd.pull.reference, "127.0.0.1:5000/a/b:c");
        assert_eq!(cmd.pull.decryption_keys.len(), 2);
        assert_eq!(cmd.pull.insecure_registries, vec!["127.0.0.1:5000"]);
        assert_eq!(cmd.pull.policy, Some(PathBuf::from("p.json")));
        assert_eq!(cmd.pull.authfile, Some(PathBuf::from("auth.json")));
        assert_eq!(cmd.pull.max_concurrent_downloads, 3);
        assert_eq!(cmd.pull.unpack_limits(), UnpackLimits::default());
    }

    #[test]
    fn unpack_limit_flags_set_the_limits() {
        let cmd = Cmd::parse_from([
            "pull",
            "r/a:b",
            "--dest",
            "/tmp/r",
            "--max-unpacked-bytes",
            "512MiB",
            "--max-entries",
            "1000",
        ]);
        assert_eq!(cmd.pull.max_unpacked_bytes, Some(512 << 20));
        let limits = cmd.pull.unpack_limits();
        assert_eq!(limits.max_total_bytes, 512 << 20);
        // No file can be larger than the whole image.
        assert_eq!(limits.max_file_bytes, 512 << 20);
        assert_eq!(limits.max_entries, 1000);
        for (text, bytes) in [
            ("4096", 4096),
            ("2K", 2048),
            ("3KiB", 3072),
            ("10G", 10 << 30),
            ("1gib", 1 << 30),
            ("2T", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "G", "12XB", "-1", "1.5G", "99999999999T"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(bad) || bad.is_empty(), "{bad}: {err}");
        }
        let err = Cmd::try_parse_from([
            "pull",
            "r/a:b",
            "--dest",
            "/d",
            "--max-unpacked-bytes",
            "lots",
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("lots"), "{err}");
    }
}
