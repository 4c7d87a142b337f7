//! `cocoon-kbs`: Cocoon's key broker, speaking trustee's KBS protocol 0.4.0.
//!
//! * [`config`]: strict TOML configuration.
//! * [`session`]: the bounded session table (cookie, expiry, one-time nonces; an `/auth`
//!   flood evicts only unattested sessions).
//! * [`appraisal`]: evidence verification (the `attestation` crate) and EAR token claims.
//! * [`attestation_policy`]: the Rego attestation policy grading verified claims into
//!   the token's trustworthiness vector and status (contraindicated → refused).
//! * [`resources`]: resources on disk under `repo/type/tag`, traversal refused.
//! * [`server`]: hyper HTTP front end and handlers.
//!
//! [`KbsServer::start`] binds and serves in the background; the binary wraps it.
#![forbid(unsafe_code)]

pub mod appraisal;
pub mod attestation_policy;
pub mod config;
pub mod error;
pub mod resources;
pub mod server;
pub mod session;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use attestation::{AppraisalPolicy, ReferenceValues};
use hyper_util::rt::{TokioIo, TokioTimer};
use kbs_client::{JwsSigningKey, JwsVerifyingKey};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use appraisal::Appraiser;
pub use attestation_policy::AttestationPolicies;
pub use config::KbsConfig;
pub use error::KbsError;
pub use session::SessionTable;

/// The built-in resource policy: refuses sample evidence (like trustee's default.rego).
pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("default-policy.rego");

/// Request counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// `/auth` requests.
    pub auth: AtomicU64,
    /// Accepted attestations.
    pub attest_ok: AtomicU64,
    /// Refused attestations (any reason, including the attestation policy).
    pub attest_fail: AtomicU64,
    /// Attestations whose evidence verified but that the attestation policy graded
    /// `contraindicated` or `none` (also counted in `attest_fail`).
    pub attest_policy_refused: AtomicU64,
    /// Resources released.
    pub released: AtomicU64,
    /// Resource requests refused by policy.
    pub policy_denied: AtomicU64,
}

/// Everything the handlers share.
pub struct KbsState {
    /// The configuration.
    pub config: KbsConfig,
    /// Evidence appraisal.
    pub appraiser: Appraiser,
    /// Resource store.
    pub resources: resources::ResourceStore,
    /// Token signing key.
    pub token_key: JwsSigningKey,
    /// Admin token verification key (Ed25519), if configured.
    pub admin_key: Option<JwsVerifyingKey>,
    /// Counters.
    pub stats: Stats,
    /// Concurrent evidence verifications (CPU-bound, on blocking threads): at most
    /// [`verify_concurrency`]; further `/attest` requests wait their turn.
    pub verify_slots: Semaphore,
    sessions: Mutex<SessionTable>,
    resource_policy: RwLock<Arc<policy::Policy>>,
    attestation_policies: AttestationPolicies,
}

impl std::fmt::Debug for KbsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsState")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// How many evidence verifications run at once: the available parallelism, at least 2.
/// Without a bound, 1,000 simultaneous `/attest` would start hundreds of blocking
/// threads (tokio's pool allows 512) competing for the same cores.
pub fn verify_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

fn read_text(what: &str, path: &std::path::Path) -> Result<String, KbsError> {
    std::fs::read_to_string(path)
        .map_err(|e| KbsError::Config(format!("{what} {}: {e}", path.display())))
}

