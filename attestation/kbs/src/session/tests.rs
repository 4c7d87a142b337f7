#![allow(clippy::unwrap_used)]

use super::*;

impl SessionTable {
    /// Every index entry names a session in that state, and every session is indexed once.
    fn check_invariants(&self) {
        assert!(self.len() <= self.max, "{} > max {}", self.len(), self.max);
        assert!(self.high_water <= self.max);
        let indexed: usize = self.queues.iter().map(BTreeMap::len).sum();
        assert_eq!(
            indexed,
            self.sessions.len(),
            "queues out of step with the map"
        );
        for (q, queue) in self.queues.iter().enumerate() {
            for (key, id) in queue {
                let s = &self.sessions[id];
                assert_eq!(s.state.queue() as usize, q, "{id} in the wrong queue");
                assert_eq!(s.key(), *key);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }
}

/// A session carried through a successful attestation.
fn attested(t: &mut SessionTable, now: Instant, token: &str) -> String {
    let (id, _) = t.create(Tee::Sample, now);
    t.begin_attest(&id, now).unwrap();
    assert!(t.finish_attest(&id, token.into()));
    id
}

#[test]
fn nonce_is_used_once_and_sessions_expire() {
    let t0 = Instant::now();
    let mut t = SessionTable::new(10, Duration::from_secs(60));
    let (id, nonce) = t.create(Tee::Sample, t0);
    assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 32);
    let s = t.begin_attest(&id, t0).unwrap();
    assert_eq!(s.nonce, nonce);
    assert_eq!(s.state, SessionState::Verifying);
    assert_eq!(
        t.begin_attest(&id, t0).unwrap_err(),
        SessionError::NonceUsed
    );
    assert!(t.finish_attest(&id, "tok".into()));
    assert!(!t.finish_attest(&id, "again".into()), "only from Verifying");
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
    t.check_invariants();
    assert!(t.is_empty());
}

#[test]
fn auth_flood_does_not_evict_attested_sessions() {
    let t0 = Instant::now();
    let mut t = SessionTable::new(10, Duration::from_secs(300));
    let a1 = attested(&mut t, t0, "A1");
    let a2 = attested(&mut t, t0, "A2");
    let (v, _) = t.create(Tee::Sample, t0);
    t.begin_attest(&v, t0).unwrap();
    // 10,000 unauthenticated /auth: only Pending sessions are displaced.
    for i in 0..10_000u64 {
        t.create(Tee::Sample, t0 + Duration::from_millis(i));
        assert!(t.len() <= 10);
    }
    t.check_invariants();
    assert_eq!(t.len(), 10);
    assert_eq!(t.pending(), 7);
    assert_eq!(t.evicted(), 10_000 - 7);
    assert_eq!(t.evicted_attested(), 0);
    let now = t0 + Duration::from_secs(11);
    assert_eq!(t.token(&a1, now).unwrap(), "A1");
    assert_eq!(t.token(&a2, now).unwrap(), "A2");
    // The in-flight attestation survived too and can complete.
    assert!(t.finish_attest(&v, "V".into()));
    assert_eq!(t.token(&v, now).unwrap(), "V");
}

#[test]
fn pending_evicted_oldest_first_then_attested_then_verifying() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut t = SessionTable::new(3, Duration::from_secs(300));
    let (p1, _) = t.create(Tee::Sample, t0);
    let (p2, _) = t.create(Tee::Sample, t0 + s);
    let (p3, _) = t.create(Tee::Sample, t0 + 2 * s);
    let (p4, _) = t.create(Tee::Sample, t0 + 3 * s);
    assert!(!t.contains(&p1), "oldest pending goes first");
    assert!(t.contains(&p2) && t.contains(&p3) && t.contains(&p4));
    // An attested session older than every pending one is still not the victim.
    let mut t = SessionTable::new(3, Duration::from_secs(300));
    let a = attested(&mut t, t0, "A");
    let (q1, _) = t.create(Tee::Sample, t0 + s);
    let (q2, _) = t.create(Tee::Sample, t0 + 2 * s);
    t.create(Tee::Sample, t0 + 3 * s);
    assert!(t.contains(&a) && !t.contains(&q1) && t.contains(&q2));
    assert_eq!(t.evicted_attested(), 0);

