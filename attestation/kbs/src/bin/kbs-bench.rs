//! `kbs-bench [N] [CONCURRENCY]`: RCAR handshakes against an in-process cocoon-kbs
//! on 127.0.0.1 with sample evidence. Prints p50/p99 latency of
//! auth + attest + get-resource (fresh client and tee key each time), handshakes
//! per second at CONCURRENCY, and the same run's plain `GET /healthz` round trip as
//! the reference ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cocoon_kbs::{KbsConfig, KbsServer};
use kbs_client::protocol::{HttpRequest, Method};
use kbs_client::{HttpTransport, KbsClientBuilder, ResourceUri};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn one_handshake(url: &str, uri: &ResourceUri) -> anyhow::Result<()> {
    let mut c = KbsClientBuilder::new(url)
        .tee(attestation::Tee::Sample)
        .build()?;
    let got = c.get_resource(uri).await?;
    anyhow::ensure!(got.as_slice() == b"bench secret", "wrong resource");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(16);
    let dir = tempfile::tempdir()?;
    let mut config = KbsConfig::for_loopback(dir.path().join("res"));
    config.allow_sample = true;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, include_str!("../../config/policy-coco-dev.rego"))?;
    config.resource_policy_file = Some(policy);
    let server = KbsServer::start(config).await?;
    let res = server.state.resources.root().join("bench/key/k");
    std::fs::create_dir_all(res.parent().context("path")?)?;
    std::fs::write(&res, b"bench secret")?;
    let url = server.url();
    let uri = ResourceUri::parse("kbs:///bench/key/k")?;

    // Reference: plain GET /healthz round trips on one kept-alive connection.
    let t = HttpTransport::new(&url, &[])?;
    let health = HttpRequest {
        method: Method::Get,
        path: "/healthz".into(),
        headers: vec![],
        body: vec![],
    };
    for _ in 0..20 {
        t.send(&health).await?;
    }
    let mut ref_lat = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        t.send(&health).await?;
        ref_lat.push(s.elapsed());
    }
    ref_lat.sort();

    // Client construction alone (tee key generation + HTTP client), part of each handshake.
    let mut build_lat = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        let c = KbsClientBuilder::new(&url)
            .tee(attestation::Tee::Sample)
            .build()?;
        build_lat.push(s.elapsed());
        drop(c);
    }
    build_lat.sort();

    // Sequential handshakes: latency.
    for _ in 0..10 {
        one_handshake(&url, &uri).await?;
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        one_handshake(&url, &uri).await?;
        lat.push(s.elapsed());
    }
    lat.sort();

    // Concurrent handshakes: throughput.
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (url, uri) = (url.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let r = one_handshake(&url, &uri).await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();

    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let (r50, r99) = (percentile(&ref_lat, 0.5), percentile(&ref_lat, 0.99));
    println!("cocoon-kbs loopback benchmark (sample evidence, EC P-256 tee key, N={n})");
    println!(
        "reference GET /healthz:            p50 {:.3} ms  p99 {:.3} ms",
        ms(r50),
        ms(r99)
    );
    println!(
        "auth+attest+get-resource (serial): p50 {:.3} ms  p99 {:.3} ms  ({:.1}x / {:.1}x the reference)",
        ms(p50),
        ms(p99),
        p50.as_secs_f64() / r50.as_secs_f64(),
        p99.as_secs_f64() / r99.as_secs_f64()
    );
    println!(
        "  of which client construction (P-256 keygen + reqwest/rustls client): p50 {:.3} ms",
        ms(percentile(&build_lat, 0.5))
    );
    println!(
        "handshakes per second at concurrency {concurrency}: {:.0}  (reference round trips/s, serial: {:.0})",
        n as f64 / elapsed.as_secs_f64(),
        1.0 / r50.as_secs_f64()
    );
    println!(
        "server: {} attestations accepted, {} resources released, {} sessions held",
        server
            .state
            .stats
            .attest_ok
            .load(std::sync::atomic::Ordering::Relaxed),
        server
            .state
            .stats
            .released
            .load(std::sync::atomic::Ordering::Relaxed),
        server.state.sessions().len()
    );
    server.stop().await;
    Ok(())
}
