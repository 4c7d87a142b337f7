//! `cocoon measure class`: reference values for a runtime class, computed from exactly the
//! firmware, kernel, initrd, command line and vCPU settings the runtime would boot. The inputs
//! come from `runtime_qemu::sandbox::vm_spec`, the function `Sandbox::boot` uses, so the VM
//! and its reference values cannot disagree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use measured_boot::initdata::Initdata;
use measured_boot::snp::{SnpInputs, VcpuModel};
use runtime_config::{RuntimeClassConfig, Tee};
use runtime_qemu::argv::{AccelKind, AgentDevice, TeeLaunch, VmSpec};
use runtime_qemu::sandbox::{BootOptions, vm_spec};

use crate::classes::ClassArgs;

/// Output format of the reference values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum RefFormat {
    /// The JSON map cocoon-kbs consumes.
    Kbs,
    /// trustee's RVPS message.
    Rvps,
}

/// Arguments of `cocoon measure class`.
#[derive(clap::Args, Debug)]
pub struct ClassMeasureArgs {
    #[command(flatten)]
    class: ClassArgs,
    /// Initdata TOML to bind (HOST_DATA for SNP, MRCONFIGID for TDX).
    #[arg(long)]
    initdata: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "kbs")]
    format: RefFormat,
}

/// The VM a sandbox of `cfg` would run, as the runtime builds it (KVM, vhost-vsock).
pub fn planned_vm(cfg: &RuntimeClassConfig, initdata: Option<&Initdata>) -> VmSpec {
    let opts = BootOptions {
        id: "measure".into(),
        initdata_digest: initdata.map(Initdata::digest),
        ..Default::default()
    };
    vm_spec(
        cfg,
        &opts,
        Path::new("/run/cocoon/measure"),
        AccelKind::Kvm,
        AgentDevice::VhostVsock { guest_cid: 3 },
    )
}

/// SNP measurement inputs of a planned VM.
pub fn snp_inputs(spec: &VmSpec) -> Result<SnpInputs> {
    let TeeLaunch::Snp {
        cpu_model,
        kernel_hashes,
        ..
    } = &spec.tee
    else {
        bail!("not an SNP runtime class");
    };
    let ovmf = spec
        .firmware
        .clone()
        .context("SNP class without firmware")?;
    let mut inputs = SnpInputs::new(ovmf, spec.vcpus, VcpuModel::Named(cpu_model.clone()));
    if *kernel_hashes {
        inputs.kernel = Some(spec.kernel.clone());
        inputs.initrd = Some(spec.initrd.clone());
        inputs.cmdline = Some(spec.cmdline.clone());
    }
    Ok(inputs)
}

pub fn run(a: &ClassMeasureArgs) -> Result<ExitCode> {
    let cfg = a.class.load()?;
    let initdata = match &a.initdata {
        Some(p) => Some(Initdata::parse(
            &std::fs::read(p).with_context(|| p.display().to_string())?,
        )?),
        None => None,
    };
    let spec = planned_vm(&cfg, initdata.as_ref());
    let values = match cfg.hypervisor.qemu.tee {
        Tee::Snp => {
            measured_boot::refvalues::snp_reference_values(&snp_inputs(&spec)?, initdata.as_ref())?
        }
        Tee::Tdx => {
            let fw = spec
                .firmware
                .as_ref()
                .context("TDX class without firmware")?;
            let image = std::fs::read(fw).with_context(|| format!("firmware {}", fw.display()))?;
            let mrtd = measured_boot::tdx::mrtd::Tdvf::parse(image)?.mrtd(Default::default());
            measured_boot::refvalues::tdx_reference_values(Some(&mrtd), None, initdata.as_ref())
        }
        Tee::None => bail!(
            "{} has no TEE: there is no launch measurement to predict",
            cfg.runtime.class
        ),
    };
    let out = match a.format {
        RefFormat::Kbs => values.to_kbs_json(),
        RefFormat::Rvps => values.to_rvps_message(),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_after<'a>(argv: &'a [String], flag: &str) -> &'a str {
        let i = argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        &argv[i + 1]
    }

    /// The argv the runtime would pass to QEMU and the inputs `cocoon measure` hashes name
    /// the same firmware, kernel, initrd, command line, vCPU count and model.
    #[test]
    fn runtime_argv_and_measurement_inputs_agree() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/configs/configuration-qemu-snp.toml");
        let mut cfg = RuntimeClassConfig::load(&path).unwrap();
        cfg.hypervisor.qemu.default_vcpus = 2;
        cfg.hypervisor.qemu.kernel_params = "cgroup_no_v1=all loglevel=3".into();
        let spec = planned_vm(&cfg, None);
        let argv = runtime_qemu::argv::build_argv(&spec).unwrap();
        let inputs = snp_inputs(&spec).unwrap();
        assert_eq!(Path::new(arg_after(&argv, "-bios")), inputs.ovmf);
        assert_eq!(
            Some(PathBuf::from(arg_after(&argv, "-kernel"))),
            inputs.kernel
        );
        assert_eq!(
            Some(PathBuf::from(arg_after(&argv, "-initrd"))),
            inputs.initrd
        );
        assert_eq!(
            Some(arg_after(&argv, "-append").to_string()),
            inputs.cmdline
        );
        assert_eq!(arg_after(&argv, "-smp"), inputs.vcpus.to_string());
        assert_eq!(
            Some(VcpuModel::Named(arg_after(&argv, "-cpu").to_string())),
            inputs.vcpu_type
        );
        assert!(arg_after(&argv, "-append").contains("loglevel=3"));
    }

    /// Same digest whether computed from the class or from sev-snp-measure-style flags read
    /// off the runtime's argv (firmware: the AMD SEV fixture with a kernel-hashes section).
    #[test]
    fn class_digest_equals_digest_from_argv_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: measured_boot::cli::SnpArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let fw = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../measured-boot/tests/data/ovmf_AmdSev_suffix.bin");
        let kernel = dir.path().join("vmlinuz");
        let initrd = dir.path().join("initrd.img");
        std::fs::write(&kernel, vec![0x4b; 70_000]).unwrap();
        std::fs::write(&initrd, vec![0x1d; 33_000]).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/configs/configuration-qemu-snp.toml");
        let mut cfg = RuntimeClassConfig::load(&path).unwrap();
        cfg.hypervisor.qemu.firmware = Some(fw);
        cfg.hypervisor.qemu.kernel = kernel;
        cfg.hypervisor.qemu.initrd = initrd;
        let spec = planned_vm(&cfg, None);
        let ours = snp_inputs(&spec).unwrap().digest().unwrap().to_hex();
        let argv = runtime_qemu::argv::build_argv(&spec).unwrap();
        let flags = P::parse_from([
            "x",
            "--vcpus",
            arg_after(&argv, "-smp"),
            "--vcpu-type",
            arg_after(&argv, "-cpu"),
            "--ovmf",
            arg_after(&argv, "-bios"),
            "--kernel",
            arg_after(&argv, "-kernel"),
            "--initrd",
            arg_after(&argv, "-initrd"),
            "--append",
            arg_after(&argv, "-append"),
        ]);
        let theirs = measured_boot::cli::run_snp(&flags.a).unwrap();
        assert_eq!(theirs.trim(), ours);
    }
}
