//! Load: 1,000 concurrent sessions against cocoon-kbs on 127.0.0.1 (at most 64 in
//! flight, so a 2-core box survives). Half the clients send evidence over a wrong
//! report_data: none of them may get the secret. The session table stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use kbs_client::{KbsErrorType, ResourceUri};
use tokio::sync::Semaphore;

const SESSIONS: usize = 1000;
const IN_FLIGHT: usize = 64;
const MAX_SESSIONS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_sessions() {
    let kbs = start(true, |c| c.max_sessions = MAX_SESSIONS).await;
    kbs.put_resource("load/key/k", b"load secret");
    let url = kbs.url();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for i in 0..SESSIONS {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let valid = i % 2 == 0;
            let mut c = if valid {
                sample_client(&url)
            } else {
                wrong_report_data_client(&url)
            };
            let r = c
                .get_resource(&ResourceUri::parse("kbs:///load/key/k").unwrap())
                .await;
            drop(permit);
            (valid, r)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (valid, r) = t.await.unwrap();
        match r {
            Ok(secret) => {
                assert!(valid, "secret released to invalid evidence");
                assert_eq!(secret.as_slice(), b"load secret");
                ok += 1;
            }
            Err(e) => {
                assert!(!valid, "valid client failed: {e}");
                assert_eq!(
                    e.kbs_error_type(),
                    Some(&KbsErrorType::AttestationError),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (SESSIONS / 2, SESSIONS / 2));
    let stats = &kbs.server.state.stats;
    assert_eq!(
        stats.released.load(Ordering::Relaxed),
        (SESSIONS / 2) as u64
    );
    assert_eq!(
        stats.attest_ok.load(Ordering::Relaxed),
        (SESSIONS / 2) as u64
    );
    // Each invalid client's one attestation was refused (and its session dropped).
    assert_eq!(
        stats.attest_fail.load(Ordering::Relaxed),
        (SESSIONS / 2) as u64
    );
    // Memory bound: the session table never exceeds its configured size.
    {
        let sessions = kbs.server.state.sessions();
        assert!(
            sessions.len() <= MAX_SESSIONS,
            "{} sessions",
            sessions.len()
        );
        assert!(sessions.evicted() > 0, "the bound was exercised");
    }
    // The server still answers.
    let mut c = kbs.client();
    assert!(
        c.get_resource(&ResourceUri::parse("kbs:///load/key/k").unwrap())
            .await
            .is_ok()
    );
}
