//! Argument definitions and command execution of the `kbs-client` binary.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Parser, Subcommand};
use kbs_client::{
    JwsSigningKey, KbsAdminClient, KbsClientBuilder, ResourceUri, SampleFallback, TeeKeyPair,
};

#[derive(Parser)]
#[command(
    name = "kbs-client",
    version,
    about = "A command line client for KBS APIs."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// The KBS server root URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Custom root certificate of the KBS HTTPS server (PEM).
    #[arg(long)]
    cert_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Commands {
    /// Set and configure the KBS (admin).
    #[command(arg_required_else_help = true)]
    Config(Config),
    /// Attest and get a confidential resource; prints it base64-encoded.
    #[command(arg_required_else_help = true)]
    GetResource {
        /// Resource path, e.g. my_repo/resource_type/123abc.
        #[arg(long)]
        path: String,
        /// TEE private key (PEM, RSA or EC P-256); a fresh EC P-256 key otherwise.
        #[arg(long)]
        tee_key_file: Option<PathBuf>,
        /// Attestation token file: skip attestation and send it as bearer token
        /// (needs --tee-key-file with the key the token names).
        #[arg(long)]
        attestation_token: Option<PathBuf>,
        /// Initdata plaintext (TOML) sent with the attestation.
        init_data: Option<String>,
    },
    /// Attest and print the attestation token.
    Attest {
        /// TEE private key (PEM); a fresh EC P-256 key otherwise.
        #[arg(long)]
        tee_key_file: Option<PathBuf>,
        /// Initdata plaintext (TOML) sent with the attestation.
        init_data: Option<String>,
    },
}

#[derive(Args)]
struct Config {
    #[command(subcommand)]
    command: ConfigCommands,
    /// Admin bearer token file (an EdDSA JWT with a `role` claim). Without it (and
    /// without --admin-key-file) the token is read, as trustee's client does, from
    /// `kbs/config/docker-compose/admin-token` (relative to the working directory) or
    /// `~/.trustee/admin-token`; with none found the request is anonymous.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Sign an admin token locally with this Ed25519 private key (PKCS#8 PEM).
    #[arg(long, conflicts_with = "admin_token_file")]
    admin_key_file: Option<PathBuf>,
    /// `role` claim of a locally signed admin token.
    #[arg(long, default_value = "admin", requires = "admin_key_file")]
    admin_role: String,
}

#[derive(Subcommand)]
#[allow(clippy::enum_variant_names)]
enum ConfigCommands {
    /// Set the attestation policy.
    SetAttestationPolicy {
        /// Policy format, e.g. "rego".
        #[arg(long = "type")]
        policy_type: Option<String>,
        /// Policy id (default "default_cpu": trustee's builtin attestation service evaluates
        /// "default_cpu" for CPU TEEs; cocoon-kbs stores it as "default").
        #[arg(long)]
        id: Option<String>,
        /// Policy file.
        #[arg(long)]
        policy_file: PathBuf,
    },
    /// Set the resource policy.
    SetResourcePolicy {
        /// Policy file.
        #[arg(long, group = "resource_policy")]
        policy_file: Option<PathBuf>,
        /// Built-in policy releasing every resource to any attested guest.
        #[arg(long, group = "resource_policy")]
        allow_all: bool,
        /// Built-in policy releasing nothing.
        #[arg(long, group = "resource_policy")]
        deny_all: bool,
        /// Built-in policy releasing only to guests whose token status is affirming.
        #[arg(long, group = "resource_policy")]
        affirming: bool,
        /// Built-in default policy (refuses sample evidence).
        #[arg(long, group = "resource_policy")]
        default: bool,
    },
    /// Delete a confidential resource.
    DeleteResource {
        /// Resource path, e.g. my_repo/resource_type/123abc.
        #[arg(long)]
        path: String,
    },
    /// Set a confidential resource.
    SetResource {
        /// Resource path, e.g. my_repo/resource_type/123abc.
        #[arg(long)]
        path: String,
        /// Resource file.
        #[arg(long)]
        resource_file: PathBuf,
    },
}

const ALLOW_ALL: &str =
    "package policy\n\ndefault allow := false\n\nallow if data.plugin == \"resource\"\n";
const DENY_ALL: &str = "package policy\n\ndefault allow := false\n";
const AFFIRMING: &str = "package policy\n\ndefault allow := false\n\nallow if {\n\tcount(input.submods) > 0\n\tevery _, s in input.submods { s[\"ear.status\"] == \"affirming\" }\n}\n";
const DEFAULT: &str = "package policy\n\ndefault allow := false\n\nallow if {\n\tdata.plugin == \"resource\"\n\tnot input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample\n}\n";

/// Where trustee's docker-compose setup leaves its admin token (relative to the cwd).
const DOCKER_COMPOSE_ADMIN_TOKEN: &str = "kbs/config/docker-compose/admin-token";

