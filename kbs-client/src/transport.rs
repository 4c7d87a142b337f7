//! HTTP transport for the sans-IO protocol: reqwest with rustls (ring), no OpenSSL.
//!
//! [`KbsClient`] keeps one tee key and one attested [`Session`] (cookie + token),
//! re-attests when the token is about to expire and once more when a resource
//! request is answered 401 (the KBS forgot the session, or the token expired).

use std::sync::Arc;
use std::time::Duration;

use attestation::Tee;
use attestation::attester::{Attester, SampleFallback, select_attester};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use zeroize::Zeroizing;

use crate::protocol::{
    Handshake, HttpRequest, HttpResponse, Method, ResourceAuth, Session, decode_resource_response,
    resource_request,
};
use crate::{KbsClientError, KbsErrorType, ResourceUri, TeeKeyAlgorithm, TeeKeyPair, jws};

/// Re-attest when the token expires within this many seconds.
pub const TOKEN_EXPIRY_MARGIN_SECS: i64 = 5;

/// Plain HTTP(S) access to a KBS base URL.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base_url: String,
    http: reqwest::Client,
}

impl HttpTransport {
    /// A transport to `base_url` (e.g. `http://127.0.0.1:8080`); `root_certs_pem`
    /// are extra trusted roots for HTTPS.
    pub fn new(base_url: &str, root_certs_pem: &[String]) -> Result<Self, KbsClientError> {
        // reqwest is built without a rustls provider; install ring if nobody has.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("cocoon-kbs-client/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10));
        for pem in root_certs_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| KbsClientError::Http(format!("KBS root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(KbsClientError::Http(format!(
                "KBS URL {base_url:?} must start with http:// or https://"
            )));
        }
        Ok(Self {
            base_url,
            http: builder
                .build()
                .map_err(|e| KbsClientError::Http(e.to_string()))?,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Perform one exchange.
    pub async fn send(&self, req: &HttpRequest) -> Result<HttpResponse, KbsClientError> {
        let url = format!("{}{}", self.base_url, req.path);
        let mut builder = match req.method {
            Method::Get => self.http.get(&url),
            Method::Post => self.http.post(&url).body(req.body.clone()),
            Method::Delete => self.http.delete(&url),
        };
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let resp = builder
            .send()
            .await
            .map_err(|e| KbsClientError::Http(format!("{} {url}: {e}", method_name(req.method))))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = resp
            .bytes()
            .await
            .map_err(|e| KbsClientError::Http(format!("reading {url}: {e}")))?
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Delete => "DELETE",
    }
}

/// How to build a [`KbsClient`].
pub struct KbsClientBuilder {
    url: String,
    root_certs: Vec<String>,
    tee: Option<Tee>,
    fallback: SampleFallback,
    attester: Option<Arc<dyn Attester>>,
    key: Option<TeeKeyPair>,
    key_algorithm: TeeKeyAlgorithm,
    init_data: Option<String>,
}

impl KbsClientBuilder {
    /// A client for the KBS at `url`; no sample fallback unless [`Self::sample_fallback`].
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            root_certs: Vec::new(),
            tee: None,
            fallback: SampleFallback::Forbid,
            attester: None,
            key: None,
            key_algorithm: TeeKeyAlgorithm::default(),
            init_data: None,
        }
    }

    /// Whether a machine without TEE device may use the sample attester.
    /// Library users in a TEE runtime class keep [`SampleFallback::Forbid`].
    pub fn sample_fallback(mut self, fallback: SampleFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// Use this TEE instead of detecting one.
    pub fn tee(mut self, tee: Tee) -> Self {
        self.tee = Some(tee);
        self
    }

    /// Use this attester (tests, custom evidence providers).
    pub fn attester(mut self, attester: Arc<dyn Attester>) -> Self {
        self.attester = Some(attester);
        self
    }

    /// Use this tee key instead of generating one.
    pub fn tee_key(mut self, key: TeeKeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Algorithm of the generated tee key (EC P-256 by default).
    pub fn key_algorithm(mut self, algorithm: TeeKeyAlgorithm) -> Self {
        self.key_algorithm = algorithm;
        self
    }

    /// Extra trusted HTTPS root (PEM).
    pub fn root_cert(mut self, pem: String) -> Self {
        self.root_certs.push(pem);
        self
    }

    /// Initdata TOML plaintext to send in the attestation.
    pub fn init_data(mut self, toml: String) -> Self {
        self.init_data = Some(toml);
        self
    }

    /// Build: pick the attester (may fail with no TEE and `Forbid`), make the key.
    pub fn build(self) -> Result<KbsClient, KbsClientError> {
        let attester: Arc<dyn Attester> = match self.attester {
            Some(a) => a,
            None => Arc::from(select_attester(self.tee, self.fallback)?),
        };
        let tee_key = match self.key {
            Some(k) => k,
            None => TeeKeyPair::generate(self.key_algorithm)?,
        };
        Ok(KbsClient {
            transport: HttpTransport::new(&self.url, &self.root_certs)?,
            attester,
            tee_key,
            init_data: self.init_data,
            session: None,
            handshakes: 0,
        })
    }
}

/// A KBS client with an attested session cache.
pub struct KbsClient {
    transport: HttpTransport,
    attester: Arc<dyn Attester>,
    tee_key: TeeKeyPair,
    init_data: Option<String>,
    session: Option<Session>,
    handshakes: u64,
}

impl std::fmt::Debug for KbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsClient")
            .field("url", &self.transport.base_url)
            .field("tee", &self.attester.tee())
            .field("handshakes", &self.handshakes)
            .finish_non_exhaustive()
    }
}

