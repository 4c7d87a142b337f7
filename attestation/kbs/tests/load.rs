//! Load: "1,000 concurrent sessions against cocoon-kbs: no secret released without
//! valid evidence, no crash, memory bounded", on 127.0.0.1, 2 worker threads.
//!
//! One wave:
//! 1. **open**: 1,000 clients each run `/auth` and prepare their evidence, then wait on
//!    a barrier: all 1,000 sessions are open (Pending) in the table at the same time;
//! 2. **attest**: released together, all 1,000 `/attest` at once — half over a wrong
//!    report_data, which must be refused with AttestationError — and each attested
//!    client fetches the secret with its session cookie alone; each refused one tries
//!    its dead cookie and gets TokenNotFound;
//! 3. **flood**: 5,000 unauthenticated `/auth` (128 in flight, never attested) against a
//!    table bounded to 1,500 while the 500 attested clients keep fetching by cookie:
//!    the flood evicts only Pending sessions, every attested session survives it.
//!
//! Memory: the table never holds more than `max_sessions` (its high-water mark), and
//! the wave runs twice. After each wave the clients are dropped and the table emptied,
//! so both measuring points hold the same server state; the second wave must then add
//! less than [`HEAP_GROWTH_BOUND`] of live heap (a counting global allocator: measured
//! ~1 KiB) and less than [`RSS_GROWTH_BOUND`] of VmRSS (measured 1–3 MiB). A wave
//! creates 6,000 sessions and ~8,000 requests: leaking ≥ 90 bytes per session created
//! (e.g. a stale index entry) adds > 512 KiB; keeping the 500 attested sessions' tokens
//! (~1.5 KB each) adds ~735 KB — checked by mutation: that leak fails this test; a
//! leaked connection (hyper buffers, task) costs tens of KiB each, over both bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attestation::Tee;
use attestation::attester::Attester;
use attestation::attester::sample::SampleAttester;
use common::*;
use kbs_client::protocol::{Handshake, HttpRequest, Method, decode_resource_response};
use kbs_client::{HttpTransport, KbsClientError, KbsErrorType, TeeKeyAlgorithm, TeeKeyPair};
use tokio::sync::{Barrier, Semaphore};

const SESSIONS: usize = 1000;
const MAX_SESSIONS: usize = 1500;
const FLOOD: usize = 5000;
const FLOOD_IN_FLIGHT: usize = 128;
const SECRET: &[u8] = b"load secret";
/// Live-heap growth allowed for the second wave (see the module documentation).
const HEAP_GROWTH_BOUND: isize = 512 * 1024;
/// VmRSS growth allowed for the second wave (after `malloc_trim`): a coarse check,
/// ~1–3 MiB of allocator and thread-stack noise measured; leaked connections (hyper
/// buffers, sockets, tasks: tens of KiB each, 1,000+ per wave) break it.
const RSS_GROWTH_BOUND: u64 = 8 * 1024 * 1024;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicIsize = AtomicIsize::new(0);

