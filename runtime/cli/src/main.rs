//! `cocoon`: check the host, build the guest image, boot sandbox VMs, measure, attest,
//! pull images.

mod check;
mod classes;
mod demo;
mod guest;
mod keyprovider;
mod measure_class;
mod tools;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cocoon",
    version,
    about = "Cocoon confidential-container runtime tools"
)]
struct Cli {
    /// Log filter (e.g. `info`, `runtime_qemu=debug`); also COCOON_LOG.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this host can run, per runtime class (like `kata-runtime check`).
    Check(check::CheckArgs),
    /// Build or inspect the guest image (kernel, modules, initramfs with the agent).
    #[command(subcommand)]
    Guest(guest::GuestCommand),
    /// Boot sandbox VMs.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Compute expected launch measurements and reference values.
    #[command(subcommand)]
    Measure(tools::MeasureCommand),
    /// Verify attestation evidence.
    #[command(subcommand)]
    Attest(tools::AttestCommand),
    /// Pull images with the in-guest image code.
    #[command(subcommand)]
    Image(tools::ImageCommand),
    /// The main job end to end: an encrypted image run by containerd in a coco-dev VM,
    /// its key released by the KBS after attestation, pulled and decrypted in the guest.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("COCOON_LOG").unwrap_or(cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Check(a) => check::run(&a),
        Command::Guest(c) => guest::run(c),
        Command::Vm(c) => vm::run(c),
        Command::Measure(c) => tools::measure(c),
        Command::Attest(c) => tools::attest(c),
        Command::Image(c) => tools::image(c),
        Command::Demo(a) => demo::run(&a).map(|()| std::process::ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cocoon: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
