//! Subcommands that front library crates: `measure`, `attest`, `image`.

use std::process::ExitCode;

use anyhow::Result;

/// `cocoon measure ...`: expected launch measurements (flags as in `sev-snp-measure`).
#[derive(clap::Subcommand, Debug)]
pub enum MeasureCommand {
    /// SEV-SNP launch digest (sev-snp-measure flags), or reference values of --config.
    Snp(crate::measure_class::SnpMeasureArgs),
    /// TDX MRTD, RTMR1/2 prediction, event-log replay, or reference values of --config.
    Tdx(crate::measure_class::TdxMeasureArgs),
    /// Explain which input accounts for two different SNP digests or TDX registers, or an observed one.
    Diff(measured_boot::cli::DiffArgs),
    /// Reference values for a runtime class, from the exact inputs the runtime boots.
    Class(crate::measure_class::ClassMeasureArgs),
}

/// `cocoon attest ...`
#[derive(clap::Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify TEE evidence and print its claims as JSON (exit 1 when rejected).
    Verify(attestation::cli::VerifyArgs),
}

/// `cocoon image ...`
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Pull, verify, decrypt and unpack an image (the in-guest code path, run on the host).
    Pull(guest_image::cli::PullArgs),
    /// ocicrypt key provider (`cmd` protocol) for `provider:attestation-agent` encryption.
    ///
    /// Reads one JSON request on stdin, writes one JSON answer on stdout. Name it in
    /// OCICRYPT_KEYPROVIDER_CONFIG: {"key-providers":{"attestation-agent":{"cmd":{"path":
    /// "/usr/bin/cocoon","args":["image","keyprovider"]}}}}. Encrypt with skopeo
    /// --encryption-key provider:attestation-agent:keypath=KEK_FILE::keyid=kbs:///REPO/TYPE/TAG
    /// (KEK_FILE: 32 raw bytes, also stored in the KBS under REPO/TYPE/TAG). Decrypt on a host,
    /// for development only, with --decryption-key provider:attestation-agent:kek-file=KEK_FILE
    /// or this command's --kek-file; in the guest the KEK comes from the KBS.
    Keyprovider(crate::keyprovider::KeyproviderArgs),
}

pub fn measure(cmd: MeasureCommand) -> Result<ExitCode> {
    let out = match &cmd {
        MeasureCommand::Snp(a) => crate::measure_class::run_snp(a)?,
        MeasureCommand::Tdx(a) => crate::measure_class::run_tdx(a)?,
        MeasureCommand::Diff(a) => measured_boot::cli::run_diff(a)?,
        MeasureCommand::Class(a) => return crate::measure_class::run(a),
    };
    println!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}

pub fn attest(cmd: AttestCommand) -> Result<ExitCode> {
    match cmd {
        AttestCommand::Verify(a) => match attestation::cli::run_verify(&a) {
            Ok(json) => {
                println!("{json}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("cocoon: evidence rejected: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

pub fn image(cmd: ImageCommand) -> Result<ExitCode> {
    if let ImageCommand::Keyprovider(a) = &cmd {
        return crate::keyprovider::run(a);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cmd {
        ImageCommand::Pull(a) => rt.block_on(guest_image::cli::run_pull(&a))?,
        ImageCommand::Keyprovider(a) => return crate::keyprovider::run(&a),
    }
    Ok(ExitCode::SUCCESS)
}
