//! Pulls through a fault-injecting loopback proxy (`tests/faults`) in front of Debian's
//! docker-registry: retries with back-off for 429/502/503/504 and reset connections (resumed
//! with `Range`, or started over), no retries for 401/403/404/500 and digest mismatches,
//! blob redirects to another host (without the credentials) and redirect loops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod faults;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use faults::image::image;
use faults::{Action, FaultProxy};
use guest_image::{AuthFileCredentials, ImageError, PullOptions, RetryPolicy, pull_image};

fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    }
}

fn options(proxy: &FaultProxy, retry: RetryPolicy) -> PullOptions {
    PullOptions {
        insecure_registries: vec![proxy.host.clone()],
        retry,
        ..PullOptions::default()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_gateway_errors_are_retried_with_back_off() {
    let img = image("test/busy");
    let proxy = FaultProxy::start(&img.registry.host).await;
    const N: usize = 3;
    let too_many = Action::oci_error(429, "TOOMANYREQUESTS");
    proxy.rule("GET", "/manifests/latest", Some(N), too_many.clone());
    proxy.rule("GET", &img.config.0, Some(N), too_many);
    proxy.rule("GET", &img.layers[0].0, Some(N), Action::plain(503, "busy"));
    proxy.rule("GET", &img.layers[1].0, Some(2), Action::plain(502, "no"));
    proxy.rule("GET", &img.layers[2].0, Some(1), Action::plain(504, "slow"));
    proxy.rule("GET", &img.layers[3].0, Some(1), Action::plain(429, ""));
    let retry = RetryPolicy {
        attempts: N as u32 + 1,
        initial_backoff: Duration::from_millis(40),
        max_backoff: Duration::from_secs(1),
    };
    let dest = img.work.path().join("out/rootfs");
    let cache = img.work.path().join("cache");
    let opts = PullOptions {
        cache_dir: Some(cache.clone()),
        ..options(&proxy, retry)
    };
    let pulled = pull_image(&format!("{}/test/busy:latest", proxy.host), &dest, &opts)
        .await
        .unwrap();
    assert_eq!(pulled.summary.layers, 5);
    assert_eq!(describe_tree(&dest), img.expected);

    assert_eq!(proxy.count("GET", "/manifests/latest"), N + 1);
    assert_eq!(proxy.count("GET", &img.config.0), N + 1);
    let per_layer: Vec<usize> = img
        .layers
        .iter()
        .map(|(d, _)| proxy.count("GET", d))
        .collect();
    assert_eq!(per_layer, [N + 1, 3, 2, 2, 1]);
    // Back-off: the gaps between the attempts at one URL are at least half of the nominal
    // delays 40, 80, 160 ms (the actual delays are drawn from [d/2, d]).
    for target in [
        "/manifests/latest",
        img.config.0.as_str(),
        img.layers[0].0.as_str(),
    ] {
        let times: Vec<Instant> = proxy.matching("GET", target).iter().map(|s| s.at).collect();
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, nominal_ms) in gaps.iter().zip([40, 80, 160]) {
            assert!(
                *gap >= Duration::from_millis(nominal_ms / 2),
                "{target}: no back-off, gaps {gaps:?}"
            );
        }
    }
    assert_eq!(
        names(&cache.join("blobs/sha256")).len(),
        5,
        "one file per layer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_503_fails_naming_status_and_attempts_and_leaves_nothing() {
    let img = image("test/down");
    let proxy = FaultProxy::start(&img.registry.host).await;
    let (layer, _) = &img.layers[0];
    proxy.rule(
        "GET",
        layer,
        None,
        Action::plain(503, "down for maintenance"),
    );
    let out = img.work.path().join("out");
    let cache = img.work.path().join("cache");
    let opts = PullOptions {
        cache_dir: Some(cache.clone()),
        ..options(&proxy, fast(3))
    };
    let image_ref = format!("{}/test/down:latest", proxy.host);
    let err = pull_image(&image_ref, &out.join("rootfs"), &opts)
        .await
        .unwrap_err();
    let text = err.to_string();
    match &err {
        ImageError::RetriesExhausted {
            what,
            attempts,
            last,
        } => {
            assert_eq!(*attempts, 3, "{text}");
            assert!(what.contains(layer.as_str()), "{text}");
            assert!(last.contains("HTTP 503 Service Unavailable"), "{text}");
            assert!(last.contains("down for maintenance"), "{text}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert!(text.contains("giving up after 3 attempts"), "{text}");
    assert_eq!(proxy.count("GET", layer), 3);
    // No destination, staging directory or private blob directory; no partial blob, and
    // nothing cached for the failed layer (the other layers may be cached, verified).
    assert_eq!(names(&out), Vec::<String>::new());
    let cached = names(&cache.join("blobs/sha256"));
    assert!(!cached.iter().any(|n| n.contains("partial")), "{cached:?}");
    assert!(
        !cached.iter().any(|n| layer.ends_with(n.as_str())),
        "{cached:?}"
    );

    // The manifest, without a cache directory.
    proxy.reset();
    proxy.rule("GET", "/manifests/latest", None, Action::plain(503, ""));
    let err = pull_image(&image_ref, &out.join("rootfs"), &options(&proxy, fast(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImageError::RetriesExhausted { attempts: 2, what, .. } if what.contains("manifest")),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(proxy.count("GET", "/manifests/latest"), 2);
    assert_eq!(names(&out), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_and_digest_mismatches_are_not_retried() {
    let img = image("test/final");
    let proxy = FaultProxy::start(&img.registry.host).await;
    let out = img.work.path().join("out");
    let opts = options(&proxy, fast(5));
    let image_ref = format!("{}/test/final:latest", proxy.host);

    // 404: an unknown tag.
    let err = pull_image(
        &format!("{}/test/final:missing", proxy.host),
        &out.join("a"),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(!matches!(err, ImageError::RetriesExhausted { .. }), "{err}");
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN") || err.to_string().contains("unknown"),
        "{err}"
    );
    assert_eq!(proxy.count("GET", "/manifests/missing"), 1);

    type Check = fn(&ImageError) -> bool;
    let cases: Vec<(String, Action, Check)> = vec![
        (
            "/manifests/latest".into(),
            Action::oci_error(403, "DENIED"),
            |e| matches!(e, ImageError::Registry { reason, .. } if reason.contains("DENIED") || reason.contains("injected")),
        ),
        (
            img.config.0.clone(),
            Action::plain(401, "who are you"),
            |e| matches!(e, ImageError::Unauthorized { .. }),
        ),
        (
            img.layers[1].0.clone(),
            Action::plain(500, "bug"),
            |e| matches!(e, ImageError::Registry { reason, .. } if reason.contains("500")),
        ),
        (img.layers[0].0.clone(), Action::FlipByte, |e| {
            matches!(e, ImageError::DigestMismatch { .. })
        }),
    ];
    for (target, action, check) in cases {
        proxy.reset();
        proxy.rule("GET", &target, None, action.clone());
        let err = pull_image(&image_ref, &out.join("b"), &opts)
            .await
            .unwrap_err();
        assert!(check(&err), "{action:?} on {target}: {err:?}");
        assert_eq!(
            proxy.count("GET", &target),
            1,
            "{action:?} on {target} retried"
        );
        assert_eq!(names(&out), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_connection_resumes_with_range_and_a_full_answer_starts_over() {
    let img = image("test/resume");
    let proxy = FaultProxy::start(&img.registry.host).await;
    let (layer, size) = img.layers[0].clone();
    let half = usize::try_from(size / 2).unwrap();
    proxy.rule("GET", &layer, Some(1), Action::CutBody { after: half });
    let image_ref = format!("{}/test/resume:latest", proxy.host);
    let dest = img.work.path().join("resumed");
    let opts = options(&proxy, fast(3));
    pull_image(&image_ref, &dest, &opts).await.unwrap();
    assert_eq!(describe_tree(&dest), img.expected);
    let gets = proxy.matching("GET", &layer);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    let range = gets[1].header("range").expect("the retry did not resume");
    let offset: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|o| o.parse().ok())
        .unwrap_or_else(|| panic!("odd range {range}"));
    assert!(
        offset > 0 && offset <= half,
        "{range} for {half} bytes sent"
    );

    // The registry answers the range request with the whole blob (the proxy drops `Range`):
    // the staged file and the hash start over. Appending would fail the digest check. The
    // config (fetched into memory) too.
    proxy.reset();
    let (config, config_size) = img.config.clone();
    let config_half = usize::try_from(config_size / 2).unwrap();
    proxy.rule("GET", &layer, Some(1), Action::CutBody { after: half });
    proxy.rule("GET", &layer, None, Action::DropRange);
    proxy.rule(
        "GET",
        &config,
        Some(1),
        Action::CutBody { after: config_half },
    );
    proxy.rule("GET", &config, None, Action::DropRange);
    let dest = img.work.path().join("restarted");
    pull_image(&image_ref, &dest, &opts).await.unwrap();
    assert_eq!(describe_tree(&dest), img.expected);
    for target in [&layer, &config] {
        let gets = proxy.matching("GET", target);
        assert_eq!(gets.len(), 2, "{gets:?}");
        assert!(gets[1].header("range").is_some(), "{gets:?}");
        assert!(
            matches!(gets[1].action, Some(Action::DropRange)),
            "{gets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_redirects_drop_the_credentials_and_loops_are_bounded() {
    let img = image("test/redirect");
    // The "storage backend": another listener (another port, so another origin).
    let storage = FaultProxy::start(&img.registry.host).await;
    let front = FaultProxy::start(&img.registry.host).await;
    let to_storage = Action::Redirect {
        base: format!("http://{}", storage.host),
    };
    front.rule("GET", "/blobs/", None, to_storage.clone());
    let authfile = img.work.path().join("auth.json");
    fs::write(
        &authfile,
        format!(
            r#"{{"auths": {{"{}": {{"registrytoken": "redirect-test-token"}}}}}}"#,
            front.host
        ),
    )
    .unwrap();
    let opts = PullOptions {
        credentials: Some(Arc::new(AuthFileCredentials::from_file(&authfile).unwrap())),
        ..options(&front, fast(3))
    };
    let image_ref = format!("{}/test/redirect:latest", front.host);
    let dest = img.work.path().join("redirected");
    pull_image(&image_ref, &dest, &opts).await.unwrap();
    assert_eq!(describe_tree(&dest), img.expected);

    // Config and five layers, each redirected once; the registry's host got the token, the
    // redirect target did not.
    let asked = front.matching("GET", "/blobs/");
    assert_eq!(asked.len(), 6, "{asked:?}");
    for s in &asked {
        assert_eq!(
            s.header("authorization"),
            Some("Bearer redirect-test-token"),
            "{s:?}"
        );
    }
    let served = storage.matching("GET", "/blobs/");
    assert_eq!(served.len(), 6, "{served:?}");
    for s in &served {
        assert_eq!(s.header("authorization"), None, "credentials leaked: {s:?}");
    }

    // A redirect loop on one layer: reqwest gives up after 10 redirects, and the pull does
    // not retry it.
    front.reset();
    let (layer, _) = &img.layers[0];
    front.rule(
        "GET",
        layer,
        None,
        Action::Redirect {
            base: format!("http://{}", front.host),
        },
    );
    front.rule("GET", "/blobs/", None, to_storage);
    let err = pull_image(&image_ref, &img.work.path().join("loop"), &opts)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ImageError::Registry { what, reason } if what.contains(layer.as_str()) && reason.contains("redirect")),
        "{text}"
    );
    assert!(text.contains("too many redirects"), "{text}");
    assert_eq!(
        front.count("GET", layer),
        11,
        "1 request + 10 redirects, once"
    );
    assert!(!img.work.path().join("loop").exists());
}
