//! HTTP front end (hyper 1, HTTP/1.1) and request handlers.
//!
//! Routes (prefix `/kbs/v0`): `POST auth`, `POST attest`, `GET resource/<r>/<t>/<g>`,
//! admin `POST resource/<r>/<t>/<g>`, `DELETE resource/<r>/<t>/<g>`, `POST resource-policy`, `POST attestation-policy`;
//! plus `GET /healthz`. Anything else under the prefix is `PluginNotFound` (404).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use kbs_client::protocol::{KBS_PREFIX, KBS_PROTOCOL_VERSION, SESSION_COOKIE};
use kbs_types::Attestation;
use serde_json::{Value, json};

use crate::appraisal::{ear_claims, tee_pubkey_of};
use crate::resources::ResourcePath;
use crate::session::SessionError;
use crate::{KbsError, KbsState};

type Resp = Response<Full<Bytes>>;

/// Rule the resource policy must define.
pub const RESOURCE_POLICY_RULE: &str = "data.policy.allow";

fn json_response(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &KbsError) -> Resp {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    tracing::info!(status = status.as_u16(), error = %e, "request refused");
    json_response(status, e.body())
}

fn session_cookie_header(id: &str, max_age: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Max-Age={}; Path={KBS_PREFIX}; HttpOnly",
        max_age.as_secs()
    ))
    .ok()
}

fn request_cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == SESSION_COOKIE).then(|| v.to_string())
        })
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, KbsError> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| KbsError::PayloadTooLarge(limit))
}

/// Serve one request.
pub async fn handle(state: Arc<KbsState>, req: Request<Incoming>) -> Result<Resp, hyper::Error> {
    let path = req.uri().path().to_string();
    if path == "/healthz" && req.method() == Method::GET {
        return Ok(json_response(StatusCode::OK, "{\"status\":\"ok\"}".into()));
    }
    let result = match path
        .strip_prefix(KBS_PREFIX)
        .and_then(|p| p.strip_prefix('/'))
    {
        Some(rest) => route(&state, req, rest.to_string()).await,
        None => Err(KbsError::InvalidRequestPath(path.clone())),
    };
    Ok(result.unwrap_or_else(|e| error_response(&e)))
}

async fn route(
    state: &Arc<KbsState>,
    req: Request<Incoming>,
    rest: String,
) -> Result<Resp, KbsError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let plugin = parts.first().copied().unwrap_or_default();
    let sub: Vec<&str> = parts.iter().skip(1).copied().collect();
    let method = req.method().clone();
    match (plugin, &method) {
        ("auth", &Method::POST) if sub.is_empty() => auth(state, req).await,
        ("attest", &Method::POST) if sub.is_empty() => attest(state, req).await,
        ("resource-policy", &Method::POST) if sub.is_empty() => {
            state.check_admin(bearer(&req).as_deref())?;
            set_resource_policy(state, req).await
        }
        ("attestation-policy", &Method::POST) if sub.is_empty() => {
            state.check_admin(bearer(&req).as_deref())?;
            set_attestation_policy(state, req).await
        }
        ("resource", &Method::POST) => {
            state.check_admin(bearer(&req).as_deref())?;
            let path = ResourcePath::new(&sub)?;
            let body = read_body(req, state.config.max_request_bytes).await?;
            state.resources.write(&path, &body)?;
            tracing::info!(resource = %path.joined(), bytes = body.len(), "resource set");
            Ok(json_response(StatusCode::OK, String::new()))
        }
        ("resource", &Method::DELETE) => {
            state.check_admin(bearer(&req).as_deref())?;
            let path = ResourcePath::new(&sub)?;
            if !state.resources.delete(&path)? {
                return Err(KbsError::ResourceNotFound(path.joined()));
            }
            tracing::info!(resource = %path.joined(), "resource deleted");
            Ok(json_response(StatusCode::OK, String::new()))
        }
        ("resource", &Method::GET) => {
            let path = ResourcePath::new(&sub)?;
            get_resource(state, &req, &path).await
        }
        _ => Err(KbsError::PluginNotFound(format!("{plugin} ({method})"))),
    }
}

