//! Strict TOML configuration (`deny_unknown_fields`, [`KbsConfig::validate`]).
//! Relative paths are resolved against the configuration file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::KbsError;

/// The server configuration. See `config/cocoon-kbs.example.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KbsConfig {
    /// Listen socket (default `127.0.0.1:8080`, trustee's default).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve plain HTTP. Must be true: TLS is not built in (terminate TLS in front).
    #[serde(default)]
    pub insecure_http: bool,
    /// Seconds a session (cookie) lives after `/auth` (default 300, trustee's 5 min).
    #[serde(default = "default_session_timeout")]
    pub session_timeout_secs: u64,
    /// Most sessions kept (default 10000). When `/auth` finds the table full, every
    /// expired session is purged; if that frees nothing, the oldest *Pending* session
    /// (nonce unused, nothing proven) is evicted, and only when no Pending session
    /// exists the oldest Attested one (then the oldest Verifying one). An unattested
    /// `/auth` flood therefore never evicts a guest that attested; a new `/auth` is
    /// never refused for lack of room. See [`crate::session`].
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Lifetime of attestation tokens in seconds (default 300).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// Largest request body in bytes (resources and policies included), default 1 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Most concurrently served connections (default 1024).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Directory holding resources as `<repo>/<type>/<tag>` files.
    pub resource_dir: PathBuf,
    /// Rego resource policy (`package policy`, rule `allow`). Absent: the built-in
    /// default, which refuses sample evidence.
    #[serde(default)]
    pub resource_policy_file: Option<PathBuf>,
    /// Ed25519 public key (SPKI PEM) that admin JWTs must be signed with. Absent:
    /// every admin request is refused.
    #[serde(default)]
    pub admin_public_key_file: Option<PathBuf>,
    /// Accepted values of the admin JWT `role` claim (default `["admin"]`).
    #[serde(default = "default_admin_roles")]
    pub admin_roles: Vec<String>,
    /// Token signing key (PKCS#8 PEM, Ed25519 → EdDSA or P-256 → ES256). Absent: an
    /// ephemeral Ed25519 key (tokens die with the process).
    #[serde(default)]
    pub token_signing_key_file: Option<PathBuf>,
    /// Reference values JSON (`attestation::ReferenceValues` keys). Absent: none.
    #[serde(default)]
    pub reference_values_file: Option<PathBuf>,
    /// TDX collateral files (dcap-qvl JSON); a quote is accepted when it verifies
    /// with one of them.
    #[serde(default)]
    pub tdx_collateral_files: Vec<PathBuf>,
    /// Accept sample (no-TEE) evidence at attestation (coco-dev only). The resource
    /// policy decides separately whether sample-attested guests get resources.
    #[serde(default)]
    pub allow_sample: bool,
    /// Accept debuggable guests.
    #[serde(default)]
    pub allow_debug: bool,
    /// Every reference key that applies to the TEE must be configured.
    #[serde(default)]
    pub require_all_reference_values: bool,
    /// Accepted TDX TCB statuses (empty: any status the verifier accepts).
    #[serde(default)]
    pub accepted_tcb_statuses: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_session_timeout() -> u64 {
    300
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_token_lifetime() -> u64 {
    300
}
fn default_max_request_bytes() -> usize {
    1024 * 1024
}
fn default_max_connections() -> usize {
    1024
}
fn default_admin_roles() -> Vec<String> {
    vec!["admin".into()]
}

fn config_err(reason: impl Into<String>) -> KbsError {
    KbsError::Config(reason.into())
}

impl KbsConfig {
    /// Parse TOML text (paths stay as written).
    pub fn from_toml(text: &str) -> Result<Self, KbsError> {
        toml::from_str(text).map_err(|e| config_err(e.to_string()))
    }

    /// Read, parse, resolve relative paths against the file's directory, validate.
    pub fn load(path: &Path) -> Result<Self, KbsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_err(format!("{}: {e}", path.display())))?;
        let mut config =
            Self::from_toml(&text).map_err(|e| config_err(format!("{}: {e}", path.display())))?;
        if let Some(dir) = path.parent() {
            config.resolve_relative_to(dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Make every relative path absolute under `dir`.
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.resource_dir);
        for p in [
            &mut self.resource_policy_file,
            &mut self.admin_public_key_file,
            &mut self.token_signing_key_file,
            &mut self.reference_values_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        self.tdx_collateral_files.iter_mut().for_each(fix);
    }

    /// Check values that parse but make no sense.
    pub fn validate(&self) -> Result<(), KbsError> {
        if !self.insecure_http {
            return Err(config_err(
                "insecure_http must be true: cocoon-kbs serves plain HTTP only; put a TLS \
                 terminator in front of it, or bind it to loopback",
            ));
        }
        if self.session_timeout_secs == 0 || self.session_timeout_secs > 86_400 {
            return Err(config_err("session_timeout_secs must be within 1..=86400"));
        }
        if self.token_lifetime_secs == 0 || self.token_lifetime_secs > 86_400 {
            return Err(config_err("token_lifetime_secs must be within 1..=86400"));
        }
        if self.max_sessions == 0 || self.max_sessions > 10_000_000 {
            return Err(config_err("max_sessions must be within 1..=10000000"));
        }
        if self.max_connections == 0 {
            return Err(config_err("max_connections must be at least 1"));
        }
        if self.max_request_bytes < 4096 || self.max_request_bytes > 64 * 1024 * 1024 {
            return Err(config_err(
                "max_request_bytes must be within 4096..=67108864",
            ));
        }
        if self.admin_roles.iter().any(String::is_empty) || self.admin_roles.is_empty() {
            return Err(config_err(
                "admin_roles must list at least one non-empty role",
            ));
        }
        if self.resource_dir.as_os_str().is_empty() {
            return Err(config_err("resource_dir must be set"));
        }
        Ok(())
    }

    /// A configuration for tests and embedding: loopback on an ephemeral port,
    /// `resource_dir` as given, everything else default.
    pub fn for_loopback(resource_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            insecure_http: true,
            session_timeout_secs: default_session_timeout(),
            max_sessions: default_max_sessions(),
            token_lifetime_secs: default_token_lifetime(),
            max_request_bytes: default_max_request_bytes(),
            max_connections: default_max_connections(),
            resource_dir,
            resource_policy_file: None,
            admin_public_key_file: None,
            admin_roles: default_admin_roles(),
            token_signing_key_file: None,
            reference_values_file: None,
            tdx_collateral_files: Vec::new(),
            allow_sample: false,
            allow_debug: false,
            require_all_reference_values: false,
            accepted_tcb_statuses: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let text = std::fs::read_to_string(dir.join("cocoon-kbs.example.toml")).unwrap();
        let mut c = KbsConfig::from_toml(&text).unwrap();
        c.resolve_relative_to(&dir);
        c.validate().unwrap();
        assert_eq!(c.listen, default_listen());
        assert!(c.allow_sample);
        assert!(
            c.resource_policy_file
                .as_ref()
                .unwrap()
                .ends_with("policy-coco-dev.rego")
        );
        assert!(c.resource_policy_file.as_ref().unwrap().exists());
        assert!(c.resource_dir.is_absolute());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let base = "insecure_http = true\nresource_dir = \"/r\"\n";
        KbsConfig::from_toml(base).unwrap().validate().unwrap();
        let e = KbsConfig::from_toml(&format!("{base}sesion_timeout_secs = 5\n")).unwrap_err();
        assert!(e.to_string().contains("sesion_timeout_secs"), "{e}");
        assert!(KbsConfig::from_toml("insecure_http = true\n").is_err());
        for bad in [
            "session_timeout_secs = 0",
            "max_sessions = 0",
            "token_lifetime_secs = 0",
            "max_request_bytes = 10",
            "admin_roles = []",
        ] {
            let c = KbsConfig::from_toml(&format!("{base}{bad}\n")).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        let c = KbsConfig::from_toml("resource_dir = \"/r\"\n").unwrap();
        assert!(c.validate().is_err(), "TLS-less without insecure_http");
    }
}
