//! Registry credentials from a containers/docker `auth.json` file (the `--authfile` of
//! skopeo and podman, `~/.docker/config.json`):
//!
//! ```json
//! {"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"},
//!            "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
//! ```
//!
//! Registry keys are normalised to `host[:port]`: a `http://`/`https://` prefix and any path
//! (`host/v1/`, `host/namespace/repo`) are dropped, the host is lower-cased, and Docker Hub's
//! names (`docker.io`, `registry-1.docker.io`, `index.docker.io`) are one registry. An entry
//! may give `auth` (preferred), `username` + `password`, or `registrytoken` (a ready bearer
//! token). A registry without an entry is accessed anonymously. Credential helpers
//! (`credHelpers`, `credsStore`) are not run.
//!
//! Parse errors name the registry key and the field, never a value. The file's bytes and
//! every string parsed from it are zeroized once the credentials are extracted.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::ImageError;
use crate::registry::{CredentialSource, Credentials};

/// Docker Hub's canonical registry name (what `oci-client` resolves `docker.io` to).
const DOCKER_HUB: &str = "index.docker.io";

/// Why an auth file was refused. Messages name the registry key and field, never a value.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file could not be read.
    #[error("reading auth file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is not JSON (the parser's position message).
    #[error("auth file is not valid JSON: {0}")]
    Json(String),
    /// The document does not have the `{"auths": {...}}` shape.
    #[error("auth file: {0}")]
    Shape(String),
    /// A registry key cannot be reduced to `host[:port]`.
    #[error("auth file: registry key {key:?}: {reason}")]
    Registry {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry's fields are malformed.
    #[error("auth file entry for {key:?}: {reason}")]
    Entry {
        /// The registry key as written.
        key: String,
        /// What is wrong (which field).
        reason: String,
    },
    /// Two keys name the same registry with different credentials.
    #[error(
        "auth file: keys {first:?} and {second:?} both name registry {registry} with different credentials"
    )]
    Conflict {
        /// The normalised registry.
        registry: String,
        /// The first key.
        first: String,
        /// The second key.
        second: String,
    },
}

/// A [`CredentialSource`] backed by a parsed `auth.json`.
#[derive(Clone, Default)]
pub struct AuthFileCredentials {
    /// Normalised registry -> (key as written, credentials).
    entries: BTreeMap<String, (String, Credentials)>,
}