async fn auth(state: &Arc<KbsState>, req: Request<Incoming>) -> Result<Resp, KbsError> {
    state.stats.auth.fetch_add(1, Ordering::Relaxed);
    let body = read_body(req, state.config.max_request_bytes).await?;
    let request: kbs_types::Request = serde_json::from_slice(&body)
        .map_err(|e| KbsError::Attestation(format!("deserialize Request: {e}")))?;
    if request.version != KBS_PROTOCOL_VERSION {
        return Err(KbsError::Attestation(format!(
            "KBS Client Protocol Version Mismatch: expect ={KBS_PROTOCOL_VERSION} while the request is {}",
            request.version
        )));
    }
    let tee = attestation::Tee::try_from(request.tee)
        .map_err(|e| KbsError::Attestation(e.to_string()))?;
    let (id, nonce) = state.sessions().create(tee, Instant::now());
    let challenge = kbs_types::Challenge {
        nonce,
        extra_params: Value::String(String::new()),
    };
    let mut resp = json_response(
        StatusCode::OK,
        serde_json::to_string(&challenge).map_err(|e| KbsError::Serde(e.to_string()))?,
    );
    if let Some(c) = session_cookie_header(&id, state.session_timeout()) {
        resp.headers_mut().insert(SET_COOKIE, c);
    }
    Ok(resp)
}

async fn attest(state: &Arc<KbsState>, req: Request<Incoming>) -> Result<Resp, KbsError> {
    let id = request_cookie(&req)
        .ok_or_else(|| KbsError::Attestation(format!("no {SESSION_COOKIE} cookie")))?;
    let body = read_body(req, state.config.max_request_bytes).await?;
    // The nonce is consumed before the body is even parsed: one attempt per nonce.
    let session = state
        .sessions()
        .begin_attest(&id, Instant::now())
        .map_err(|e: SessionError| KbsError::Attestation(e.to_string()))?;
    let result = verify_and_sign(state, &session, &body).await;
    match result {
        Ok((token, claims_json)) => {
            if !state.sessions().finish_attest(&id, token.clone()) {
                return Err(KbsError::Attestation(
                    "session vanished during attestation".into(),
                ));
            }
            state.stats.attest_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(tee = %session.tee, "attestation accepted");
            tracing::debug!(claims = %claims_json, "token claims");
            let mut resp = json_response(StatusCode::OK, json!({ "token": token }).to_string());
            if let Some(c) = session_cookie_header(&id, state.session_timeout()) {
                resp.headers_mut().insert(SET_COOKIE, c);
            }
            Ok(resp)
        }
        Err(e) => {
            state.sessions().fail_attest(&id);
            state.stats.attest_fail.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// Verify, appraise against reference values, grade with the attestation policy, sign.
async fn verify_and_sign(
    state: &Arc<KbsState>,
    session: &crate::session::Session,
    body: &[u8],
) -> Result<(String, Value), KbsError> {
    let attestation: Attestation = serde_json::from_slice(body)
        .map_err(|e| KbsError::Attestation(format!("deserialize Attestation: {e}")))?;
    let _slot = state
        .verify_slots
        .acquire()
        .await
        .map_err(|e| KbsError::Attestation(format!("verifier: {e}")))?;
    let st = state.clone();
    let (tee, nonce, hash) = (session.tee, session.nonce.clone(), session.hash);
    tokio::task::spawn_blocking(move || {
        let appraised = st.appraiser.appraise(tee, &nonce, hash, &attestation)?;
        let evidence = appraised.annotated_evidence(&attestation);
        let policy = st.attestation_policies().for_attestation();
        let graded = policy
            .appraise(&evidence, &st.appraiser.policy_data(&appraised))
            .map_err(|e| KbsError::Attestation(e.to_string()))?;
        if !graded.status.issues_token() {
            st.stats
                .attest_policy_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(KbsError::Attestation(format!(
                "attestation policy {} (sha256 {}) appraised the evidence as {}: {}",
                graded.policy_id,
                graded.policy_digest,
                graded.status.as_str(),
                graded.vector_json()
            )));
        }
        tracing::debug!(
            policy_id = %graded.policy_id,
            status = graded.status.as_str(),
            "attestation policy appraisal"
        );
        let claims = ear_claims(
            &graded,
            evidence,
            kbs_client::jws::now_unix(),
            st.config.token_lifetime_secs as i64,
        );
        let token = st
            .token_key
            .sign_jwt(&claims)
            .map_err(|e| KbsError::Attestation(e.to_string()))?;
        Ok((token, claims))
    })
    .await
    .map_err(|e| KbsError::Attestation(format!("verifier task: {e}")))?
}

async fn get_resource(
    state: &Arc<KbsState>,
    req: &Request<Incoming>,
    path: &ResourcePath,
) -> Result<Resp, KbsError> {
    // The session's token first (trustee's order), then a bearer token.
    let from_session =
        request_cookie(req).and_then(|id| state.sessions().token(&id, Instant::now()).ok());
    let token = from_session
        .or_else(|| bearer(req))
        .ok_or(KbsError::TokenNotFound)?;
    let claims = state
        .token_key
        .verifying_key()
        .verify_jwt(&token, kbs_client::jws::now_unix())
        .map_err(|e| KbsError::TokenVerifier(e.to_string()))?;
    let data = json!({
        "plugin": "resource",
        "resource-path": &path.0,
        "query": {},
    });
    let policy = state.resource_policy();
    let allowed = match policy.evaluate_bool(RESOURCE_POLICY_RULE, &claims, &data) {
        Ok(b) => b,
        Err(policy::PolicyError::Undefined { .. }) => false,
        Err(e) => return Err(KbsError::PolicyDeny(e.to_string())),
    };
    if !allowed {
        state.stats.policy_denied.fetch_add(1, Ordering::Relaxed);
        return Err(KbsError::PolicyDeny(format!(
            "resource {} refused by policy {}",
            path.joined(),
            policy.digest()
        )));
    }
    let tee_pubkey = tee_pubkey_of(&claims)?;
    let bytes = state
        .resources
        .read(path, state.config.max_request_bytes)?
        .ok_or_else(|| KbsError::ResourceNotFound(path.joined()))?;
    let jwe =
        kbs_client::jwe::encrypt(&tee_pubkey, &bytes).map_err(|e| KbsError::Jwe(e.to_string()))?;
    state.stats.released.fetch_add(1, Ordering::Relaxed);
    tracing::info!(resource = %path.joined(), "resource released");
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_string(&jwe).map_err(|e| KbsError::Serde(e.to_string()))?,
    ))
}

fn b64url_field(body: &[u8], field: &str) -> Result<Vec<u8>, KbsError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| KbsError::ParsePolicy(format!("request is not JSON: {e}")))?;
    let text = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KbsError::ParsePolicy(format!("no string `{field}` field")))?;
    B64URL
        .decode(text.trim_end_matches('='))
        .map_err(|e| KbsError::ParsePolicy(format!("`{field}` is not base64url: {e}")))
}

