//! The RCAR handshake of KBS protocol 0.4.0 as a sans-IO state machine.
//!
//! ```text
//! Handshake::new ─ auth_request() ──► POST /kbs/v0/auth   {version, tee, extra-params}
//!                 on_auth_response() ◄─ 200 Set-Cookie: kbs-session-id, {nonce, extra-params}
//!                 (evidence over H(JCS({additional-evidence, nonce, tee-pubkey})))
//!              ──► POST /kbs/v0/attest  Cookie, {init-data, runtime-data, tee-evidence}
//!                 on_attest_response() ◄─ 200 {token}  →  Session {cookie, token, exp}
//! ```
//! The caller performs the HTTP exchanges ([`HttpRequest`] out, [`HttpResponse`] in);
//! [`resource_request`] and [`decode_resource_response`] cover the resource step.

use attestation::attester::Attester;
use attestation::{HashAlgorithm, Tee, runtime_data_digest};
use kbs_types::{Attestation, Challenge, CompositeEvidence, InitData, Request, RuntimeData};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{KbsClientError, ResourceUri, TeeKeyPair, jws};

/// The protocol version this client speaks.
pub const KBS_PROTOCOL_VERSION: &str = "0.4.0";
/// Path prefix of every KBS endpoint.
pub const KBS_PREFIX: &str = "/kbs/v0";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// HTTP method of a request the caller must make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE (admin: remove a resource).
    Delete,
}

/// A request for the caller to send (path relative to the KBS base URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute path with query, e.g. `/kbs/v0/auth`.
    pub path: String,
    /// Extra headers (`Cookie`, `Authorization`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for GET).
    pub body: Vec<u8>,
}

/// A response the caller received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// All headers (names compared case-insensitively).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Values of header `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn check_ok(&self) -> Result<(), KbsClientError> {
        if (200..300).contains(&self.status) {
            Ok(())
        } else {
            Err(KbsClientError::from_response(self.status, &self.body))
        }
    }
}

/// The `kbs-session-id` value from `Set-Cookie` headers, if any.
pub fn session_cookie(resp: &HttpResponse) -> Option<String> {
    resp.header_values("set-cookie").find_map(|v| {
        let first = v.split(';').next()?.trim();
        let (name, value) = first.split_once('=')?;
        (name.trim() == SESSION_COOKIE && !value.is_empty()).then(|| value.trim().to_string())
    })
}

/// An attested session: the cookie and token the KBS issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `kbs-session-id` cookie value.
    pub cookie: String,
    /// The attestation token (JWT).
    pub token: String,
    /// The token's `exp` (Unix seconds), if it carries one.
    pub expires_at: Option<i64>,
}

impl Session {
    /// True when the token has expired, or expires within `margin_secs`, at `now`.
    pub fn is_expired(&self, now: i64, margin_secs: i64) -> bool {
        self.expires_at.is_some_and(|exp| exp <= now + margin_secs)
    }
}

#[derive(Debug)]
enum State {
    Start,
    AwaitChallenge,
    AwaitToken { cookie: String },
    Done,
}

/// One RCAR handshake.
#[derive(Debug)]
pub struct Handshake {
    tee: Tee,
    init_data: Option<String>,
    state: State,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

impl Handshake {
    /// A handshake for evidence of `tee`, with optional initdata TOML plaintext.
    pub fn new(tee: Tee, init_data: Option<String>) -> Self {
        Self {
            tee,
            init_data,
            state: State::Start,
        }
    }

    /// Step 1: the `/auth` request (`Request` with the supported hash algorithms).
    pub fn auth_request(&mut self) -> Result<HttpRequest, KbsClientError> {
        if !matches!(self.state, State::Start) {
            return Err(KbsClientError::State("auth_request called twice"));
        }
        let request = Request {
            version: KBS_PROTOCOL_VERSION.into(),
            tee: self.tee.into(),
            extra_params: serde_json::json!({
                "supported-hash-algorithms": ["sha256", "sha384", "sha512"]
            }),
        };
        self.state = State::AwaitChallenge;
        json_post(format!("{KBS_PREFIX}/auth"), &request, None)
    }

