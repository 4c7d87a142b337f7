//! Initdata at boot, as Kata's agent does it: before any RPC is served, the block devices
//! `/dev/vd*` and `/dev/sd*` are searched for one starting with the `"initdata"` magic (the
//! image the runtime attaches read-only). Its TOML is read (bounded), decompressed and
//! validated by `measured_boot::initdata`, then written to [`INITDATA_DIR`]:
//! `initdata.toml` (the exact bytes), and `aa.toml`, `cdh.toml`, `policy.rego` when the
//! `[data]` table has them.
//!
//! - No device: no initdata (the normal case without the annotation).
//! - A device with the magic that does not hold valid initdata, or whose `cdh.toml` /
//!   `aa.toml` cannot be used: an error; the agent does not start (Kata's agent fails its
//!   init the same way), so no pod runs without the configuration it was given.
//! - The KBS named by `cdh.toml` `[kbc] url` (else `aa.toml` `[token_configs.kbs] url`)
//!   replaces `agent.aa_kbc_params`, and the TOML is sent as the attestation's `init-data`
//!   ([`Loaded::apply`]).
//! - `policy.rego` is stored and logged; it is not enforced yet.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use confidential_data_hub::CdhError;
use confidential_data_hub::initdata::{AA_CONFIG_KEY, CDH_CONFIG_KEY, InitdataKbs};
use measured_boot::initdata::{IMAGE_MAGIC, Initdata, InitdataError, decode_image};

use crate::pulled_images::GuestPullConfig;

/// Where the initdata files are written (Kata's and CoCo's path).
pub const INITDATA_DIR: &str = "/run/confidential-containers/initdata";
/// Device-name prefixes searched in `/dev` (virtio-blk, virtio-scsi).
pub const DEVICE_PREFIXES: [&str; 2] = ["vd", "sd"];
/// The `[data]` key of the agent policy (stored, not enforced yet).
pub const POLICY_KEY: &str = "policy.rego";

/// Why the initdata device could not be used. Fatal at boot. The causes are part of the
/// message (not error sources), so `{:#}` prints them once.
#[derive(Debug, thiserror::Error)]
pub enum InitdataLoadError {
    /// Listing the device directory failed.
    #[error("initdata: cannot list {path}: {error}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The device with the magic does not hold valid initdata.
    #[error("initdata device {path}: {error}")]
    Device {
        /// The device.
        path: PathBuf,
        /// What is wrong with its content.
        error: InitdataError,
    },
    /// Its `cdh.toml` / `aa.toml` is unusable.
    #[error("initdata device {path}: {error}")]
    Config {
        /// The device.
        path: PathBuf,
        /// What is wrong.
        error: CdhError,
    },
    /// Writing the files failed.
    #[error("initdata: cannot write {path}: {error}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
}

/// Initdata found at boot.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The device it was read from.
    pub device: PathBuf,
    /// The validated document.
    pub initdata: Initdata,
    /// The KBS its config files name.
    pub kbs: Option<InitdataKbs>,
}

/// The first device in `dev` (sorted by name) whose name starts with one of
/// [`DEVICE_PREFIXES`] and whose first bytes are [`IMAGE_MAGIC`]. With `block_only`,
/// only block devices are opened (always, in the guest; tests use plain files).
fn find_device(dev: &Path, block_only: bool) -> Result<Option<PathBuf>, InitdataLoadError> {
    let entries = std::fs::read_dir(dev).map_err(|error| InitdataLoadError::List {
        path: dev.to_path_buf(),
        error,
    })?;
    let mut candidates: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            DEVICE_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .filter(|e| {
            e.file_type()
                .is_ok_and(|t| t.is_block_device() || (!block_only && t.is_file()))
        })
        .map(|e| e.path())
        .collect();
    candidates.sort();
    for path in candidates {
        let mut magic = [0u8; IMAGE_MAGIC.len()];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut magic));
        match read {
            Ok(()) if magic == IMAGE_MAGIC => return Ok(Some(path)),
            Ok(()) => {}
            // A device too short for the magic, or one that cannot be read, is not it.
            Err(e) => {
                tracing::debug!(device = %path.display(), error = %e, "not an initdata device")
            }
        }
    }
    Ok(None)
}

