//! `cocoon measure snp|tdx --config <class config>` (and the older `cocoon measure class`):
//! reference values for a runtime class, computed from exactly the firmware, kernel, initrd,
//! command line and vCPU settings the runtime would boot. The inputs come from
//! `runtime_qemu::sandbox::vm_spec`, the function `Sandbox::boot` uses, so the VM and its
//! reference values cannot disagree. Without `--config`, `measure snp|tdx` take the
//! `sev-snp-measure`-style flags of `measured_boot::cli`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use measured_boot::cli::{RefValuesFormat, SnpArgs, TdxArgs};
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

/// `cocoon measure snp`: `sev-snp-measure` flags, or `--config` to measure a runtime class.
#[derive(clap::Args, Debug)]
pub struct SnpMeasureArgs {
    /// Runtime-class configuration: measure the firmware, kernel, initrd, command line,
    /// vCPU count and model the runtime would boot, and print reference values
    /// (`--reference-values kbs` unless another format is asked for).
    #[arg(long, value_name = "PATH", conflicts_with_all = [
        "ovmf", "kernel", "initrd", "append", "vcpus", "vcpu_type", "vcpu_sig", "vcpu_family",
    ])]
    config: Option<PathBuf>,
    /// With --config: use the guest image built in this directory.
    #[arg(long, value_name = "DIR", requires = "config")]
    guest_dir: Option<PathBuf>,
    #[command(flatten)]
    flags: SnpArgs,
}

/// `cocoon measure tdx`: firmware / event-log / direct-boot flags, or `--config`.
#[derive(clap::Args, Debug)]
pub struct TdxMeasureArgs {
    /// Runtime-class configuration: MRTD of its firmware and the RTMR1/RTMR2 of its
    /// kernel, initrd and command line, as reference values (`kbs` unless asked otherwise).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["firmware", "kernel", "initrd", "append"])]
    config: Option<PathBuf>,
    /// With --config: use the guest image built in this directory.
    #[arg(long, value_name = "DIR", requires = "config")]
    guest_dir: Option<PathBuf>,
    #[command(flatten)]
    flags: TdxArgs,
}

fn load_class(config: &Path, guest_dir: Option<&PathBuf>) -> Result<RuntimeClassConfig> {
    ClassArgs {
        class: String::new(),
        config: Some(config.to_path_buf()),
        guest_dir: guest_dir.cloned(),
        vsock_backend: None,
    }
    .load()
}

fn load_initdata(p: Option<&PathBuf>) -> Result<Option<Initdata>> {
    p.map(|p| {
        Ok(Initdata::parse(
            &std::fs::read(p).with_context(|| p.display().to_string())?,
        )?)
    })
    .transpose()
}

/// The `sev-snp-measure` flags equivalent to what the runtime boots for `cfg`.
pub fn snp_flags_for_class(cfg: &RuntimeClassConfig, base: &SnpArgs) -> Result<SnpArgs> {
    if cfg.hypervisor.qemu.tee != Tee::Snp {
        bail!("{} is not an SEV-SNP runtime class", cfg.runtime.class);
    }
    let initdata = load_initdata(base.initdata.as_ref())?;
    let inputs = snp_inputs(&planned_vm(cfg, initdata.as_ref()))?;
    let mut a = base.clone();
    a.ovmf = Some(inputs.ovmf);
    a.vcpus = Some(inputs.vcpus);
    a.vcpu_type = match inputs.vcpu_type {
        Some(VcpuModel::Named(n)) => Some(n),
        other => bail!("unexpected vCPU model {other:?} in the planned VM"),
    };
    a.vcpu_sig = None;
    a.vcpu_family = None;
    a.kernel = inputs.kernel;
    a.initrd = inputs.initrd;
    a.append = inputs.cmdline;
    a.guest_features = inputs.guest_features;
    Ok(a)
}

/// The `cocoon measure tdx` flags equivalent to what the runtime boots for `cfg`.
pub fn tdx_flags_for_class(cfg: &RuntimeClassConfig, base: &TdxArgs) -> Result<TdxArgs> {
    if cfg.hypervisor.qemu.tee != Tee::Tdx {
        bail!("{} is not a TDX runtime class", cfg.runtime.class);
    }
    let initdata = load_initdata(base.initdata.as_ref())?;
    let spec = planned_vm(cfg, initdata.as_ref());
    let mut a = base.clone();
    a.firmware = Some(spec.firmware.context("TDX class without firmware")?);
    a.kernel = Some(spec.kernel);
    a.initrd = Some(spec.initrd);
    a.append = Some(spec.cmdline);
    Ok(a)
}