impl KbsClient {
    /// The TEE whose evidence this client sends.
    pub fn tee(&self) -> Tee {
        self.attester.tee()
    }

    /// The tee key pair.
    pub fn tee_key(&self) -> &TeeKeyPair {
        &self.tee_key
    }

    /// How many RCAR handshakes this client has completed.
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }

    /// The cached session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Drop the cached session (the next call re-attests).
    pub fn forget_session(&mut self) {
        self.session = None;
    }

    /// Run one RCAR handshake unconditionally and cache the session.
    pub async fn handshake(&mut self) -> Result<&Session, KbsClientError> {
        let mut hs = Handshake::new(self.attester.tee(), self.init_data.clone());
        let auth = hs.auth_request()?;
        let resp = self.transport.send(&auth).await?;
        let attest = hs.on_auth_response(&resp, self.attester.as_ref(), &self.tee_key)?;
        let resp = self.transport.send(&attest).await?;
        let session = hs.on_attest_response(&resp)?;
        self.handshakes += 1;
        tracing::debug!(url = %self.transport.base_url, "RCAR handshake complete");
        Ok(self.session.insert(session))
    }

    /// A valid token: the cached one unless it expires within
    /// [`TOKEN_EXPIRY_MARGIN_SECS`], otherwise a fresh handshake.
    pub async fn attest(&mut self) -> Result<String, KbsClientError> {
        let fresh = self
            .session
            .as_ref()
            .is_some_and(|s| !s.is_expired(jws::now_unix(), TOKEN_EXPIRY_MARGIN_SECS));
        if fresh && let Some(s) = &self.session {
            return Ok(s.token.clone());
        }
        Ok(self.handshake().await?.token.clone())
    }

    /// Fetch and decrypt a resource, attesting first when needed and once more
    /// after a 401 (any other error is returned as is).
    pub async fn get_resource(
        &mut self,
        uri: &ResourceUri,
    ) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        self.attest().await?;
        for attempt in 0..2 {
            let session = self
                .session
                .as_ref()
                .ok_or(KbsClientError::State("no session after attestation"))?;
            let resp = self
                .transport
                .send(&resource_request(uri, ResourceAuth::Session(session)))
                .await?;
            match decode_resource_response(&resp, &self.tee_key) {
                Err(KbsClientError::Kbs {
                    status: 401, kind, ..
                }) if attempt == 0 && retry_after_401(&kind) => {
                    tracing::warn!(%kind, "KBS answered 401; re-attesting once");
                    self.handshake().await?;
                }
                other => return other,
            }
        }
        Err(KbsClientError::State("resource retry loop ended"))
    }

    /// Fetch a resource with a bearer token obtained elsewhere (no cookie, no retry).
    pub async fn get_resource_with_token(
        &self,
        uri: &ResourceUri,
        token: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        let resp = self
            .transport
            .send(&resource_request(uri, ResourceAuth::Bearer(token)))
            .await?;
        decode_resource_response(&resp, &self.tee_key)
    }
}