    /// Step 2: read the challenge, produce evidence with `attester` over the
    /// runtime data bound to `tee_key`, and return the `/attest` request.
    pub fn on_auth_response(
        &mut self,
        resp: &HttpResponse,
        attester: &dyn Attester,
        tee_key: &TeeKeyPair,
    ) -> Result<HttpRequest, KbsClientError> {
        if !matches!(self.state, State::AwaitChallenge) {
            return Err(KbsClientError::State("on_auth_response out of order"));
        }
        if attester.tee() != self.tee {
            return Err(KbsClientError::State(
                "attester TEE differs from the handshake's",
            ));
        }
        resp.check_ok()?;
        let cookie = session_cookie(resp).ok_or_else(|| {
            KbsClientError::Protocol(format!("/auth response sets no {SESSION_COOKIE} cookie"))
        })?;
        let challenge: Challenge = serde_json::from_slice(&resp.body)
            .map_err(|e| KbsClientError::Protocol(format!("challenge: {e}")))?;
        let hash = selected_hash(&challenge.extra_params)?;
        let tee_pubkey = tee_key.public_jwk();
        let digest = runtime_data_digest(&challenge.nonce, &tee_pubkey, "", hash)?;
        let evidence = attester.evidence(&digest)?;
        let primary_evidence: serde_json::Value = serde_json::from_str(&evidence)
            .map_err(|e| KbsClientError::Protocol(format!("attester output is not JSON: {e}")))?;
        let attestation = Attestation {
            init_data: self.init_data.as_ref().map(|body| InitData {
                format: "toml".into(),
                body: body.clone(),
            }),
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence,
                additional_evidence: String::new(),
            },
        };
        let req = json_post(format!("{KBS_PREFIX}/attest"), &attestation, Some(&cookie))?;
        self.state = State::AwaitToken { cookie };
        Ok(req)
    }

    /// Step 3: read the token; the handshake is complete.
    pub fn on_attest_response(&mut self, resp: &HttpResponse) -> Result<Session, KbsClientError> {
        let State::AwaitToken { cookie } = &self.state else {
            return Err(KbsClientError::State("on_attest_response out of order"));
        };
        resp.check_ok()?;
        let body: TokenBody = serde_json::from_slice(&resp.body)
            .map_err(|e| KbsClientError::Protocol(format!("attest response: {e}")))?;
        // The KBS may refresh the cookie; keep the newest.
        let cookie = session_cookie(resp).unwrap_or_else(|| cookie.clone());
        let expires_at = jws::decode_claims_unverified(&body.token)?
            .get("exp")
            .and_then(serde_json::Value::as_i64);
        self.state = State::Done;
        Ok(Session {
            cookie,
            token: body.token,
            expires_at,
        })
    }
}

/// The hash the challenge selected (`selected-hash-algorithm`), SHA-384 by default.
pub fn selected_hash(extra_params: &serde_json::Value) -> Result<HashAlgorithm, KbsClientError> {
    match extra_params.get("selected-hash-algorithm") {
        None => Ok(HashAlgorithm::Sha384),
        Some(v) => {
            let name = v.as_str().unwrap_or_default().to_lowercase();
            name.parse::<HashAlgorithm>().map_err(|_| {
                KbsClientError::Protocol(format!("challenge selects unknown hash algorithm {v}"))
            })
        }
    }
}

fn json_post<T: serde::Serialize>(
    path: String,
    body: &T,
    cookie: Option<&str>,
) -> Result<HttpRequest, KbsClientError> {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(c) = cookie {
        headers.push(("Cookie".into(), format!("{SESSION_COOKIE}={c}")));
    }
    Ok(HttpRequest {
        method: Method::Post,
        path,
        headers,
        body: serde_json::to_vec(body)
            .map_err(|e| KbsClientError::Protocol(format!("serialise request: {e}")))?,
    })
}

/// How a resource request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum ResourceAuth<'a> {
    /// The attested session's cookie (and its token as bearer, which trustee also accepts).
    Session(&'a Session),
    /// A bearer token only (trustee's `get-resource --attestation-token`).
    Bearer(&'a str),
}

/// The `GET /kbs/v0/<plugin>/<path>` request for `uri`.
pub fn resource_request(uri: &ResourceUri, auth: ResourceAuth<'_>) -> HttpRequest {
    let mut headers = Vec::new();
    match auth {
        ResourceAuth::Session(s) => {
            headers.push(("Cookie".into(), format!("{SESSION_COOKIE}={}", s.cookie)));
            headers.push(("Authorization".into(), format!("Bearer {}", s.token)));
        }
        ResourceAuth::Bearer(t) => headers.push(("Authorization".into(), format!("Bearer {t}"))),
    }
    HttpRequest {
        method: Method::Get,
        path: uri.kbs_path(),
        headers,
        body: Vec::new(),
    }
}

/// Decrypt a 200 resource response with `tee_key`, or map the error body.
pub fn decode_resource_response(
    resp: &HttpResponse,
    tee_key: &TeeKeyPair,
) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
    resp.check_ok()?;
    tee_key.decrypt(&resp.body)
}
