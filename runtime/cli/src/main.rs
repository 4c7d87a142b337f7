//! `cocoon`: check the host, build the guest image, boot sandbox VMs, measure, attest,
//! pull images.

mod check;
mod classes;
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cocoon: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