/// A 401 is worth one re-attestation unless the policy itself refused.
fn retry_after_401(kind: &KbsErrorType) -> bool {
    !matches!(kind, KbsErrorType::PolicyDeny)
}

/// Admin calls (bearer admin token): resources and policies.
#[derive(Debug, Clone)]
pub struct KbsAdminClient {
    transport: HttpTransport,
    admin_token: Option<String>,
}

impl KbsAdminClient {
    /// Admin client for `url`; without a token requests are anonymous (only a KBS
    /// in trustee's `InsecureAllowAll` mode accepts them).
    pub fn new(
        url: &str,
        admin_token: Option<String>,
        root_certs_pem: &[String],
    ) -> Result<Self, KbsClientError> {
        Ok(Self {
            transport: HttpTransport::new(url, root_certs_pem)?,
            admin_token: admin_token.map(|t| t.trim().to_string()),
        })
    }

    async fn post(
        &self,
        path: String,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), KbsClientError> {
        self.send(Method::Post, path, Some(content_type), body)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: String,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), KbsClientError> {
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("Content-Type".to_string(), ct.to_string()));
        }
        if let Some(t) = &self.admin_token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let resp = self
            .transport
            .send(&HttpRequest {
                method,
                path,
                headers,
                body,
            })
            .await?;
        if resp.status == 200 {
            Ok(())
        } else {
            Err(KbsClientError::from_response(resp.status, &resp.body))
        }
    }

    /// `POST /kbs/v0/resource/<repo>/<type>/<tag>` with the raw bytes.
    pub async fn set_resource(&self, path: &str, bytes: Vec<u8>) -> Result<(), KbsClientError> {
        let uri = ResourceUri::from_resource_path(path)?;
        self.post(uri.kbs_path(), "application/octet-stream", bytes)
            .await
    }

    /// `DELETE /kbs/v0/resource/<repo>/<type>/<tag>`.
    pub async fn delete_resource(&self, path: &str) -> Result<(), KbsClientError> {
        let uri = ResourceUri::from_resource_path(path)?;
        self.send(Method::Delete, uri.kbs_path(), None, Vec::new())
            .await
    }

    /// `POST /kbs/v0/resource-policy {"policy": b64url(rego)}`.
    pub async fn set_resource_policy(&self, rego: &[u8]) -> Result<(), KbsClientError> {
        let body = serde_json::json!({"policy": B64URL.encode(rego)});
        self.post(
            format!("{}/resource-policy", crate::KBS_PREFIX),
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// `POST /kbs/v0/attestation-policy {"type","policy_id","policy": b64url}`.
    pub async fn set_attestation_policy(
        &self,
        policy: &[u8],
        policy_type: &str,
        policy_id: &str,
    ) -> Result<(), KbsClientError> {
        let body = serde_json::json!({
            "type": policy_type,
            "policy_id": policy_id,
            "policy": B64URL.encode(policy),
        });
        self.post(
            format!("{}/attestation-policy", crate::KBS_PREFIX),
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }
}

/// Resolves `kbs:///repo/type/tag` key ids to key bytes through an attested
/// [`KbsClient`] (the image crate's `KeyResolver` is adapted to this by the runtime).
pub struct KbsKeyResolver {
    client: tokio::sync::Mutex<KbsClient>,
}

impl std::fmt::Debug for KbsKeyResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KbsKeyResolver").finish_non_exhaustive()
    }
}

impl KbsKeyResolver {
    /// Wrap a client (build it with [`SampleFallback::Forbid`] inside a TEE).
    pub fn new(client: KbsClient) -> Self {
        Self {
            client: tokio::sync::Mutex::new(client),
        }
    }

    /// Fetch the key named by `kid` (`kbs:///repo/type/tag`).
    pub async fn resolve(&self, kid: &str) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        let uri = ResourceUri::parse(kid)?;
        self.client.lock().await.get_resource(&uri).await
    }
}
