//! The bounded session table. A session is created by `/auth` with a fresh nonce;
//! `/attest` consumes the nonce exactly once ([`SessionTable::begin_attest`]): a
//! second attestation on the same session, or one after a failed attempt, is refused.
//!
//! # Bound and eviction
//!
//! The table holds at most `max` sessions ([`crate::KbsConfig::max_sessions`]). When
//! `/auth` finds it full, room is made in this order:
//!
//! 1. every **expired** session is purged (whatever its state);
//! 2. otherwise the oldest **Pending** session (an `/auth` whose nonce is still unused,
//!    i.e. a client that has proven nothing) is evicted;
//! 3. only when no Pending session exists, the oldest **Attested** session is evicted,
//!    and only when none of those exists either, the oldest **Verifying** one (an
//!    `/attest` in progress, whose verification work would be wasted).
//!
//! So an unauthenticated `/auth` flood only ever displaces other unauthenticated
//! handshakes: it cannot evict a session that presented valid evidence. Step 3 evicts
//! rather than refusing the new `/auth` (a 503) because a table full of attested
//! sessions is legitimate load, not an attack — only valid evidence makes a session
//! Attested — and refusing would lock every new guest out until sessions expire,
//! whereas an evicted attested guest still holds its token (bearer access) or
//! re-attests after the 401. What a flood can still do is displace *other Pending*
//! handshakes (a guest between its `/auth` and its `/attest`); rate-limit `/auth` in
//! front of the KBS to protect those.
//!
//! Every session lives the same `timeout`, so creation order is expiry order. Each
//! state keeps its own queue ordered by (expiry, creation sequence): purging and
//! choosing a victim cost O(log n) per removed session, never a scan of the table.

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

/// The eviction queues, in eviction order (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Pending = 0,
    Attested = 1,
    Verifying = 2,
}

const EVICTION_ORDER: [Queue; 3] = [Queue::Pending, Queue::Attested, Queue::Verifying];

impl SessionState {
    fn queue(&self) -> Queue {
        match self {
            Self::Pending => Queue::Pending,
            Self::Verifying => Queue::Verifying,
            Self::Attested { .. } => Queue::Attested,
        }
    }
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

impl Session {
    fn key(&self) -> QueueKey {
        (self.expires, self.seq)
    }
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

/// (expiry, creation sequence): unique, and ordered oldest first.
type QueueKey = (Instant, u64);

/// Sessions by cookie value, bounded to `max` entries.
#[derive(Debug)]
pub struct SessionTable {
    sessions: HashMap<String, Session>,
    /// Session ids per [`Queue`], oldest first.
    queues: [BTreeMap<QueueKey, String>; 3],
    next_seq: u64,
    max: usize,
    timeout: Duration,
    /// Evictions per [`Queue`].
    evicted: [u64; 3],
    high_water: usize,
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
            queues: Default::default(),
            next_seq: 0,
            max: max.max(1),
            timeout,
            evicted: [0; 3],
            high_water: 0,
        }
    }

    /// Number of entries (expired ones are counted until purged).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The most entries the table has ever held (never above [`Self::max`]).
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Pending sessions (nonce unused).
    pub fn pending(&self) -> usize {
        self.queues[Queue::Pending as usize].len()
    }

    /// Attested sessions.
    pub fn attested(&self) -> usize {
        self.queues[Queue::Attested as usize].len()
    }

    /// Sessions evicted to make room so far (expired ones purged are not counted).
    pub fn evicted(&self) -> u64 {
        self.evicted.iter().sum()
    }

    /// Evicted sessions that were Attested or Verifying (step 3 of the policy).
    pub fn evicted_attested(&self) -> u64 {
        self.evicted[Queue::Attested as usize] + self.evicted[Queue::Verifying as usize]
    }

    /// The session timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn remove(&mut self, id: &str) -> Option<Session> {
        let s = self.sessions.remove(id)?;
        self.queues[s.state.queue() as usize].remove(&s.key());
        Some(s)
    }

    /// Move `id` to `state`, keeping the queues in step. False if there is no such session.
    fn set_state(&mut self, id: &str, state: SessionState) -> bool {
        let Some(s) = self.sessions.get_mut(id) else {
            return false;
        };
        let (from, to) = (s.state.queue(), state.queue());
        s.state = state;
        if from != to {
            let key = s.key();
            if let Some(v) = self.queues[from as usize].remove(&key) {
                self.queues[to as usize].insert(key, v);
            }
        }
        true
    }

    /// Drop every expired session.
    pub fn purge_expired(&mut self, now: Instant) {
        for queue in &mut self.queues {
            while let Some(entry) = queue.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let id = entry.remove();
                self.sessions.remove(&id);
            }
        }
    }

    fn make_room(&mut self, now: Instant) {
        if self.sessions.len() < self.max {
            return;
        }
        self.purge_expired(now);
        while self.sessions.len() >= self.max {
            let victim = EVICTION_ORDER
                .iter()
                .find_map(|&q| self.queues[q as usize].pop_first().map(|(_, id)| (q, id)));
            let Some((queue, id)) = victim else { break };
            self.sessions.remove(&id);
            self.evicted[queue as usize] += 1;
        }
    }

    /// Create a pending session with a fresh nonce; returns (id, nonce).
    pub fn create(&mut self, tee: Tee, now: Instant) -> (String, String) {
        self.make_room(now);
        let id = random_id();
        let nonce = make_nonce();
        let seq = self.next_seq;
        self.next_seq += 1;
        let session = Session {
            tee,
            nonce: nonce.clone(),
            hash: HashAlgorithm::Sha384,
            expires: now + self.timeout,
            state: SessionState::Pending,
            seq,
        };
        self.queues[Queue::Pending as usize].insert(session.key(), id.clone());
        self.sessions.insert(id.clone(), session);
        self.high_water = self.high_water.max(self.sessions.len());
        (id, nonce)
    }

    /// Consume the nonce of a pending session: the session moves to `Verifying`
    /// and a copy is returned. Anything but a live pending session is an error; an
    /// expired session is removed.
    pub fn begin_attest(&mut self, id: &str, now: Instant) -> Result<Session, SessionError> {
        let s = self.sessions.get(id).ok_or(SessionError::NotFound)?;
        if s.expires <= now {
            self.remove(id);
            return Err(SessionError::Expired);
        }
        if s.state != SessionState::Pending {
            return Err(SessionError::NonceUsed);
        }
        let mut copy = s.clone();
        copy.state = SessionState::Verifying;
        self.set_state(id, SessionState::Verifying);
        Ok(copy)
    }

    /// Attestation failed: the session (and its nonce) is gone.
    pub fn fail_attest(&mut self, id: &str) {
        self.remove(id);
    }

    /// Attestation succeeded: store the token. Returns false if the session
    /// vanished meanwhile (evicted or expired).
    pub fn finish_attest(&mut self, id: &str, token: String) -> bool {
        let verifying = matches!(
            self.sessions.get(id),
            Some(s) if s.state == SessionState::Verifying
        );
        verifying && self.set_state(id, SessionState::Attested { token })
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
mod tests;
