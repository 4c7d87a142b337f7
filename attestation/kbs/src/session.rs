//! The bounded session table. A session is created by `/auth` with a fresh nonce;
//! `/attest` consumes the nonce exactly once ([`SessionTable::begin_attest`]): a
//! second attestation on the same session, or one after a failed attempt, is refused.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use attestation::{HashAlgorithm, Tee};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::{OsRng, RngCore};

/// Where a session is in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// `/auth` answered; the nonce is unused.
    Pending,
    /// `/attest` is verifying; the nonce is consumed.
    Verifying,
    /// Attested: the token the session carries.
    Attested {
        /// The signed attestation token.
        token: String,
    },
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// TEE named in the `/auth` request.
    pub tee: Tee,
    /// The challenge nonce (base64 of 32 random bytes).
    pub nonce: String,
    /// Hash for report_data (always SHA-384 for TDX/SNP/sample).
    pub hash: HashAlgorithm,
    /// When the session dies.
    pub expires: Instant,
    /// State.
    pub state: SessionState,
    seq: u64,
}

/// Why a session lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No session with this id (never existed, evicted or removed).
    #[error("session not found")]
    NotFound,
    /// The session expired.
    #[error("session expired")]
    Expired,
    /// The nonce was already used (replayed or concurrent attestation).
    #[error("the session's nonce was already used")]
    NonceUsed,
}

/// Sessions by cookie value, bounded to `max` entries.
#[derive(Debug)]
pub struct SessionTable {
    sessions: HashMap<String, Session>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
    max: usize,
    timeout: Duration,
    evicted: u64,
}

/// 32 random bytes, base64: a nonce.
pub fn make_nonce() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    STANDARD.encode(b)
}

/// 16 random bytes, hex: session ids and temporary names.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl SessionTable {
    /// A table of at most `max` sessions that live `timeout`.
    pub fn new(max: usize, timeout: Duration) -> Self {
        Self {
            sessions: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            max: max.max(1),
            timeout,
            evicted: 0,
        }
    }

    /// Number of live entries (expired ones may still be counted until purged).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Sessions evicted to make room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The session timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn remove(&mut self, id: &str) -> Option<Session> {
        let s = self.sessions.remove(id)?;
        self.order.remove(&s.seq);
        Some(s)
    }

    /// Drop every expired session.
    pub fn purge_expired(&mut self, now: Instant) {
        let dead: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            self.remove(&id);
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.sessions.len() < self.max {
            return;
        }
        self.purge_expired(now);
        // Oldest first: in-flight handshakes are the newest sessions, and an evicted
        // attested client still holds its (bearer) token or simply re-attests.
        while self.sessions.len() >= self.max {
            let victim = self.order.values().next().cloned();
            match victim {
                Some(id) => {
                    self.remove(&id);
                    self.evicted += 1;
                }
                None => break,
            }
        }
    }

    /// Create a pending session with a fresh nonce; returns (id, nonce).
    pub fn create(&mut self, tee: Tee, now: Instant) -> (String, String) {
        self.make_room(now);
        let id = random_id();
        let nonce = make_nonce();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id.clone());
        self.sessions.insert(
            id.clone(),
            Session {
                tee,
                nonce: nonce.clone(),
                hash: HashAlgorithm::Sha384,
                expires: now + self.timeout,
                state: SessionState::Pending,
                seq,
            },
        );
        (id, nonce)
    }

    /// Consume the nonce of a pending session: the session moves to `Verifying`
    /// and a copy is returned. Anything but a live pending session is an error; an
    /// expired session is removed.
    pub fn begin_attest(&mut self, id: &str, now: Instant) -> Result<Session, SessionError> {
        let s = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if s.expires <= now {
            self.remove(id);
            return Err(SessionError::Expired);
        }
        if s.state != SessionState::Pending {
            return Err(SessionError::NonceUsed);
        }
        s.state = SessionState::Verifying;
        Ok(s.clone())
    }

    /// Attestation failed: the session (and its nonce) is gone.
    pub fn fail_attest(&mut self, id: &str) {
        self.remove(id);
    }

    /// Attestation succeeded: store the token. Returns false if the session
    /// vanished meanwhile (evicted or expired).
    pub fn finish_attest(&mut self, id: &str, token: String) -> bool {
        match self.sessions.get_mut(id) {
            Some(s) if s.state == SessionState::Verifying => {
                s.state = SessionState::Attested { token };
                true
            }
            _ => false,
        }
    }

    /// The token of a live attested session.
    pub fn token(&mut self, id: &str, now: Instant) -> Result<String, SessionError> {
        let s = self.sessions.get(id).ok_or(SessionError::NotFound)?;
        if s.expires <= now {
            self.remove(id);
            return Err(SessionError::Expired);
        }
        match &s.state {
            SessionState::Attested { token } => Ok(token.clone()),
            _ => Err(SessionError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_used_once_and_sessions_expire() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(10, Duration::from_secs(60));
        let (id, nonce) = t.create(Tee::Sample, t0);
        assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 32);
        let s = t.begin_attest(&id, t0).unwrap();
        assert_eq!(s.nonce, nonce);
        assert_eq!(
            t.begin_attest(&id, t0).unwrap_err(),
            SessionError::NonceUsed
        );
        assert!(t.finish_attest(&id, "tok".into()));
        assert_eq!(
            t.begin_attest(&id, t0).unwrap_err(),
            SessionError::NonceUsed
        );
        assert_eq!(t.token(&id, t0).unwrap(), "tok");
        assert_eq!(
            t.token(&id, t0 + Duration::from_secs(61)).unwrap_err(),
            SessionError::Expired
        );
        assert_eq!(t.token(&id, t0).unwrap_err(), SessionError::NotFound);

        let (id2, _) = t.create(Tee::Sample, t0);
        assert_eq!(
            t.begin_attest(&id2, t0 + Duration::from_secs(60))
                .unwrap_err(),
            SessionError::Expired
        );
        let (id3, _) = t.create(Tee::Sample, t0);
        t.begin_attest(&id3, t0).unwrap();
        t.fail_attest(&id3);
        assert_eq!(
            t.begin_attest(&id3, t0).unwrap_err(),
            SessionError::NotFound
        );
        assert_ne!(make_nonce(), make_nonce());
    }

    #[test]
    fn table_is_bounded_and_evicts_oldest_first() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(3, Duration::from_secs(60));
        let (a, _) = t.create(Tee::Sample, t0);
        t.begin_attest(&a, t0).unwrap();
        t.finish_attest(&a, "A".into());
        let (b, _) = t.create(Tee::Sample, t0);
        let (c, _) = t.create(Tee::Sample, t0);
        let (d, _) = t.create(Tee::Sample, t0);
        assert_eq!(t.len(), 3);
        // The oldest (a, attested) went; b, c, d (the newest handshakes) stay.
        assert_eq!(t.token(&a, t0).unwrap_err(), SessionError::NotFound);
        for id in [&b, &c, &d] {
            assert!(t.sessions.contains_key(id.as_str()));
        }
        t.begin_attest(&d, t0).unwrap();
        for _ in 0..1000 {
            t.create(Tee::Sample, t0);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 1001);
        // Expired sessions are purged before anything live is evicted.
        let mut t = SessionTable::new(2, Duration::from_secs(1));
        t.create(Tee::Sample, t0);
        t.create(Tee::Sample, t0);
        t.create(Tee::Sample, t0 + Duration::from_secs(5));
        assert_eq!(t.len(), 1);
        assert_eq!(t.evicted(), 0);
    }
}