impl std::fmt::Debug for AuthFileCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFileCredentials")
            .field("registries", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuthFileCredentials {
    /// Read and parse the auth file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| AuthFileError::Read {
            path: path.display().to_string(),
            source,
        })?);
        Self::from_json(&bytes)
    }

    /// Parse an auth file's content (e.g. a resource fetched from the KBS).
    pub fn from_json(bytes: &[u8]) -> Result<Self, AuthFileError> {
        let mut doc: Value =
            serde_json::from_slice(bytes).map_err(|e| AuthFileError::Json(e.to_string()))?;
        let parsed = Self::from_value(&doc);
        scrub(&mut doc);
        parsed
    }

    fn from_value(doc: &Value) -> Result<Self, AuthFileError> {
        let top = doc
            .as_object()
            .ok_or_else(|| AuthFileError::Shape("the top level is not a JSON object".into()))?;
        let mut out = Self::default();
        let Some(auths) = top.get("auths") else {
            return Ok(out);
        };
        let auths = auths
            .as_object()
            .ok_or_else(|| AuthFileError::Shape("\"auths\" is not a JSON object".into()))?;
        for (key, entry) in auths {
            let registry = normalise_registry(key).map_err(|reason| AuthFileError::Registry {
                key: key.clone(),
                reason: reason.into(),
            })?;
            let creds = parse_entry(entry).map_err(|reason| AuthFileError::Entry {
                key: key.clone(),
                reason,
            })?;
            match out.entries.get(&registry) {
                Some((first, existing)) if !same(existing, &creds) => {
                    return Err(AuthFileError::Conflict {
                        registry,
                        first: first.clone(),
                        second: key.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    out.entries.insert(registry, (key.clone(), creds));
                }
            }
        }
        Ok(out)
    }

    /// The registries (`host[:port]`, normalised) that have credentials.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Credentials for `registry` (`host[:port]`, any case), anonymous without an entry.
    pub fn lookup(&self, registry: &str) -> Credentials {
        let wanted = normalise_registry(registry).unwrap_or_else(|_| registry.to_ascii_lowercase());
        self.entries
            .get(&wanted)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl CredentialSource for AuthFileCredentials {
    async fn credentials(&self, registry: &str) -> Result<Credentials, ImageError> {
        Ok(self.lookup(registry))
    }
}

/// `host[:port]` of an auth-file key or a registry name.
pub fn normalise_registry(key: &str) -> Result<String, &'static str> {
    let trimmed = key.trim();
    let lower = trimmed.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("no host");
    }
    if host.contains("://") || rest.contains("://") {
        return Err("unsupported URL scheme");
    }
    if host.contains(['@', '?', '#', ' ', '\t']) {
        return Err("not a registry host[:port]");
    }
    if let Some((name, port)) = host.rsplit_once(':')
        && !host.starts_with('[')
        && (name.is_empty() || port.parse::<u16>().is_err())
    {
        return Err("bad port");
    }
    Ok(match host {
        "docker.io" | "registry-1.docker.io" | DOCKER_HUB => DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    })
}

fn same(a: &Credentials, b: &Credentials) -> bool {
    match (a, b) {
        (Credentials::Anonymous, Credentials::Anonymous) => true,
        (
            Credentials::Basic {
                username: ua,
                password: pa,
            },
            Credentials::Basic {
                username: ub,
                password: pb,
            },
        ) => ua == ub && pa.as_str() == pb.as_str(),
        (Credentials::Bearer(a), Credentials::Bearer(b)) => a.as_str() == b.as_str(),
        _ => false,
    }
}

fn string_field<'a>(entry: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match entry.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn parse_entry(entry: &Value) -> Result<Credentials, String> {
    let entry = entry
        .as_object()
        .ok_or_else(|| "the entry is not a JSON object".to_owned())?;
    if let Some(auth) = string_field(entry, "auth")? {
        return decode_auth(auth);
    }
    let username = string_field(entry, "username")?;
    let password = string_field(entry, "password")?;
    match (username, password) {
        (Some(u), Some(p)) => {
            return Ok(Credentials::Basic {
                username: u.to_owned(),
                password: Zeroizing::new(p.to_owned()),
            });
        }
        (Some(_), None) => return Err("\"username\" is given without \"password\"".into()),
        (None, Some(_)) => return Err("\"password\" is given without \"username\"".into()),
        (None, None) => {}
    }
    if let Some(token) = string_field(entry, "registrytoken")? {
        return Ok(Credentials::Bearer(Zeroizing::new(token.to_owned())));
    }
    if string_field(entry, "identitytoken")?.is_some() {
        return Err(
            "\"identitytoken\" (an OAuth refresh token) is not supported; \
                    give \"auth\" or \"username\"/\"password\""
                .into(),
        );
    }
    Err("no credentials: expected \"auth\", \"username\"/\"password\" or \"registrytoken\"".into())
}

/// `auth`: base64 (padding optional) of `user:password`; the password may contain `:`.
fn decode_auth(auth: &str) -> Result<Credentials, String> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = Zeroizing::new(
        engine
            .decode(auth.trim())
            .map_err(|_| "\"auth\" is not valid base64".to_owned())?,
    );
    let text =
        std::str::from_utf8(&decoded).map_err(|_| "\"auth\" does not decode to UTF-8 text")?;
    let (username, password) = text
        .split_once(':')
        .ok_or("\"auth\" does not decode to user:password (no ':')")?;
    if username.is_empty() {
        return Err("\"auth\" has an empty user name".into());
    }
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    })
}

