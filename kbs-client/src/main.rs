//! `kbs-client`: command line compatible with trustee's `kbs-client`.
//!
//! ```text
//! kbs-client --url URL attest
//! kbs-client --url URL get-resource --path repo/type/tag
//! kbs-client --url URL config --admin-token-file F set-resource --path P --resource-file F
//! kbs-client --url URL config --admin-token-file F set-resource-policy --policy-file F
//! kbs-client --url URL config --admin-token-file F set-attestation-policy --policy-file F
//! ```
//! `config --admin-key-file K` signs an admin token locally (Ed25519 PKCS#8 PEM).

mod commands;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    commands::run(commands::Cli::parse()).await
}
