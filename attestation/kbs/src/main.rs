//! `cocoon-kbs --config FILE`: run the key broker.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Cocoon's key broker (KBS protocol 0.4.0).
#[derive(Parser)]
#[command(name = "cocoon-kbs", version, about)]
struct Cli {
    /// Configuration file (TOML; see config/cocoon-kbs.example.toml).
    #[arg(long, short)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cocoon_kbs::KbsConfig::load(&cli.config)
        .with_context(|| format!("loading {}", cli.config.display()))?;
    let server = cocoon_kbs::KbsServer::start(config).await?;
    eprintln!("cocoon-kbs listening on {}", server.url());
    tokio::select! {
        _ = server_wait(server) => {}
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; }
    }
    Ok(())
}

async fn server_wait(server: cocoon_kbs::KbsServer) {
    server.wait().await;
}
