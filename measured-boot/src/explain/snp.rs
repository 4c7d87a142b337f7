//! SEV-SNP: which input accounts for the difference between two expected launch
//! digests, and which single-input change reproduces an observed digest that matches
//! no expectation.

use sha2::{Digest, Sha256};

use super::{cmdline_variants, show};
use crate::error::MeasureError;
use crate::initdata::Initdata;
use crate::snp::hashes::SevHashes;
use crate::snp::ovmf::SevFirmware;
use crate::snp::vcpu::VCPU_TYPES;
use crate::snp::{
    LaunchDigest, SnpInputs, SnpParams, VmmType, firmware_context, launch_digest_after_firmware,
    read_file, sha256_file,
};

/// All inputs of one expected measurement: the SNP launch inputs and the initdata
/// (which lands in HOST_DATA, not in the launch digest).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MeasurementInputs {
    /// SNP launch inputs.
    #[serde(flatten)]
    pub snp: SnpInputs,
    /// The initdata TOML file, if any.
    #[serde(default)]
    pub initdata: Option<std::path::PathBuf>,
}

/// One input that differs between two sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputDifference {
    /// The input's name: `firmware`, `kernel`, `initrd`, `cmdline`, `vcpus`,
    /// `vcpu_type`, `guest_features`, `vmm_type` or `initdata`.
    pub input: &'static str,
    /// Its value (or content digest) in A.
    pub a: String,
    /// Its value (or content digest) in B.
    pub b: String,
    /// A's launch digest with only this input changed to B's value (`None` for
    /// initdata, which does not enter the launch digest, or if it cannot be computed).
    pub digest_with_only_this_change: Option<String>,
    /// Whether changing only this input turns A's digest into B's.
    pub alone_explains_digest: bool,
}

/// The result of comparing two input sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffReport {
    /// A's launch digest (hex).
    pub digest_a: String,
    /// B's launch digest (hex).
    pub digest_b: String,
    /// A's HOST_DATA from its initdata (hex), if any.
    pub host_data_a: Option<String>,
    /// B's HOST_DATA from its initdata (hex), if any.
    pub host_data_b: Option<String>,
    /// Every input that differs.
    pub differences: Vec<InputDifference>,
}

/// A single-input change that reproduces an observed digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The input changed.
    pub input: &'static str,
    /// The value that reproduces the observed digest.
    pub value: String,
}

/// The result of explaining an observed digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedReport {
    /// The expected digest (hex).
    pub expected: String,
    /// The observed digest (hex).
    pub observed: String,
    /// Whether they are equal (then nothing needs explaining).
    pub matches_expected: bool,
    /// Single-input changes that give the observed digest.
    pub explanations: Vec<Explanation>,
    /// How many variants were tried.
    pub variants_tried: usize,
}