/// Zeroize every string (keys included) of a parsed document before it is dropped.
fn scrub(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            for (_, v) in map.iter_mut() {
                scrub(v);
            }
            let keys = std::mem::take(map);
            for (mut k, _) in keys {
                k.zeroize();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(c: &Credentials) -> (String, String) {
        match c {
            Credentials::Basic { username, password } => {
                (username.clone(), password.as_str().to_owned())
            }
            other => panic!("expected basic credentials, got {other:?}"),
        }
    }

    #[test]
    fn parses_auth_and_username_password_with_normalised_keys() {
        let json = format!(
            r#"{{"auths": {{
                "https://Registry.Example:5000/v1/": {{"auth": "{}"}},
                "quay.io/team/repo": {{"username": "bob", "password": "p:w"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "tok.example": {{"registrytoken": "abc"}},
                "both.example": {{"auth": "{}", "username": "ignored", "password": "x"}}
            }}, "credHelpers": {{"gcr.io": "gcloud"}}}}"#,
            b64("alice:s3cret:with:colons"),
            // Padding is optional.
            b64("hub:pw").trim_end_matches('='),
            b64("real:one"),
        );
        let creds = AuthFileCredentials::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            creds.registries().collect::<Vec<_>>(),
            [
                "both.example",
                "index.docker.io",
                "quay.io",
                "registry.example:5000",
                "tok.example"
            ]
        );
        assert_eq!(
            basic(&creds.lookup("registry.example:5000")),
            ("alice".into(), "s3cret:with:colons".into())
        );
        assert_eq!(
            basic(&creds.lookup("QUAY.io")),
            ("bob".into(), "p:w".into())
        );
        assert_eq!(
            basic(&creds.lookup("docker.io")),
            ("hub".into(), "pw".into())
        );
        assert_eq!(
            basic(&creds.lookup("both.example")),
            ("real".into(), "one".into())
        );
        assert!(
            matches!(creds.lookup("tok.example"), Credentials::Bearer(t) if t.as_str() == "abc")
        );
        // No entry (and a different port is a different registry): anonymous.
        assert!(matches!(
            creds.lookup("registry.example:5001"),
            Credentials::Anonymous
        ));
        assert!(matches!(
            creds.lookup("other.example"),
            Credentials::Anonymous
        ));
        // Debug output names registries, never secrets.
        let debug = format!("{creds:?}");
        assert!(
            debug.contains("quay.io") && !debug.contains("p:w"),
            "{debug}"
        );
    }

    #[test]
    fn empty_documents_mean_anonymous() {
        for json in [r#"{}"#, r#"{"auths": {}}"#] {
            let creds = AuthFileCredentials::from_json(json.as_bytes()).unwrap();
            assert_eq!(creds.registries().count(), 0);
            assert!(matches!(creds.lookup("x.example"), Credentials::Anonymous));
        }
    }

    #[test]
    fn malformed_files_are_named_without_values() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not valid JSON"),
            ("[]".into(), "top level is not a JSON object"),
            (r#"{"auths": []}"#.into(), "\"auths\" is not a JSON object"),
            (
                r#"{"auths": {"r.example": "x"}}"#.into(),
                "\"r.example\": the entry is not a JSON object",
            ),
            (
                r#"{"auths": {"r.example": {"auth": "%%%SECRET%%%"}}}"#.into(),
                "\"r.example\": \"auth\" is not valid base64",
            ),
            (
                format!(
                    r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
                    b64("SECRETnocolon")
                ),
                "no ':'",
            ),
            (
                format!(
                    r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
                    b64(":SECRET")
                ),
                "empty user name",
            ),
            (
                r#"{"auths": {"r.example": {"username": "u"}}}"#.into(),
                "\"username\" is given without \"password\"",
            ),
            (
                r#"{"auths": {"r.example": {"password": "SECRET"}}}"#.into(),
                "\"password\" is given without \"username\"",
            ),
            (
                r#"{"auths": {"r.example": {"auth": 7}}}"#.into(),
                "\"auth\" is not a string",
            ),
            (
                r#"{"auths": {"r.example": {"identitytoken": "SECRET"}}}"#.into(),
                "identitytoken",
            ),
            (r#"{"auths": {"r.example": {}}}"#.into(), "no credentials"),
            (
                r#"{"auths": {"https://": {"auth": "eDp5"}}}"#.into(),
                "registry key \"https://\": no host",
            ),
            (
                r#"{"auths": {"u@r.example": {"auth": "eDp5"}}}"#.into(),
                "not a registry host",
            ),
            (
                r#"{"auths": {"r.example:http": {"auth": "eDp5"}}}"#.into(),
                "bad port",
            ),
            (
                format!(
                    r#"{{"auths": {{"r.example": {{"auth": "{}"}}, "https://r.example/v1/": {{"auth": "{}"}}}}}}"#,
                    b64("a:SECRET1"),
                    b64("a:SECRET2")
                ),
                "both name registry r.example",
            ),
        ];
        for (json, expected) in cases {
            let err = AuthFileCredentials::from_json(json.as_bytes()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expected), "{json}: {text}");
            assert!(!text.contains("SECRET"), "{json}: leaks a value: {text}");
        }
    }

    #[test]
    fn identical_duplicates_are_accepted() {
        let a = b64("u:p");
        let json = format!(
            r#"{{"auths": {{"r.example": {{"auth": "{a}"}}, "http://r.example/": {{"auth": "{a}"}}}}}}"#
        );
        let creds = AuthFileCredentials::from_json(json.as_bytes()).unwrap();
        assert_eq!(basic(&creds.lookup("r.example")), ("u".into(), "p".into()));
    }

    #[test]
    fn missing_file_is_named() {
        let err = AuthFileCredentials::from_file(Path::new("/nonexistent/auth.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/auth.json"), "{err}");
    }

    #[test]
    fn scrub_clears_strings() {
        let mut v: Value = serde_json::from_str(r#"{"a": ["secret", {"b": "x"}]}"#).unwrap();
        scrub(&mut v);
        assert_eq!(v, serde_json::json!({}));
    }
}