/// Reads and validates initdata from the first matching device in `dev`; `None` without one.
fn read_from(dev: &Path, block_only: bool) -> Result<Option<Loaded>, InitdataLoadError> {
    let Some(device) = find_device(dev, block_only)? else {
        return Ok(None);
    };
    let initdata = File::open(&device)
        .map_err(|e| InitdataError::Io(e.to_string()))
        .and_then(decode_image)
        .map_err(|error| InitdataLoadError::Device {
            path: device.clone(),
            error,
        })?;
    let kbs = confidential_data_hub::initdata::kbs_from_initdata(
        initdata.get(CDH_CONFIG_KEY),
        initdata.get(AA_CONFIG_KEY),
    )
    .map_err(|error| InitdataLoadError::Config {
        path: device.clone(),
        error,
    })?;
    Ok(Some(Loaded {
        device,
        initdata,
        kbs,
    }))
}

/// Writes `initdata.toml` and the known `[data]` files into `dir`.
fn install(initdata: &Initdata, dir: &Path) -> Result<(), InitdataLoadError> {
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|error| InitdataLoadError::Write { path, error })
    };
    std::fs::create_dir_all(dir).map_err(|error| InitdataLoadError::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    write(dir.join("initdata.toml"), &initdata.raw)?;
    for key in [AA_CONFIG_KEY, CDH_CONFIG_KEY, POLICY_KEY] {
        if let Some(text) = initdata.get(key) {
            write(dir.join(key), text.as_bytes())?;
        }
    }
    Ok(())
}

/// Finds initdata among the block devices of `dev` and installs it into `dir`.
pub fn load(dev: &Path, dir: &Path) -> Result<Option<Loaded>, InitdataLoadError> {
    load_with(dev, dir, true)
}

fn load_with(
    dev: &Path,
    dir: &Path,
    block_only: bool,
) -> Result<Option<Loaded>, InitdataLoadError> {
    let Some(loaded) = read_from(dev, block_only)? else {
        tracing::info!("no initdata device");
        return Ok(None);
    };
    install(&loaded.initdata, dir)?;
    tracing::info!(
        device = %loaded.device.display(),
        algorithm = loaded.initdata.algorithm.name(),
        digest = hex::encode(loaded.initdata.digest()),
        keys = ?loaded.initdata.data.keys().collect::<Vec<_>>(),
        dir = %dir.display(),
        "initdata installed"
    );
    if loaded.initdata.get(POLICY_KEY).is_some() {
        tracing::warn!(
            "initdata carries policy.rego: stored in {}, not enforced (no agent policy engine yet)",
            dir.display()
        );
    }
    Ok(Some(loaded))
}