fn read_string(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn client_builder(
    cli: &Cli,
    tee_key_file: &Option<PathBuf>,
    init_data: &Option<String>,
) -> anyhow::Result<KbsClientBuilder> {
    let mut b = KbsClientBuilder::new(&cli.url).sample_fallback(SampleFallback::Allow);
    if attestation::detect_tee().is_none() {
        eprintln!("kbs-client: no TEE device found; falling back to the sample attester");
    }
    if let Some(f) = &cli.cert_file {
        b = b.root_cert(read_string(f)?);
    }
    if let Some(f) = tee_key_file {
        b = b.tee_key(TeeKeyPair::from_pem(&read_string(f)?)?);
    }
    if let Some(init) = init_data {
        b = b.init_data(init.clone());
    }
    Ok(b)
}

fn admin_token(config: &Config) -> anyhow::Result<Option<String>> {
    if let Some(f) = &config.admin_token_file {
        return Ok(Some(read_string(f)?.trim().to_string()));
    }
    if let Some(f) = &config.admin_key_file {
        let key = JwsSigningKey::from_pem(&read_string(f)?)?;
        if key.alg() != "EdDSA" {
            bail!(
                "{}: admin tokens are EdDSA; give an Ed25519 key",
                f.display()
            );
        }
        return Ok(Some(kbs_client::jws::admin_token(
            &key,
            &config.admin_role,
            "cocoon-kbs-client",
            300,
        )?));
    }
    let home_token =
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".trustee").join("admin-token"));
    for f in std::iter::once(PathBuf::from(DOCKER_COMPOSE_ADMIN_TOKEN)).chain(home_token) {
        if let Ok(token) = std::fs::read_to_string(&f) {
            eprintln!("kbs-client: using the admin token in {}", f.display());
            return Ok(Some(token.trim().to_string()));
        }
    }
    eprintln!("kbs-client: no admin token given; sending an anonymous admin request");
    Ok(None)
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let certs: Vec<String> = match &cli.cert_file {
        Some(f) => vec![read_string(f)?],
        None => Vec::new(),
    };
    match &cli.command {
        Commands::Attest {
            tee_key_file,
            init_data,
        } => {
            let mut client = client_builder(&cli, tee_key_file, init_data)?.build()?;
            println!("{}", client.attest().await?);
        }
        Commands::GetResource {
            path,
            tee_key_file,
            attestation_token,
            init_data,
        } => {
            let uri = ResourceUri::from_resource_path(path)?;
            let mut client = client_builder(&cli, tee_key_file, init_data)?.build()?;
            let bytes = match attestation_token {
                Some(t) => {
                    if tee_key_file.is_none() {
                        bail!(
                            "--attestation-token needs --tee-key-file (the key named in the token)"
                        );
                    }
                    client
                        .get_resource_with_token(&uri, read_string(t)?.trim())
                        .await?
                }
                None => client.get_resource(&uri).await?,
            };
            println!("{}", STANDARD.encode(bytes.as_slice()));
        }
        Commands::Config(config) => {
            let admin = KbsAdminClient::new(&cli.url, admin_token(config)?, &certs)?;
            match &config.command {
                ConfigCommands::SetAttestationPolicy {
                    policy_type,
                    id,
                    policy_file,
                } => {
                    let policy = std::fs::read(policy_file)
                        .with_context(|| format!("reading {}", policy_file.display()))?;
                    admin
                        .set_attestation_policy(
                            &policy,
                            policy_type.as_deref().unwrap_or("rego"),
                            id.as_deref().unwrap_or("default_cpu"),
                        )
                        .await?;
                    println!(
                        "Set attestation policy success \n policy: {}",
                        STANDARD.encode(&policy)
                    );
                }
                ConfigCommands::SetResourcePolicy {
                    policy_file,
                    allow_all,
                    deny_all,
                    affirming,
                    default,
                } => {
                    let policy: Vec<u8> = match policy_file {
                        Some(f) => {
                            std::fs::read(f).with_context(|| format!("reading {}", f.display()))?
                        }
                        None if *allow_all => ALLOW_ALL.into(),
                        None if *deny_all => DENY_ALL.into(),
                        None if *affirming => AFFIRMING.into(),
                        None if *default => DEFAULT.into(),
                        None => bail!(
                            "no policy given (--policy-file, --allow-all, --deny-all, --affirming or --default)"
                        ),
                    };
                    admin.set_resource_policy(&policy).await?;
                    println!(
                        "Set resource policy success \n policy: {}",
                        STANDARD.encode(&policy)
                    );
                }
                ConfigCommands::DeleteResource { path } => {
                    admin.delete_resource(path).await?;
                    println!("Delete resource success \n path: {path}");
                }
                ConfigCommands::SetResource {
                    path,
                    resource_file,
                } => {
                    let bytes = std::fs::read(resource_file)
                        .with_context(|| format!("reading {}", resource_file.display()))?;
                    admin.set_resource(path, bytes.clone()).await?;
                    println!(
                        "Set resource success \n resource: {}",
                        STANDARD.encode(&bytes)
                    );
                }
            }
        }
    }
    Ok(())
}