    // No Pending left: the oldest Attested goes; Verifying only when nothing else is left.
    let mut t = SessionTable::new(3, Duration::from_secs(300));
    let (v, _) = t.create(Tee::Sample, t0);
    t.begin_attest(&v, t0).unwrap();
    let b1 = attested(&mut t, t0 + s, "B1");
    let b2 = attested(&mut t, t0 + 2 * s, "B2");
    let (n, _) = t.create(Tee::Sample, t0 + 3 * s);
    assert!(t.contains(&v), "the older Verifying session is kept");
    assert!(!t.contains(&b1) && t.contains(&b2) && t.contains(&n));
    assert_eq!(t.evicted_attested(), 1);
    // Now there is a Pending session again: it is the next victim, not b2.
    let (n2, _) = t.create(Tee::Sample, t0 + 4 * s);
    assert!(!t.contains(&n) && t.contains(&b2) && t.contains(&n2));
    assert_eq!(t.evicted_attested(), 1);
    t.check_invariants();

    let mut t = SessionTable::new(1, Duration::from_secs(300));
    let (v, _) = t.create(Tee::Sample, t0);
    t.begin_attest(&v, t0).unwrap();
    t.create(Tee::Sample, t0 + s);
    assert!(
        !t.contains(&v),
        "the bound holds even against Verifying sessions"
    );
    assert!(!t.finish_attest(&v, "late".into()));
    assert_eq!(t.len(), 1);
    t.check_invariants();
}

#[test]
fn expired_sessions_are_purged_before_anything_is_evicted() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut t = SessionTable::new(3, Duration::from_secs(10));
    let old_attested = attested(&mut t, t0, "old");
    let (p1, _) = t.create(Tee::Sample, t0 + s);
    let (p2, _) = t.create(Tee::Sample, t0 + 2 * s);
    // At t0+10.5 only the attested session has expired: it is purged, and the two live
    // pending sessions stay although pending sessions are normally evicted first.
    let (p3, _) = t.create(Tee::Sample, t0 + Duration::from_millis(10_500));
    assert!(!t.contains(&old_attested));
    assert!(t.contains(&p1) && t.contains(&p2) && t.contains(&p3));
    assert_eq!(t.evicted(), 0, "a purge is not an eviction");
    t.check_invariants();

    // Everything expired (several states at once): all purged, nothing evicted.
    let mut t = SessionTable::new(4, Duration::from_secs(10));
    attested(&mut t, t0, "a");
    let (v, _) = t.create(Tee::Sample, t0);
    t.begin_attest(&v, t0).unwrap();
    t.create(Tee::Sample, t0);
    t.create(Tee::Sample, t0);
    let late = t0 + Duration::from_secs(20);
    let (fresh, _) = t.create(Tee::Sample, late);
    assert_eq!(t.len(), 1);
    assert!(t.contains(&fresh));
    assert_eq!(t.evicted(), 0);
    t.check_invariants();
    // Below the bound nothing is purged eagerly; purge_expired does it on demand.
    let mut t = SessionTable::new(10, Duration::from_secs(1));
    t.create(Tee::Sample, t0);
    t.create(Tee::Sample, t0 + Duration::from_secs(5));
    assert_eq!(t.len(), 2);
    t.purge_expired(t0 + Duration::from_secs(5));
    assert_eq!(t.len(), 1);
    t.check_invariants();
}

#[test]
fn bound_is_never_exceeded_under_a_random_mix() {
    // Deterministic LCG: creates, attests (ok and failed), lookups and time steps.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let t0 = Instant::now();
    let mut now = t0;
    let mut t = SessionTable::new(50, Duration::from_secs(30));
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..20_000 {
        match next() % 10 {
            0..=3 => ids.push(t.create(Tee::Sample, now).0),
            4 | 5 => {
                if let Some(id) = ids.get(next() as usize % ids.len().max(1)) {
                    let _ = t.begin_attest(id, now);
                }
            }
            6 => {
                if let Some(id) = ids.get(next() as usize % ids.len().max(1)) {
                    t.finish_attest(id, "tok".into());
                }
            }
            7 => {
                if let Some(id) = ids.get(next() as usize % ids.len().max(1)) {
                    t.fail_attest(id);
                }
            }
            8 => {
                if let Some(id) = ids.get(next() as usize % ids.len().max(1)) {
                    let _ = t.token(id, now);
                }
            }
            _ => now += Duration::from_millis(next() % 500),
        }
        assert!(t.len() <= 50);
        if ids.len() > 500 {
            ids.drain(..250);
        }
    }
    t.check_invariants();
    assert_eq!(t.high_water(), 50);
    assert!(t.evicted() > 0, "the bound was exercised");
}
