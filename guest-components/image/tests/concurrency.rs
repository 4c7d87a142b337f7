//! Layer downloads run concurrently, at most `max_concurrent_downloads` at a time, and every
//! layer's progress is reported from start to unpacked.
//!
//! The bound is measured from outside the client: the fault-injecting proxy (`tests/faults`)
//! in front of Debian's docker-registry holds every layer answer back for [`HOLD`] and counts
//! how many held requests were waiting at the same time. A held request counts until its
//! hold ends, before the client has seen a byte of the answer, so the client (which keeps
//! its download permit until the layer is on disk) can never be seen with more requests in
//! flight than it really had; and [`HOLD`] is long enough for every request the client is
//! allowed to send to arrive while the others are still held.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod faults;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use faults::image::{Image, image};
use faults::{Action, FaultProxy};
use guest_image::{ProgressSink, PullOptions, pull_image};

/// How long the proxy holds back each layer answer.
const HOLD: Duration = Duration::from_millis(300);

/// Pull `repo:latest` through `proxy` with every layer answer held back, and return the most
/// layer requests in flight at once. `limit`: `max_concurrent_downloads`, the default when
/// `None`.
async fn pull_held(img: &Image, proxy: &FaultProxy, repo: &str, limit: Option<usize>) -> usize {
    proxy.reset();
    for (digest, _) in &img.layers {
        proxy.rule("GET", digest, None, Action::Delay(HOLD));
    }
    let mut opts = PullOptions {
        insecure_registries: vec![proxy.host.clone()],
        ..PullOptions::default()
    };
    if let Some(limit) = limit {
        opts.max_concurrent_downloads = limit;
    }
    let dest = img.work.path().join(format!("rootfs-{limit:?}"));
    let started = Instant::now();
    let pulled = pull_image(&format!("{}/{repo}:latest", proxy.host), &dest, &opts)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(pulled.summary.layers, 5);
    assert_eq!(describe_tree(&dest), img.expected);
    // One request per layer: no retry blurred the picture.
    for (digest, _) in &img.layers {
        assert_eq!(proxy.count("GET", digest), 1, "layer {digest}");
    }
    let max = proxy.max_delayed_in_flight();
    // A second witness of the same bound: with at most `max` at a time, the five held
    // answers take at least ceil(5 / max) holds.
    let rounds = u32::try_from(5_usize.div_ceil(max.max(1))).unwrap();
    assert!(
        elapsed >= HOLD * rounds,
        "limit {limit:?}: {max} in flight at most, yet done in {elapsed:?}"
    );
    eprintln!("limit {limit:?}: at most {max} layer requests in flight, pull took {elapsed:?}");
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_downloads_run_concurrently_up_to_the_limit() {
    let img = image("test/concurrent");
    let proxy = FaultProxy::start(&img.registry.host).await;
    // Exactly the limit: more than one proves the downloads overlap, no more than the limit
    // proves the bound.
    assert_eq!(pull_held(&img, &proxy, "test/concurrent", Some(2)).await, 2);
    // The default is 3.
    assert_eq!(pull_held(&img, &proxy, "test/concurrent", None).await, 3);
    // Control: with a limit above the layer count all five are seen in flight at once, so
    // nothing but the limit (not the proxy, the HTTP client's pool, or the runtime) kept
    // the numbers above at 2 and 3.
    assert_eq!(
        pull_held(&img, &proxy, "test/concurrent", Some(10)).await,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_one_downloads_one_layer_at_a_time() {
    let img = image("test/serial");
    let proxy = FaultProxy::start(&img.registry.host).await;
    assert_eq!(pull_held(&img, &proxy, "test/serial", Some(1)).await, 1);
    // 0 is taken as 1 (it must neither deadlock nor lift the bound).
    assert_eq!(pull_held(&img, &proxy, "test/serial", Some(0)).await, 1);
}

/// One [`ProgressSink`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Started { digest: String, size: u64 },
    Progress(u64),
    Downloaded { cached: bool },
    Unpacked,
}

/// Records every call with its layer index, in the order they arrived.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(usize, Event)>>,
}

impl Recorder {
    fn push(&self, index: usize, event: Event) {
        self.events.lock().unwrap().push((index, event));
    }

    fn take(&self) -> Vec<(usize, Event)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

impl ProgressSink for Recorder {
    fn layer_started(&self, index: usize, digest: &str, size: u64) {
        let digest = digest.to_owned();
        self.push(index, Event::Started { digest, size });
    }
    fn layer_progress(&self, index: usize, downloaded: u64) {
        self.push(index, Event::Progress(downloaded));
    }
    fn layer_downloaded(&self, index: usize, cached: bool) {
        self.push(index, Event::Downloaded { cached });
    }
    fn layer_unpacked(&self, index: usize) {
        self.push(index, Event::Unpacked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_reported_per_layer_up_to_its_size() {
    let img = image("test/progress");
    let recorder = Arc::new(Recorder::default());
    let opts = PullOptions {
        insecure_registries: vec![img.registry.host.clone()],
        cache_dir: Some(img.work.path().join("cache")),
        progress: Some(recorder.clone()),
        ..PullOptions::default()
    };
    let reference = format!("{}/test/progress:latest", img.registry.host);
    pull_image(&reference, &img.work.path().join("first"), &opts)
        .await
        .unwrap();
    let events = recorder.take();
    assert!(events.iter().all(|(i, _)| *i < 5), "{events:?}");
    for (index, (digest, size)) in img.layers.iter().enumerate() {
        let mine: Vec<&Event> = events
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, e)| e)
            .collect();
        let started = Event::Started {
            digest: digest.clone(),
            size: *size,
        };
        let done = [&Event::Downloaded { cached: false }, &Event::Unpacked];
        assert!(
            mine.len() >= 4 && mine[0] == &started && mine[mine.len() - 2..] == done,
            "layer {index}: {mine:?}"
        );
        // In between: the byte counts, rising, up to exactly the layer's size.
        let counts: Vec<u64> = mine[1..mine.len() - 2]
            .iter()
            .map(|e| match e {
                Event::Progress(n) => *n,
                other => panic!("layer {index}: {other:?} among the progress reports"),
            })
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] < w[1]),
            "layer {index}: {counts:?}"
        );
        assert_eq!(counts.last(), Some(size), "layer {index}: {counts:?}");
    }
    // Unpacked in manifest order.
    let unpacked: Vec<usize> = events
        .iter()
        .filter(|(_, e)| *e == Event::Unpacked)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(unpacked, [0, 1, 2, 3, 4]);

    // Again from the cache: every layer still starts, is reported cached (no bytes
    // downloaded) and unpacked.
    pull_image(&reference, &img.work.path().join("second"), &opts)
        .await
        .unwrap();
    let events = recorder.take();
    for (index, (digest, size)) in img.layers.iter().enumerate() {
        let mine: Vec<Event> = events
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(_, e)| e.clone())
            .collect();
        assert_eq!(
            mine,
            [
                Event::Started {
                    digest: digest.clone(),
                    size: *size
                },
                Event::Downloaded { cached: true },
                Event::Unpacked
            ],
            "layer {index}"
        );
    }
    assert_eq!(events.len(), 15, "{events:?}");
}