impl Loaded {
    /// Applies the initdata to the guest-pull settings: its KBS replaces the kernel
    /// command line's (`agent.aa_kbc_params`), and the TOML goes into the attestation.
    pub fn apply(&self, pull: &mut GuestPullConfig) {
        if let Some(kbs) = &self.kbs {
            if let Some(cmdline) = pull.kbs_url.as_ref().filter(|u| **u != kbs.url) {
                tracing::warn!(
                    initdata = kbs.url,
                    cmdline = %cmdline,
                    "initdata names another KBS than agent.aa_kbc_params; using initdata's"
                );
            }
            tracing::info!(kbs = kbs.url, source = kbs.source, "KBS from initdata");
            pull.kbs_url = Some(kbs.url.clone());
            pull.kbs_root_cert = kbs.cert.clone();
        }
        pull.init_data = Some(self.initdata.text().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use measured_boot::initdata::encode_image;

    const TOML: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"aa.toml\" = '''\n[token_configs.kbs]\nurl = \"http://aa.example:8080\"\n'''\n\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.2.101:8080\"\n'''\n\"policy.rego\" = '''\npackage agent_policy\ndefault AllowRequestsFailingPolicy := true\n'''\n";

    fn image(toml: &str) -> Vec<u8> {
        Initdata::from_toml(toml.as_bytes())
            .unwrap()
            .to_image()
            .unwrap()
    }

    /// A fake /dev with `vda` (not initdata), `vdb` = `img`, and noise that is never read.
    fn dev_with(img: &[u8]) -> tempfile::TempDir {
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("vda"), [0u8; 1024]).unwrap();
        std::fs::write(dev.path().join("vdb"), img).unwrap();
        std::fs::write(dev.path().join("ttyS0"), image(TOML)).unwrap();
        std::fs::write(dev.path().join("sdz"), b"init").unwrap();
        dev
    }

    #[test]
    fn finds_the_device_and_writes_the_files() {
        let dev = dev_with(&image(TOML));
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("initdata");
        let loaded = load_with(dev.path(), &dir, false).unwrap().unwrap();
        assert_eq!(loaded.device, dev.path().join("vdb"));
        assert_eq!(
            std::fs::read(dir.join("initdata.toml")).unwrap(),
            TOML.as_bytes()
        );
        assert!(
            std::fs::read_to_string(dir.join("cdh.toml"))
                .unwrap()
                .contains("10.0.2.101")
        );
        assert!(
            std::fs::read_to_string(dir.join("aa.toml"))
                .unwrap()
                .contains("aa.example")
        );
        assert!(
            std::fs::read_to_string(dir.join("policy.rego"))
                .unwrap()
                .contains("agent_policy")
        );
        // cdh.toml wins over aa.toml and over the kernel command line.
        let mut pull = GuestPullConfig {
            kbs_url: Some("http://cmdline:1".into()),
            ..GuestPullConfig::default()
        };
        loaded.apply(&mut pull);
        assert_eq!(pull.kbs_url.as_deref(), Some("http://10.0.2.101:8080"));
        assert_eq!(pull.init_data.as_deref(), Some(TOML));
        // Only regular files in the test: the guest opens block devices only.
        assert!(load(dev.path(), &dir).unwrap().is_none());
    }

    #[test]
    fn no_device_is_no_initdata_and_writes_nothing() {
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("vda"), [0u8; 512]).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("initdata");
        assert!(load_with(dev.path(), &dir, false).unwrap().is_none());
        assert!(!dir.exists());
        // Without a KBS in initdata the command line's stays; the TOML is still sent.
        let loaded = Loaded {
            device: "/dev/vda".into(),
            initdata: Initdata::from_toml(b"version = \"0.1.0\"\nalgorithm = \"sha512\"\n")
                .unwrap(),
            kbs: None,
        };
        let mut pull = GuestPullConfig {
            kbs_url: Some("http://cmdline:1".into()),
            ..GuestPullConfig::default()
        };
        loaded.apply(&mut pull);
        assert_eq!(pull.kbs_url.as_deref(), Some("http://cmdline:1"));
        assert!(pull.init_data.is_some());
    }

    #[test]
    fn a_malformed_device_is_an_error_naming_it_and_nothing_is_written() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("initdata");
        let gz = |t: &str| gzip(t.as_bytes());
        let truncated = image(TOML)[..20].to_vec();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (truncated, "truncated"),
            (encode_image(b"not gzip at all"), "not gzip"),
            (
                encode_image(&gz("version = \"0.2.0\"\nalgorithm = \"sha256\"\n")),
                "unsupported version \"0.2.0\"",
            ),
            (
                encode_image(&gz("version = \"0.1.0\"\nalgorithm = \"sm3\"\n")),
                "unsupported algorithm \"sm3\"",
            ),
            (
                encode_image(&gz(
                    "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"cdh.toml\" = \"[kbc]\\nname = \\\"offline_fs_kbc\\\"\\n\"\n",
                )),
                "initdata cdh.toml: kbc.name",
            ),
        ];
        for (img, want) in cases {
            let dev = dev_with(&img);
            let e = load_with(dev.path(), &dir, false).unwrap_err();
            // As main prints it: the reason once.
            let chain = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(chain.matches(want).count(), 1, "{chain}");
            let e = chain;
            let prefix = format!("initdata device {}: ", dev.path().join("vdb").display());
            assert!(e.starts_with(&prefix) && e.contains(want), "{want}: {e}");
            assert!(!dir.exists(), "{want}: files written for a refused device");
        }
    }

    /// gzip of `bytes` (the annotation is base64 of exactly the stream an image carries).
    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let ann = measured_boot::initdata::encode_annotation(bytes).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(ann)
            .unwrap()
    }
}