async fn set_resource_policy(
    state: &Arc<KbsState>,
    req: Request<Incoming>,
) -> Result<Resp, KbsError> {
    let body = read_body(req, state.config.max_request_bytes).await?;
    let rego = String::from_utf8(b64url_field(&body, "policy")?)
        .map_err(|_| KbsError::ParsePolicy("policy is not UTF-8".into()))?;
    let policy = policy::Policy::from_rego("resource-policy", &rego)
        .map_err(|e| KbsError::ParsePolicy(e.to_string()))?;
    tracing::info!(digest = policy.digest(), "resource policy replaced");
    state.set_resource_policy(policy);
    Ok(json_response(StatusCode::OK, String::new()))
}

async fn set_attestation_policy(
    state: &Arc<KbsState>,
    req: Request<Incoming>,
) -> Result<Resp, KbsError> {
    let body = read_body(req, state.config.max_request_bytes).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| KbsError::ParsePolicy(format!("request is not JSON: {e}")))?;
    let id = v
        .get("policy_id")
        .and_then(Value::as_str)
        .unwrap_or(crate::attestation_policy::DEFAULT_POLICY_ID)
        .to_string();
    let policy_type = v.get("type").and_then(Value::as_str).unwrap_or("rego");
    if policy_type != "rego" {
        return Err(KbsError::ParsePolicy(format!(
            "policy type {policy_type:?} (expected rego)"
        )));
    }
    let text = String::from_utf8(b64url_field(&body, "policy")?)
        .map_err(|_| KbsError::ParsePolicy("policy is not UTF-8".into()))?;
    // Compiled and checked (`package policy`) before it replaces anything; evaluated
    // on every /attest when stored as `default` (see crate::attestation_policy).
    state.store_attestation_policy(&id, &text)?;
    Ok(json_response(StatusCode::OK, String::new()))
}