/// Loaded, hashed inputs: enough to recompute variants without touching files.
struct Loaded {
    firmware: SevFirmware,
    firmware_sha256: String,
    params: SnpParams,
    kernel_sha256: Option<String>,
    initrd_sha256: Option<String>,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn load(i: &SnpInputs) -> Result<Loaded, MeasureError> {
    let (firmware, params) = i.load()?;
    let firmware_sha256 = sha256_hex(&firmware.image);
    let kernel_sha256 = match &i.kernel {
        Some(p) => Some(hex::encode(sha256_file("kernel", p)?.0)),
        None => None,
    };
    let initrd_sha256 = match &i.initrd {
        Some(p) => Some(hex::encode(sha256_file("initrd", p)?.0)),
        None => None,
    };
    Ok(Loaded {
        firmware,
        firmware_sha256,
        params,
        kernel_sha256,
        initrd_sha256,
    })
}

fn host_data(p: &Option<std::path::PathBuf>) -> Result<Option<String>, MeasureError> {
    match p {
        None => Ok(None),
        Some(p) => {
            let d = Initdata::parse(&read_file("initdata", p)?)?;
            Ok(Some(hex::encode(d.snp_host_data())))
        }
    }
}

/// Compares two input sets: which inputs differ, and what each change alone does
/// to the launch digest.
pub fn diff(a: &MeasurementInputs, b: &MeasurementInputs) -> Result<DiffReport, MeasureError> {
    let la = load(&a.snp)?;
    let lb = load(&b.snp)?;
    let da =
        launch_digest_after_firmware(firmware_context(&la.firmware), &la.firmware, &la.params)?;
    let db =
        launch_digest_after_firmware(firmware_context(&lb.firmware), &lb.firmware, &lb.params)?;
    let mut differences = Vec::new();
    let ha = la.params.hashes;
    let hb = lb.params.hashes;
    // Each candidate: (name, a, b, A's firmware?, A's params with B's value).
    let mut push = |input: &'static str,
                    va: String,
                    vb: String,
                    variant: Option<(&SevFirmware, SnpParams)>| {
        if va == vb {
            return;
        }
        let digest = variant
            .and_then(|(fw, p)| launch_digest_after_firmware(firmware_context(fw), fw, &p).ok());
        differences.push(InputDifference {
            input,
            a: va,
            b: vb,
            alone_explains_digest: digest == Some(db),
            digest_with_only_this_change: digest.map(|d| d.to_hex()),
        });
    };
    push(
        "firmware",
        la.firmware_sha256.clone(),
        lb.firmware_sha256.clone(),
        Some((&lb.firmware, la.params)),
    );
    let with_hashes = |h: Option<SevHashes>| SnpParams {
        hashes: h,
        ..la.params
    };
    let mix = |f: &dyn Fn(&mut SevHashes, &SevHashes)| match (ha, hb) {
        (Some(mut x), Some(y)) => {
            f(&mut x, &y);
            Some(x)
        }
        _ => hb,
    };
    push(
        "kernel",
        show(&la.kernel_sha256),
        show(&lb.kernel_sha256),
        Some((&la.firmware, with_hashes(mix(&|x, y| x.kernel = y.kernel)))),
    );
    push(
        "initrd",
        show(&la.initrd_sha256),
        show(&lb.initrd_sha256),
        Some((&la.firmware, with_hashes(mix(&|x, y| x.initrd = y.initrd)))),
    );
    push(
        "cmdline",
        show(&a.snp.cmdline),
        show(&b.snp.cmdline),
        Some((
            &la.firmware,
            with_hashes(mix(&|x, y| x.cmdline = y.cmdline)),
        )),
    );
    push(
        "vcpus",
        a.snp.vcpus.to_string(),
        b.snp.vcpus.to_string(),
        Some((
            &la.firmware,
            SnpParams {
                vcpus: lb.params.vcpus,
                ..la.params
            },
        )),
    );
    push(
        "vcpu_type",
        format!(
            "{:?} (signature {:#x})",
            a.snp.vcpu_type, la.params.vcpu_sig
        ),
        format!(
            "{:?} (signature {:#x})",
            b.snp.vcpu_type, lb.params.vcpu_sig
        ),
        Some((
            &la.firmware,
            SnpParams {
                vcpu_sig: lb.params.vcpu_sig,
                ..la.params
            },
        )),
    );
    push(
        "guest_features",
        format!("{:#x}", a.snp.guest_features),
        format!("{:#x}", b.snp.guest_features),
        Some((
            &la.firmware,
            SnpParams {
                guest_features: lb.params.guest_features,
                ..la.params
            },
        )),
    );
    push(
        "vmm_type",
        format!("{:?}", a.snp.vmm_type),
        format!("{:?}", b.snp.vmm_type),
        Some((
            &la.firmware,
            SnpParams {
                vmm_type: lb.params.vmm_type,
                ..la.params
            },
        )),
    );
    let host_data_a = host_data(&a.initdata)?;
    let host_data_b = host_data(&b.initdata)?;
    push("initdata", show(&host_data_a), show(&host_data_b), None);
    Ok(DiffReport {
        digest_a: da.to_hex(),
        digest_b: db.to_hex(),
        host_data_a,
        host_data_b,
        differences,
    })
}

/// Tries single-input variants of `expected` (vCPU counts 1..=`max_vcpus`, the known
/// vCPU types, command-line variants, dropping the initrd, default guest features,
/// other VMM types) and reports which reproduce `observed`.
pub fn explain_observed(
    expected: &SnpInputs,
    observed: &[u8; 48],
    max_vcpus: u32,
) -> Result<ObservedReport, MeasureError> {
    let l = load(expected)?;
    let ctx = firmware_context(&l.firmware);
    let digest = |p: &SnpParams| launch_digest_after_firmware(ctx.clone(), &l.firmware, p).ok();
    let exp = digest(&l.params).ok_or_else(|| {
        MeasureError::InvalidInput("the expected inputs do not measure".to_string())
    })?;
    let observed = LaunchDigest(*observed);
    let mut explanations = Vec::new();
    let mut tried = 0usize;
    let mut check = |input: &'static str, value: String, p: SnpParams| {
        tried += 1;
        if p != l.params && digest(&p) == Some(observed) {
            explanations.push(Explanation { input, value });
        }
    };
    for n in 1..=max_vcpus.max(1) {
        check(
            "vcpus",
            n.to_string(),
            SnpParams {
                vcpus: n,
                ..l.params
            },
        );
    }
    let mut seen = Vec::new();
    for (name, sig) in VCPU_TYPES {
        if !seen.contains(sig) {
            seen.push(*sig);
            check(
                "vcpu_type",
                (*name).to_string(),
                SnpParams {
                    vcpu_sig: *sig,
                    ..l.params
                },
            );
        }
    }
    for gf in [0x1u64, 0x5, 0x21, 0x25, 0x41] {
        check(
            "guest_features",
            format!("{gf:#x}"),
            SnpParams {
                guest_features: gf,
                ..l.params
            },
        );
    }
    for vmm in [VmmType::Qemu, VmmType::Ec2, VmmType::Gce] {
        check(
            "vmm_type",
            format!("{vmm:?}"),
            SnpParams {
                vmm_type: vmm,
                ..l.params
            },
        );
    }
    if let Some(h) = l.params.hashes {
        for c in cmdline_variants(expected.cmdline.as_deref()) {
            let hashes = SevHashes {
                cmdline: crate::snp::hashes::cmdline_hash(c.as_deref()),
                ..h
            };
            check(
                "cmdline",
                show(&c),
                SnpParams {
                    hashes: Some(hashes),
                    ..l.params
                },
            );
        }
        if expected.initrd.is_some() {
            let hashes = SevHashes {
                initrd: Sha256::digest(b"").into(),
                ..h
            };
            check(
                "initrd",
                "(none)".into(),
                SnpParams {
                    hashes: Some(hashes),
                    ..l.params
                },
            );
        }
        check(
            "kernel",
            "(no direct boot)".into(),
            SnpParams {
                hashes: None,
                ..l.params
            },
        );
    }
    Ok(ObservedReport {
        expected: exp.to_hex(),
        observed: observed.to_hex(),
        matches_expected: exp == observed,
        explanations,
        variants_tried: tried,
    })
}
