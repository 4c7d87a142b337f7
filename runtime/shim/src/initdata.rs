//! The pod's initdata: the annotation `io.katacontainers.config.hypervisor.cc_init_data`
//! (`base64(gzip(toml))`, as Kata and genpolicy write it) becomes the VM's boot inputs.
//!
//! - The TOML is decoded with bounds and validated (version `0.1.0`, algorithm sha256 /
//!   sha384 / sha512) by `measured_boot::initdata`; a bad value fails the pod before any VM
//!   exists, with an error naming the annotation.
//! - TDX and SNP classes get the digest (declared algorithm, exact bytes) as
//!   [`BootOptions::initdata_digest`]; `runtime-qemu` fits it into MRCONFIGID / HOST_DATA.
//!   coco-dev binds nothing (there is no hardware field).
//! - Every class gets the Kata initdata disk image as [`BootOptions::initdata_image`]:
//!   `runtime-qemu` writes it into the sandbox's state directory (removed with the sandbox,
//!   also on a failed boot) and attaches it read-only; the agent reads it at boot.

use measured_boot::initdata::{Initdata, InitdataError};
use runtime_config::{RuntimeClassConfig, Tee};
use runtime_qemu::BootOptions;

/// The pod annotation carrying initdata.
pub const CC_INIT_DATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";

/// The initdata annotation could not be used; the text names the annotation and the reason
/// (the reason is part of the message, not an error source, so it is printed once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {CC_INIT_DATA_ANNOTATION}: {0}")]
pub struct InitdataAnnotationError(pub InitdataError);

impl From<InitdataError> for InitdataAnnotationError {
    fn from(e: InitdataError) -> Self {
        Self(e)
    }
}

/// What the VM is booted with for one initdata document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitdataBoot {
    /// The validated document.
    pub initdata: Initdata,
    /// The digest bound into the TEE's launch (TDX/SNP classes only).
    pub digest: Option<Vec<u8>>,
    /// The disk image the guest agent reads.
    pub image: Vec<u8>,
}

/// Decodes and validates the annotation value for the class `cfg`.
pub fn prepare(
    cfg: &RuntimeClassConfig,
    value: &str,
) -> Result<InitdataBoot, InitdataAnnotationError> {
    let initdata = Initdata::from_annotation(value)?;
    let digest = match cfg.hypervisor.qemu.tee {
        Tee::Tdx | Tee::Snp => Some(initdata.digest()),
        Tee::None => None,
    };
    let image = initdata.to_image()?;
    Ok(InitdataBoot {
        initdata,
        digest,
        image,
    })
}

/// The boot options of sandbox `id` of class `cfg` with the pod's initdata annotation
/// value (`None`: no initdata, no disk, nothing bound).
pub fn boot_options(
    id: &str,
    cfg: &RuntimeClassConfig,
    cc_init_data: Option<&str>,
) -> Result<BootOptions, InitdataAnnotationError> {
    let mut opts = BootOptions {
        id: id.to_owned(),
        ..Default::default()
    };
    if let Some(value) = cc_init_data {
        let boot = prepare(cfg, value)?;
        tracing::info!(
            id,
            algorithm = boot.initdata.algorithm.name(),
            digest = hex::encode(boot.initdata.digest()),
            bound = boot.digest.is_some(),
            keys = ?boot.initdata.data.keys().collect::<Vec<_>>(),
            "pod initdata"
        );
        opts.initdata_digest = boot.digest;
        opts.initdata_image = Some(boot.image);
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use measured_boot::initdata::{decode_image, encode_annotation};
    use sha2::Digest as _;

    const TOML: &str = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"cdh.toml\" = '''\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.2.101:8080\"\n'''\n";

    fn class(file: &str) -> RuntimeClassConfig {
        RuntimeClassConfig::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/configs")
                .join(file),
        )
        .unwrap()
    }

    #[test]
    fn the_annotation_key_is_the_allow_listed_one() {
        let key = format!(
            "{}{}",
            runtime_config::ANNOTATION_PREFIX,
            runtime_config::OverridableKey::CcInitData.short_name()
        );
        assert_eq!(key, CC_INIT_DATA_ANNOTATION);
    }

    #[test]
    fn coco_dev_gets_the_image_and_binds_nothing() {
        let cfg = class("configuration-qemu-coco-dev.toml");
        let ann = encode_annotation(TOML.as_bytes()).unwrap();
        let opts = boot_options("pod", &cfg, Some(&ann)).unwrap();
        assert_eq!(opts.initdata_digest, None);
        let image = opts.initdata_image.unwrap();
        assert_eq!(decode_image(image.as_slice()).unwrap().raw, TOML.as_bytes());
        let none = boot_options("pod", &cfg, None).unwrap();
        assert!(none.initdata_image.is_none() && none.initdata_digest.is_none());
        assert_eq!(none.id, "pod");
    }

    #[test]
    fn tee_classes_bind_the_digest_of_the_exact_bytes() {
        let ann = encode_annotation(TOML.as_bytes()).unwrap();
        let want = sha2::Sha384::digest(TOML.as_bytes()).to_vec();
        for file in ["configuration-qemu-tdx.toml", "configuration-qemu-snp.toml"] {
            let opts = boot_options("pod", &class(file), Some(&ann)).unwrap();
            assert_eq!(opts.initdata_digest.as_deref(), Some(&want[..]), "{file}");
            assert!(opts.initdata_image.is_some());
        }
    }

    #[test]
    fn bad_values_name_the_annotation_and_the_reason() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let cfg = class("configuration-qemu-coco-dev.toml");
        let gz = |t: &str| encode_annotation(t.as_bytes()).unwrap();
        for (value, reason) in [
            ("%%% not base64".to_owned(), "not base64"),
            (b64.encode(TOML), "not gzip"),
            (gz("not = [toml"), "invalid TOML"),
            (
                gz("version = \"0.2.0\"\nalgorithm = \"sha256\"\n"),
                "unsupported version \"0.2.0\"",
            ),
            (
                gz("version = \"0.1.0\"\nalgorithm = \"md5\"\n"),
                "unsupported algorithm \"md5\"",
            ),
        ] {
            let e = boot_options("pod", &cfg, Some(&value))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("annotation io.katacontainers.config.hypervisor.cc_init_data: ")
                    && e.contains(reason),
                "{reason}: {e}"
            );
        }
    }
}