impl KbsState {
    /// Load keys, policy, reference values and collateral named by `config`.
    pub fn new(config: KbsConfig) -> Result<Self, KbsError> {
        config.validate()?;
        let policy_text = match &config.resource_policy_file {
            Some(p) => read_text("resource_policy_file", p)?,
            None => DEFAULT_RESOURCE_POLICY.to_string(),
        };
        let policy = policy::Policy::from_rego("resource-policy", &policy_text)
            .map_err(|e| KbsError::Config(e.to_string()))?;
        let token_key = match &config.token_signing_key_file {
            Some(p) => JwsSigningKey::from_pem(&read_text("token_signing_key_file", p)?)
                .map_err(|e| KbsError::Config(format!("token_signing_key_file: {e}")))?,
            None => {
                tracing::warn!(
                    "no token_signing_key_file: tokens are signed with an ephemeral key"
                );
                JwsSigningKey::generate("EdDSA").map_err(|e| KbsError::Config(e.to_string()))?
            }
        };
        let admin_key = match &config.admin_public_key_file {
            Some(p) => {
                let k = JwsVerifyingKey::from_pem(&read_text("admin_public_key_file", p)?)
                    .map_err(|e| KbsError::Config(format!("admin_public_key_file: {e}")))?;
                if k.alg() != "EdDSA" {
                    return Err(KbsError::Config(
                        "admin_public_key_file must be an Ed25519 key (admin tokens are EdDSA)"
                            .into(),
                    ));
                }
                Some(k)
            }
            None => {
                tracing::warn!("no admin_public_key_file: admin endpoints refuse every request");
                None
            }
        };
        let reference = match &config.reference_values_file {
            Some(p) => {
                ReferenceValues::from_json(read_text("reference_values_file", p)?.as_bytes())
                    .map_err(|e| KbsError::Config(format!("reference_values_file: {e}")))?
            }
            None => ReferenceValues::default(),
        };
        let tdx_collateral = config
            .tdx_collateral_files
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p)
                    .map_err(|e| KbsError::Config(format!("{}: {e}", p.display())))?;
                attestation::tdx::parse_collateral_json(&bytes)
                    .map_err(|e| KbsError::Config(format!("{}: {e}", p.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let appraiser = Appraiser {
            reference,
            policy: AppraisalPolicy {
                require_all: config.require_all_reference_values,
                allow_sample: config.allow_sample,
                accepted_tcb_statuses: config.accepted_tcb_statuses.clone(),
                allow_debug: config.allow_debug,
            },
            tdx_collateral,
        };
        if config.allow_sample {
            tracing::warn!(
                "allow_sample = true: sample (unsigned) evidence is accepted (coco-dev)"
            );
        }
        Ok(Self {
            resources: resources::ResourceStore::open(&config.resource_dir)?,
            sessions: Mutex::new(SessionTable::new(
                config.max_sessions,
                Duration::from_secs(config.session_timeout_secs),
            )),
            config,
            appraiser,
            token_key,
            admin_key,
            stats: Stats::default(),
            verify_slots: Semaphore::new(verify_concurrency()),
            resource_policy: RwLock::new(Arc::new(policy)),
            attestation_policies: AttestationPolicies::new()
                .map_err(|e| KbsError::Config(format!("built-in attestation policy: {e}")))?,
        })
    }

    /// The session table (poisoning is recovered: the table stays consistent per call).
    pub fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Session lifetime.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.config.session_timeout_secs)
    }

    /// The current resource policy.
    pub fn resource_policy(&self) -> Arc<policy::Policy> {
        self.resource_policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replace the resource policy.
    pub fn set_resource_policy(&self, policy: policy::Policy) {
        *self
            .resource_policy
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// The attestation policies (stored ones and the built-in).
    pub fn attestation_policies(&self) -> &AttestationPolicies {
        &self.attestation_policies
    }

    /// Compile and store a posted attestation policy (`<id>_cpu` is stored as `<id>`);
    /// on error nothing is stored. Returns the id it was stored under.
    pub fn store_attestation_policy(&self, id: &str, text: &str) -> Result<String, KbsError> {
        let loaded = self
            .attestation_policies
            .set(id, text)
            .map_err(|e| KbsError::ParsePolicy(e.to_string()))?;
        tracing::info!(
            policy_id = %loaded.id,
            digest = loaded.policy.digest(),
            "attestation policy stored"
        );
        Ok(loaded.id.clone())
    }

    /// The text of a stored attestation policy.
    pub fn attestation_policy(&self, id: &str) -> Option<String> {
        self.attestation_policies.get(id).map(|p| p.text.clone())
    }

    /// Admin check: a bearer JWT signed by the configured Ed25519 key, unexpired,
    /// with a `role` in `admin_roles`.
    pub fn check_admin(&self, bearer: Option<&str>) -> Result<(), KbsError> {
        let key = self
            .admin_key
            .as_ref()
            .ok_or_else(|| KbsError::AdminAuthAccess("no admin key configured".into()))?;
        let token =
            bearer.ok_or_else(|| KbsError::AdminAuthAccess("no bearer admin token".into()))?;
        let claims = key
            .verify_jwt(token, kbs_client::jws::now_unix())
            .map_err(|e| KbsError::AdminAuthAccess(e.to_string()))?;
        let role = claims
            .get("role")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KbsError::AdminAuthAccess("missing required `role` claim".into()))?;
        if !self.config.admin_roles.iter().any(|r| r == role) {
            return Err(KbsError::AdminAuthAccess(format!(
                "role {role:?} not allowed"
            )));
        }
        Ok(())
    }
}

/// A server running in the background.
#[derive(Debug)]
pub struct KbsServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state (sessions, stats, policy).
    pub state: Arc<KbsState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl KbsServer {
    /// Bind `config.listen` and serve on the current tokio runtime.
    pub async fn start(config: KbsConfig) -> Result<Self, KbsError> {
        let state = Arc::new(KbsState::new(config)?);
        let listener = TcpListener::bind(state.config.listen)
            .await
            .map_err(|e| KbsError::Config(format!("bind {}: {e}", state.config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| KbsError::Config(e.to_string()))?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, state.clone(), rx));
        tracing::info!(%addr, "cocoon-kbs listening (plain HTTP)");
        Ok(Self {
            addr,
            state,
            shutdown,
            task,
        })
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting and wait for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Serve until the accept loop ends (it does not, short of a shutdown).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<KbsState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(state.config.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let st = state.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| server::handle(st.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // A connection lives at most 5 minutes and ends with the server.
            tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(300), conn) => {
                    if r.is_err() {
                        tracing::debug!(%peer, "connection closed by timeout");
                    }
                }
                _ = stop.changed() => {}
            }
            drop(permit);
        });
    }
}
