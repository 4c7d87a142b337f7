//! Bounded retries with exponential back-off for registry requests.
//!
//! What is retried: `429 Too Many Requests` (with or without an OCI error body, whose code is
//! then `TOOMANYREQUESTS`), `502`, `503`, `504`, and network failures (connection refused or
//! reset, timeouts, a body cut off). Everything else fails at once: `401`, `403`, `404` and
//! other client errors, digest and size mismatches, redirect loops.
//!
//! `Retry-After` is not honoured: `oci-client` 0.18 turns a failed response into an
//! `OciDistributionError` without its headers, so the value never reaches this crate. The
//! delays are therefore only the computed ones, capped by [`RetryPolicy::max_backoff`].

use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::ImageError;
use crate::registry::error_chain;

/// How often and how patiently a registry request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (0 is taken as 1).
    pub attempts: u32,
    /// Delay before the first retry; it doubles for each further retry.
    pub initial_backoff: Duration,
    /// Upper bound of any one delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 0.5 s before the first retry, at most 8 s between two attempts (7.5 s of
    /// waiting in all, less with jitter).
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The nominal delay before retry number `retry` (0 for the first retry):
    /// `initial_backoff * 2^retry`, capped at `max_backoff`. The actual sleep is drawn from
    /// the upper half of it, `[d/2, d]`, so that concurrent downloads told to slow down at the
    /// same moment do not come back in lockstep.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.min(20);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    fn jittered_delay(&self, retry: u32) -> Duration {
        let nominal = self.nominal_delay(retry);
        let half = nominal / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A number in `[0, 1)` that differs between calls (jitter only, not for cryptography).
fn unit_random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    // 53 random bits make an exactly representable fraction.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Why one attempt failed.
pub(crate) enum Failure {
    /// Worth another attempt; the text says what happened (status and URL, or the network
    /// error).
    Transient(String),
    /// Final.
    Fatal(ImageError),
}

/// Counts failed attempts of one request and sleeps between them.
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    what: &'a str,
    failures: u32,
}

impl<'a> Retrier<'a> {
    /// A retrier for the request described by `what` (e.g. `blob sha256:…`).
    pub(crate) fn new(policy: &'a RetryPolicy, what: &'a str) -> Self {
        Self {
            policy,
            what,
            failures: 0,
        }
    }

    /// Record a transient failure: sleep and return `Ok` when another attempt is allowed,
    /// or return [`ImageError::RetriesExhausted`] naming the attempts and `reason`.
    pub(crate) async fn wait(&mut self, reason: String) -> Result<(), ImageError> {
        self.failures += 1;
        if self.failures >= self.policy.attempts.max(1) {
            return Err(ImageError::RetriesExhausted {
                what: self.what.to_owned(),
                attempts: self.failures,
                last: reason,
            });
        }
        let delay = self.policy.jittered_delay(self.failures - 1);
        tracing::warn!(
            what = self.what,
            attempt = self.failures,
            of = self.policy.attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason = %reason,
            "registry request failed, retrying"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The reason text when `e` is worth retrying, `None` when it is final.
pub(crate) fn transient_reason(e: &OciDistributionError) -> Option<String> {
    match e {
        OciDistributionError::ServerError { code, url, message } => {
            let name = retryable_status(*code)?;
            Some(format!(
                "HTTP {code} {name} from {url}{}",
                body_excerpt(message)
            ))
        }
        // oci-client parses the body of a 4xx answer into an envelope and drops the status;
        // the error code tells a 429 apart.
        OciDistributionError::RegistryError { envelope, url }
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::Toomanyrequests) =>
        {
            Some(format!("HTTP 429 Too Many Requests from {url}: {envelope}"))
        }
        // A redirect loop or a malformed request will not get better.
        OciDistributionError::RequestError(r) if r.is_redirect() || r.is_builder() => None,
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            Some(error_chain(e))
        }
        _ => None,
    }
}

fn retryable_status(code: u16) -> Option<&'static str> {
    match code {
        429 => Some("Too Many Requests"),
        502 => Some("Bad Gateway"),
        503 => Some("Service Unavailable"),
        504 => Some("Gateway Timeout"),
        _ => None,
    }
}

/// `: <first 200 characters of the body>`, or nothing for an empty body.
fn body_excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let mut excerpt: String = body.chars().take(200).collect();
    if excerpt.len() < body.len() {
        excerpt.push('…');
    }
    format!(": {excerpt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        let nominal: Vec<u128> = (0..6)
            .map(|r| policy.nominal_delay(r).as_millis())
            .collect();
        assert_eq!(nominal, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.nominal_delay(u32::MAX), Duration::from_millis(1000));
        for retry in 0..6 {
            for _ in 0..50 {
                let d = policy.jittered_delay(retry);
                let n = policy.nominal_delay(retry);
                assert!(d >= n / 2 && d <= n, "{d:?} outside [{:?}, {n:?}]", n / 2);
            }
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| policy.jittered_delay(3)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x/blobs/sha256:00".into(),
            message: "busy".into(),
        }
    }

    fn envelope(code: &str) -> OciDistributionError {
        let body = format!(r#"{{"errors":[{{"code":"{code}","message":"m","detail":null}}]}}"#);
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&body).unwrap(),
            url: "http://r/v2/x/manifests/latest".into(),
        }
    }

    #[test]
    fn only_rate_limits_gateway_errors_and_network_failures_are_transient() {
        for code in [429, 502, 503, 504] {
            let reason = transient_reason(&server(code)).unwrap();
            assert!(reason.starts_with(&format!("HTTP {code} ")), "{reason}");
            assert!(reason.contains("busy"), "{reason}");
        }
        for code in [400, 401, 403, 404, 416, 500, 501] {
            assert!(transient_reason(&server(code)).is_none(), "{code}");
        }
        let reason = transient_reason(&envelope("TOOMANYREQUESTS")).unwrap();
        assert!(reason.contains("429 Too Many Requests"), "{reason}");
        for code in ["DENIED", "UNAUTHORIZED", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"] {
            assert!(transient_reason(&envelope(code)).is_none(), "{code}");
        }
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(transient_reason(&OciDistributionError::IoError(reset)).is_some());
        assert!(
            transient_reason(&OciDistributionError::UnauthorizedError { url: "u".into() })
                .is_none()
        );
    }

    #[tokio::test]
    async fn retrier_gives_up_after_the_configured_attempts() {
        let policy = RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let mut retrier = Retrier::new(&policy, "blob b");
        assert!(retrier.wait("one".into()).await.is_ok());
        assert!(retrier.wait("two".into()).await.is_ok());
        let err = retrier.wait("HTTP 503 three".into()).await.unwrap_err();
        assert!(matches!(
            err,
            ImageError::RetriesExhausted { attempts: 3, .. }
        ));
        assert_eq!(
            err.to_string(),
            "blob b: giving up after 3 attempts; last error: HTTP 503 three"
        );
        let once = RetryPolicy {
            attempts: 0,
            ..policy
        };
        let mut retrier = Retrier::new(&once, "m");
        assert!(retrier.wait("x".into()).await.is_err());
    }
}
