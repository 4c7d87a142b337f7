//! Host-side front end for development: `cocoon image pull REF --dest DIR ...` with a
//! progress bar per layer. The lead's binary flattens [`PullArgs`] into its subcommand.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::policy::Policy;
use crate::registry::CredentialSource;
use crate::{AuthFileCredentials, ImageError, PrivateKey, ProgressSink, PullOptions, pull_image};

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
    }
}