fn grew(by: usize) {
    let now = LIVE_BYTES.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (i.e. `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// VmRSS of this process in bytes, after returning free heap pages to the kernel
/// (glibc keeps freed memory mapped; without the trim VmRSS mostly measures
/// fragmentation of the arenas the 2 + N threads happened to use, not what is live).
fn vm_rss() -> u64 {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Client and server sockets of ~1,100 connections live in this process: make sure
/// the soft RLIMIT_NOFILE allows them (raised up to the hard limit if needed).
fn ensure_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= need {
        return;
    }
    assert!(
        lim.rlim_max >= need,
        "RLIMIT_NOFILE hard limit {} < {need}: raise it to run the load test",
        lim.rlim_max
    );
    lim.rlim_cur = need;
    // SAFETY: setrlimit only reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

fn cookie_get(cookie: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        path: "/kbs/v0/resource/load/key/k".into(),
        headers: vec![("Cookie".into(), format!("kbs-session-id={cookie}"))],
        body: Vec::new(),
    }
}

/// Fetch the secret with the session cookie only (no bearer token): proves the
/// session is still in the table.
async fn fetch(
    t: &HttpTransport,
    cookie: &str,
    key: &TeeKeyPair,
) -> Result<Vec<u8>, KbsClientError> {
    let resp = t.send(&cookie_get(cookie)).await?;
    decode_resource_response(&resp, key).map(|s| s.to_vec())
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Attested {
    cookie: String,
    key: TeeKeyPair,
}

/// One wave (phases 1–3); returns the number of secrets released.
async fn wave(kbs: &TestKbs, n: usize) -> u64 {
    let started = Instant::now();
    PEAK_BYTES.store(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
    let state = &kbs.server.state;
    let transport = HttpTransport::new(&kbs.url(), &[]).unwrap();
    let released = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(Barrier::new(SESSIONS + 1));
    let go = Arc::new(Barrier::new(SESSIONS + 1));
    let mut tasks = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let (t, opened, go, released) = (
            transport.clone(),
            opened.clone(),
            go.clone(),
            released.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let valid = i % 2 == 0;
            let key = TeeKeyPair::generate(TeeKeyAlgorithm::EcP256).unwrap();
            let mut hs = Handshake::new(Tee::Sample, None);
            let auth = t.send(&hs.auth_request().unwrap()).await.unwrap();
            let cookie = kbs_client::protocol::session_cookie(&auth).unwrap();
            let attest = {
                let attester: &dyn Attester = if valid {
                    &SampleAttester
                } else {
                    &WrongReportData
                };
                hs.on_auth_response(&auth, attester, &key).unwrap()
            };
            opened.wait().await;
            go.wait().await;
            let resp = t.send(&attest).await.unwrap();
            match hs.on_attest_response(&resp) {
                Ok(session) => {
                    assert!(valid, "token issued for a wrong report_data");
                    let secret = fetch(&t, &session.cookie, &key).await.unwrap();
                    assert_eq!(secret, SECRET);
                    released.fetch_add(1, Ordering::Relaxed);
                    Some(Attested {
                        cookie: session.cookie,
                        key,
                    })
                }
                Err(e) => {
                    assert!(!valid, "valid evidence refused: {e}");
                    assert_eq!(
                        e.kbs_error_type(),
                        Some(&KbsErrorType::AttestationError),
                        "{e}"
                    );
                    assert!(e.to_string().contains("report_data"), "{e}");
                    // The refused session is gone: its cookie opens nothing.
                    let e = fetch(&t, &cookie, &key).await.unwrap_err();
                    assert_eq!(
                        e.kbs_error_type(),
                        Some(&KbsErrorType::TokenNotFound),
                        "{e}"
                    );
                    None
                }
            }
        }));
    }
    within("phase 1 (open)", opened.wait()).await;
    {
        let table = state.sessions();
        assert_eq!(table.pending(), SESSIONS, "all sessions open at once");
    }
    let opened_at = started.elapsed();
    within("phase 2 (attest)", go.wait()).await;
    let mut attested = Vec::new();
    for t in tasks {
        if let Some(a) = within("phase 2 task", t).await.unwrap() {
            attested.push(a);
        }
    }
    assert_eq!(attested.len(), SESSIONS / 2);
    assert_eq!(released.load(Ordering::Relaxed), (SESSIONS / 2) as u64);
    let attested_at = started.elapsed();

    // Phase 3: the flood, while attested clients keep fetching by cookie.
    let evicted_before = state.sessions().evicted();
    let flooding = Arc::new(AtomicBool::new(true));
    let attested = Arc::new(attested);
    let mut fetchers = Vec::new();
    for i in 0..attested.len() {
        let (t, attested, flooding, released) = (
            transport.clone(),
            attested.clone(),
            flooding.clone(),
            released.clone(),
        );
        fetchers.push(tokio::spawn(async move {
            let a = &attested[i];
            let mut fetched = 0u32;
            // One fetch every 1–3 s per session (~250/s in all), staggered.
            let pause = Duration::from_millis(1000 + (i as u64 * 7) % 2000);
            while flooding.load(Ordering::Relaxed) || fetched == 0 {
                tokio::time::sleep(pause).await;
                let secret = fetch(&t, &a.cookie, &a.key).await.unwrap();
                assert_eq!(secret, SECRET);
                released.fetch_add(1, Ordering::Relaxed);
                fetched += 1;
            }
        }));
    }
    let slots = Arc::new(Semaphore::new(FLOOD_IN_FLIGHT));
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let t = transport.clone();
        flood.push(tokio::spawn(async move {
            let mut hs = Handshake::new(Tee::Sample, None);
            let r = t.send(&hs.auth_request().unwrap()).await.unwrap();
            assert_eq!(r.status, 200);
            drop(permit);
        }));
    }
    for f in flood {
        within("flood", f).await.unwrap();
    }
    flooding.store(false, Ordering::Relaxed);
    for f in fetchers {
        within("fetch during flood", f).await.unwrap();
    }
    // Every attested session survived: one more cookie-only fetch each.
    let mut checks = Vec::new();
    for i in 0..attested.len() {
        let (t, attested, released) = (transport.clone(), attested.clone(), released.clone());
        checks.push(tokio::spawn(async move {
            let a = &attested[i];
            assert_eq!(fetch(&t, &a.cookie, &a.key).await.unwrap(), SECRET);
            released.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for c in checks {
        within("fetch after the flood", c).await.unwrap();
    }
    {
        let table = state.sessions();
        assert!(table.evicted() - evicted_before >= (FLOOD - (MAX_SESSIONS - SESSIONS / 2)) as u64);
        assert_eq!(
            table.evicted_attested(),
            0,
            "the flood evicted attested sessions"
        );
        assert_eq!(table.attested(), SESSIONS / 2);
        assert!(table.high_water() <= MAX_SESSIONS, "{}", table.high_water());
        assert!(table.len() <= MAX_SESSIONS);
    }
    eprintln!(
        "wave {n}: {SESSIONS} sessions open after {:.2?}, attested+fetched after {:.2?}, \
         {FLOOD}-auth flood done after {:.2?}; peak live heap {:.1} MiB",
        opened_at,
        attested_at,
        started.elapsed(),
        PEAK_BYTES.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
    released.load(Ordering::Relaxed)
}

/// Drop every session (a purge as if a day had passed) and let connections close.
async fn settle(kbs: &TestKbs) -> (isize, u64) {
    kbs.server
        .state
        .sessions()
        .purge_expired(Instant::now() + Duration::from_secs(2 * 86_400));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(kbs.server.state.sessions().is_empty());
    (LIVE_BYTES.load(Ordering::Relaxed), vm_rss())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_sessions() {
    ensure_nofile(8192);
    let started = Instant::now();
    let kbs = start(true, |c| {
        c.max_sessions = MAX_SESSIONS;
        c.max_connections = 4096;
    })
    .await;
    kbs.put_resource("load/key/k", SECRET);
    let (heap0, rss0) = (LIVE_BYTES.load(Ordering::Relaxed), vm_rss());

    let released1 = wave(&kbs, 1).await;
    let (heap1, rss1) = settle(&kbs).await;
    let released2 = wave(&kbs, 2).await;
    let (heap2, rss2) = settle(&kbs).await;

    let stats = &kbs.server.state.stats;
    // Exactly the valid half attested, each refused attempt was the wrong report_data,
    // and every release was counted by a client that got the secret.
    assert_eq!(stats.attest_ok.load(Ordering::Relaxed), SESSIONS as u64);
    assert_eq!(stats.attest_fail.load(Ordering::Relaxed), SESSIONS as u64);
    assert_eq!(
        stats.released.load(Ordering::Relaxed),
        released1 + released2
    );
    let mib = |b: f64| b / (1024.0 * 1024.0);
    eprintln!(
        "heap: start {:.1} MiB, after wave 1 {:.1} MiB, after wave 2 {:.1} MiB \
         (wave 2 adds {:+.3} MiB); VmRSS: {:.1} / {:.1} / {:.1} MiB (wave 2 adds {:+.1} MiB); \
         total {:.1?}",
        mib(heap0 as f64),
        mib(heap1 as f64),
        mib(heap2 as f64),
        mib((heap2 - heap1) as f64),
        mib(rss0 as f64),
        mib(rss1 as f64),
        mib(rss2 as f64),
        mib(rss2 as f64 - rss1 as f64),
        started.elapsed()
    );
    assert!(
        heap2 - heap1 < HEAP_GROWTH_BOUND,
        "live heap grew {} bytes over the second wave",
        heap2 - heap1
    );
    assert!(
        rss2.saturating_sub(rss1) < RSS_GROWTH_BOUND,
        "VmRSS grew {} bytes over the second wave",
        rss2 - rss1
    );

    // No crash: the server still serves a full handshake.
    let mut c = kbs.client();
    assert_eq!(
        c.get_resource(&kbs_client::ResourceUri::parse("kbs:///load/key/k").unwrap())
            .await
            .unwrap()
            .as_slice(),
        SECRET
    );
}