/// Runs `cocoon measure snp`.
pub fn run_snp(a: &SnpMeasureArgs) -> Result<String> {
    let flags = match &a.config {
        None => a.flags.clone(),
        Some(c) => {
            let mut f = snp_flags_for_class(&load_class(c, a.guest_dir.as_ref())?, &a.flags)?;
            f.reference_values = f.reference_values.or(Some(RefValuesFormat::Kbs));
            f
        }
    };
    Ok(measured_boot::cli::run_snp(&flags)?)
}

/// Runs `cocoon measure tdx`.
pub fn run_tdx(a: &TdxMeasureArgs) -> Result<String> {
    let flags = match &a.config {
        None => a.flags.clone(),
        Some(c) => {
            let mut f = tdx_flags_for_class(&load_class(c, a.guest_dir.as_ref())?, &a.flags)?;
            f.reference_values = f.reference_values.or(Some(RefValuesFormat::Kbs));
            f
        }
    };
    Ok(measured_boot::cli::run_tdx(&flags)?)
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

/// Wraps an argument struct so it can be parsed on its own.
#[derive(clap::Parser)]
struct Standalone<T: clap::Args> {
    #[command(flatten)]
    inner: T,
}

/// The flags with every default, as if given no arguments.
fn default_flags<T: clap::Args>() -> Result<T> {
    use clap::Parser as _;
    Ok(Standalone::<T>::try_parse_from(["cocoon"])?.inner)
}

/// Runs `cocoon measure class`.
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
            // The same path as `cocoon measure tdx --config`: MRTD plus predicted RTMR1/2.
            let mut base = default_flags::<TdxArgs>()?;
            base.initdata = a.initdata.clone();
            base.reference_values = Some(match a.format {
                RefFormat::Kbs => RefValuesFormat::Kbs,
                RefFormat::Rvps => RefValuesFormat::Rvps,
            });
            let text = measured_boot::cli::run_tdx(&tdx_flags_for_class(&cfg, &base)?)?;
            println!("{text}");
            return Ok(ExitCode::SUCCESS);
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

    fn parse<T: clap::Args>(argv: &[&str]) -> Result<T, clap::Error> {
        use clap::Parser as _;
        Standalone::<T>::try_parse_from(std::iter::once("cocoon").chain(argv.iter().copied()))
            .map(|s| s.inner)
    }

    /// A class config whose firmware, kernel and initrd are real files in `dir`.
    fn class_file(dir: &Path, shipped: &str, fw: &Path, kernel: &[u8]) -> PathBuf {
        let k = dir.join("vmlinuz");
        let r = dir.join("initrd.img");
        std::fs::write(&k, kernel).unwrap();
        std::fs::write(&r, vec![0x1d; 33_000]).unwrap();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../config/configs")
                .join(shipped),
        )
        .unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let l = if line.starts_with("kernel = ") {
                format!("kernel = {:?}", k.display().to_string())
            } else if line.starts_with("initrd = ") {
                format!("initrd = {:?}", r.display().to_string())
            } else if line.starts_with("firmware = ") {
                format!("firmware = {:?}", fw.display().to_string())
            } else if line.starts_with("default_vcpus = ") {
                "default_vcpus = 3".to_string()
            } else {
                line.to_string()
            };
            out.push_str(&l);
            out.push('\n');
        }
        let p = dir.join(shipped);
        std::fs::write(&p, out).unwrap();
        p
    }

    /// `cocoon measure snp --config` prints reference values holding the digest that the
    /// sev-snp-measure-style flags read off the runtime's own argv give.
    #[test]
    fn measure_snp_config_matches_flags_from_argv() {
        let dir = tempfile::tempdir().unwrap();
        let fw = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../measured-boot/tests/data/ovmf_AmdSev_suffix.bin");
        let cfg_path = class_file(
            dir.path(),
            "configuration-qemu-snp.toml",
            &fw,
            &[0x4b; 70_000],
        );
        let cfg = RuntimeClassConfig::load(&cfg_path).unwrap();
        let argv = runtime_qemu::argv::build_argv(&planned_vm(&cfg, None)).unwrap();
        let flags: SnpArgs = parse(&[
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
        ])
        .unwrap();
        assert_eq!(arg_after(&argv, "-smp"), "3");
        let digest = measured_boot::cli::run_snp(&flags).unwrap();
        let a: SnpMeasureArgs = parse(&["--config", cfg_path.to_str().unwrap()]).unwrap();
        let refs: serde_json::Value = serde_json::from_str(&run_snp(&a).unwrap()).unwrap();
        assert_eq!(
            refs["snp_launch_measurement"][0].as_str(),
            Some(digest.trim())
        );
        let a: SnpMeasureArgs = parse(&[
            "--config",
            cfg_path.to_str().unwrap(),
            "--reference-values",
            "rvps",
        ])
        .unwrap();
        let rvps: serde_json::Value = serde_json::from_str(&run_snp(&a).unwrap()).unwrap();
        assert_eq!(rvps["type"], "sample");
        // --config decides the inputs: mixing in sev-snp-measure input flags is refused.
        assert!(parse::<SnpMeasureArgs>(&["--config", "x", "--ovmf", "y"]).is_err());
        // A TDX class is not measured as SNP.
        let tdx = class_file(dir.path(), "configuration-qemu-tdx.toml", &fw, &[1; 10]);
        let a: SnpMeasureArgs = parse(&["--config", tdx.to_str().unwrap()]).unwrap();
        assert!(
            run_snp(&a)
                .unwrap_err()
                .to_string()
                .contains("not an SEV-SNP")
        );
    }

    /// `cocoon measure tdx --config` measures the firmware, kernel, initrd and command line
    /// the runtime's argv names; with a real EFI-stub kernel, RTMR1/RTMR2 are predicted.
    #[test]
    fn measure_tdx_config_uses_the_runtime_inputs() {
        let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
        assert!(ovmf.is_file(), "install Debian's ovmf package");
        let dir = tempfile::tempdir().unwrap();
        let kernel = std::fs::read_dir("/var/cache/cocoon/kernels")
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| {
                std::fs::read_dir(e.path().join("boot"))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
            });
        let kernel_bytes = match &kernel {
            Some(k) => std::fs::read(k).unwrap(),
            None => b"not a PE kernel".to_vec(),
        };
        let cfg_path = class_file(
            dir.path(),
            "configuration-qemu-tdx.toml",
            ovmf,
            &kernel_bytes,
        );
        let cfg = RuntimeClassConfig::load(&cfg_path).unwrap();
        let argv = runtime_qemu::argv::build_argv(&planned_vm(&cfg, None)).unwrap();
        let flags = tdx_flags_for_class(&cfg, &default_flags::<TdxArgs>().unwrap()).unwrap();
        assert_eq!(
            flags.kernel.as_deref(),
            Some(Path::new(arg_after(&argv, "-kernel")))
        );
        assert_eq!(
            flags.initrd.as_deref(),
            Some(Path::new(arg_after(&argv, "-initrd")))
        );
        assert_eq!(flags.append.as_deref(), Some(arg_after(&argv, "-append")));
        let fw_in_argv = argv
            .iter()
            .any(|a| a == &ovmf.display().to_string() || a.contains(&*ovmf.display().to_string()));
        assert!(fw_in_argv, "{argv:?}");
        let a: TdxMeasureArgs = parse(&["--config", cfg_path.to_str().unwrap()]).unwrap();
        match kernel {
            Some(_) => {
                let refs: serde_json::Value = serde_json::from_str(&run_tdx(&a).unwrap()).unwrap();
                let mrtd = measured_boot::tdx::mrtd::Tdvf::parse(std::fs::read(ovmf).unwrap())
                    .unwrap()
                    .mrtd(Default::default());
                assert_eq!(
                    refs["tdx_mrtd"][0].as_str(),
                    Some(
                        mrtd.iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                            .as_str()
                    )
                );
                assert_eq!(refs["tdx_rtmr1"].as_array().unwrap().len(), 1);
                assert_eq!(refs["tdx_rtmr2"].as_array().unwrap().len(), 1);
            }
            None => {
                let e = run_tdx(&a).unwrap_err().to_string();
                assert!(e.contains("MZ"), "{e}");
            }
        }
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
