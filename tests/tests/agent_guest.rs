//! The agent's container scenario in the TCG guest over hybrid vsock, the agent-channel
//! stress test (ADR input), and the in-guest benchmark (ignored by default).
//!
//! Needs a guest image whose initrd carries the busybox rootfs at /opt/cocoon/rootfs/busybox
//! (`cocoon guest build --extra-tree /opt/cocoon/rootfs/busybox=<tree>`), e.g.
//! `COCOON_GUEST_DIR=/work/agent-guest/guest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../agent/agent/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use agent_protocol::types::*;
use agent_protocol::{AgentClient, Code};
use cocoon_tests::{coco_dev_config, guest_dir};
use runtime_qemu::sandbox::{BootOptions, Sandbox};
use runtime_qemu::vsock::AgentEndpoint;
use sha2::{Digest, Sha256};

const IMAGE: &str = "cocoon-baked:busybox";

async fn boot(id: &str) -> Option<(tempfile::TempDir, Sandbox)> {
    let guest = guest_dir()?;
    if !guest.join("manifest.json").is_file() {
        return None;
    }
    let state = tempfile::tempdir().unwrap();
    let cfg = coco_dev_config(&guest, state.path());
    let opts = BootOptions {
        id: id.into(),
        ..Default::default()
    };
    let sb = Sandbox::boot(&cfg, &opts, runtime_qemu::host::kvm_usable())
        .await
        .unwrap();
    Some((state, sb))
}

/// A new ttRPC connection to the sandbox's agent (hybrid vsock only).
async fn new_connection(sb: &Sandbox) -> AgentClient {
    match sb.endpoint() {
        AgentEndpoint::Hybrid { uds, port } => {
            let s = runtime_qemu::vsock::connect_with_retry(
                uds,
                *port,
                Duration::from_secs(10),
                || None,
            )
            .await
            .unwrap();
            AgentClient::from_tokio_unix_stream(s).unwrap()
        }
        AgentEndpoint::Vsock { cid, port } => {
            AgentClient::connect(&format!("vsock://{cid}:{port}"))
                .await
                .unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_containers_in_the_guest() {
    let Some((_state, sb)) = boot("agent-life").await else {
        return;
    };
    let c = sb.agent().with_timeout(Some(Duration::from_secs(60)));
    // The guest has cgroup v2 with memory, pids and io: memory and pids stats are asserted.
    common::lifecycle(&c, IMAGE, common::CgroupControllers::ALL).await;
    common::signal_all_kills_execs(&c, IMAGE, true).await;
    common::signal_all_kills_execs(&c, IMAGE, false).await;
    common::orphan_left_by_init_is_killed_on_remove(&c, IMAGE).await;
    common::oom_kill(&c, IMAGE).await;
    guest_clock_follows_set_guest_date_time(&c).await;
    // Every container above is removed: nothing of them is left in the guest (the agent's
    // cgroup root is /sys/fs/cgroup/cocoon there).
    common::assert_no_agent_leftovers(&c, IMAGE, "cocoon").await;
    sb.shutdown().await.unwrap();
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// `date +%s` in a fresh container.
async fn container_date(c: &AgentClient, cid: &str) -> u64 {
    c.create_container(common::create_req(cid, IMAGE, &["date", "+%s"]))
        .await
        .unwrap();
    let (out, status) = common::start_collect_remove(c, cid).await;
    assert_eq!(status, 0, "{out}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("date printed {out:?}"))
}

/// SetGuestDateTime moves the guest's wall clock (a container's `date` sees it), then the
/// clock is set back to the host's time.
async fn guest_clock_follows_set_guest_date_time(c: &AgentClient) {
    let target = unix_now() + Duration::from_secs(86_400);
    let set = |t: Duration| SetGuestDateTimeRequest {
        sec: t.as_secs() as i64,
        usec: i64::from(t.subsec_micros()),
    };
    c.set_guest_date_time(set(target)).await.unwrap();
    let t0 = Instant::now();
    let seen = container_date(c, "clock").await;
    let elapsed = t0.elapsed().as_secs();
    let lo = target.as_secs().saturating_sub(2);
    let hi = target.as_secs() + elapsed + 2;
    assert!(
        (lo..=hi).contains(&seen),
        "guest date {seen}, set to {} ({elapsed} s ago)",
        target.as_secs()
    );
    // Restore: later steps (and the guest's logs) see the real time again.
    c.set_guest_date_time(set(unix_now())).await.unwrap();
    let t0 = Instant::now();
    let host = unix_now().as_secs();
    let seen = container_date(c, "clock2").await;
    let elapsed = t0.elapsed().as_secs();
    assert!(
        (host.saturating_sub(2)..=host + elapsed + 2).contains(&seen),
        "guest date {seen} after restoring to {host}"
    );
}

/// Serves one HTTP/1.0 response on host loopback; returns the port.
async fn one_shot_http(body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
    });
    port
}

/// Runs `script` in a busybox container sharing the guest's pid namespace (so /proc/1 is
/// the agent); returns its stdout and exit status.
async fn run_in_guest_pid_ns(c: &AgentClient, cid: &str, script: &str) -> (String, i32) {
    let mut req = common::create_req(cid, IMAGE, &["sh", "-c", script]);
    let linux = req.oci.as_mut().unwrap().linux.as_mut().unwrap();
    linux.namespaces.retain(|n| n.kind != "pid");
    c.create_container(req).await.unwrap();
    common::start_collect_remove(c, cid).await
}

/// PID 1 left the initramfs (its `/` is a tmpfs, so containers get a real pivot_root), and
/// UpdateInterface + UpdateRoutes give the guest the QEMU user network: a container reaches
/// a host-loopback server through QEMU's guestfwd at 10.0.2.100. Then the seccomp scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_network_and_switched_root() {
    let Some(guest) = guest_dir() else {
        return;
    };
    if !guest.join("manifest.json").is_file() {
        return;
    }
    let port = one_shot_http("hello-from-host").await;
    let state = tempfile::tempdir().unwrap();
    let cfg = coco_dev_config(&guest, state.path());
    let opts = BootOptions {
        id: "agent-net".into(),
        network: Some(runtime_qemu::UserNetwork {
            forwards: vec![runtime_qemu::GuestForward {
                guest_addr: "10.0.2.100".parse().unwrap(),
                guest_port: 8080,
                host_port: port,
            }],
            relay_busybox: "/usr/bin/busybox".into(),
        }),
        ..Default::default()
    };
    let sb = Sandbox::boot(&cfg, &opts, runtime_qemu::host::kvm_usable())
        .await
        .unwrap();
    let c = sb.agent().with_timeout(Some(Duration::from_secs(60)));

    let ifaces = c
        .list_interfaces(ListInterfacesRequest::default())
        .await
        .unwrap()
        .interfaces;
    let nic = ifaces
        .iter()
        .find(|i| i.name != "lo")
        .unwrap_or_else(|| panic!("no network interface in the guest: {ifaces:?}"));
    let lo = ifaces.iter().find(|i| i.name == "lo").unwrap();
    assert!(
        lo.ip_addresses.iter().any(|a| a.address == "127.0.0.1"),
        "PID 1 brings lo up: {lo:?}"
    );
    let up = c
        .update_interface(UpdateInterfaceRequest {
            interface: Some(Interface {
                hw_addr: nic.hw_addr.clone(),
                name: "eth0".into(),
                mtu: 1500,
                ip_addresses: vec![IPAddress {
                    family: IPFamily::V4,
                    address: "10.0.2.15".into(),
                    mask: "24".into(),
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!(up.name, "eth0");
    let routes = c
        .update_routes(UpdateRoutesRequest {
            routes: Some(Routes {
                routes: vec![Route {
                    gateway: "10.0.2.2".into(),
                    device: "eth0".into(),
                    ..Default::default()
                }],
            }),
        })
        .await
        .unwrap()
        .routes;
    assert!(
        routes
            .iter()
            .any(|r| r.dest.is_empty() && r.gateway == "10.0.2.2"),
        "{routes:?}"
    );

    let (out, status) = run_in_guest_pid_ns(
        &c,
        "netprobe",
        "awk '$5 == \"/\" { print \"root-fs:\" $(NF-2) }' /proc/1/mountinfo; \
         wget -q -O - http://10.0.2.100:8080/ && echo; ip route",
    )
    .await;
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("root-fs:tmpfs"),
        "agent root is not a tmpfs: {out}"
    );
    assert!(!out.contains("root-fs:rootfs"), "{out}");
    assert!(out.contains("hello-from-host"), "{out}");
    assert!(out.contains("default via 10.0.2.2 dev eth0"), "{out}");
    // The guest kernel enforces the spec's seccomp profile.
    common::seccomp_scenario(&c, IMAGE).await;
    sb.shutdown().await.unwrap();
}

/// Deterministic incompressible bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Streams `total` bytes through `cat` (exec `exec_id` in `cid`) with WriteStdin chunks of
/// `chunk` while reading ReadStdout (`read_len`) concurrently; returns the elapsed time or
/// a description of the stall.
async fn pump_through_cat(
    c: &AgentClient,
    cid: &str,
    exec_id: &str,
    total: usize,
    chunk: usize,
    read_len: u32,
    limit: Duration,
) -> Result<Duration, String> {
    common::exec(c, cid, exec_id, &["cat"], false).await;
    let data = pattern(exec_id.len() as u64 * 7919 + total as u64, total);
    let want = Sha256::digest(&data);
    let started = Instant::now();
    let writer = async {
        for part in data.chunks(chunk) {
            common::write(c, cid, exec_id, part).await;
        }
        c.close_stdin(CloseStdinRequest {
            container_id: cid.into(),
            exec_id: exec_id.into(),
        })
        .await
        .unwrap();
    };
    let reader = async {
        let mut h = Sha256::new();
        let mut n = 0usize;
        loop {
            let r = c
                .read_stdout(ReadStreamRequest {
                    container_id: cid.into(),
                    exec_id: exec_id.into(),
                    len: read_len,
                })
                .await;
            match r {
                Ok(r) => {
                    n += r.data.len();
                    h.update(&r.data);
                }
                Err(e) if e.code() == Code::OutOfRange => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        (n, h.finalize())
    };
    let both = async { tokio::join!(writer, reader).1 };
    match tokio::time::timeout(limit, both).await {
        Ok((n, got)) => {
            assert_eq!(n, total, "byte count");
            assert_eq!(got, want, "sha256 of the echoed stream");
            assert_eq!(common::wait(c, cid, exec_id).await, 0);
            Ok(started.elapsed())
        }
        Err(_) => Err(format!("stalled after {:?}", started.elapsed())),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The agent channel under full-duplex load: 12 MiB through `cat` over one ttRPC
/// connection per run (3 runs), then several concurrent `cat`s. Reports stalls.
/// CI uses these small defaults (the debug agent under TCG moves ~1 MiB/s); the ADR 0001
/// evidence used `COCOON_STRESS_MIB=32 COCOON_STRESS_RUNS=5` and larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_channel_full_duplex_stress() {
    let Some((_state, sb)) = boot("agent-stress").await else {
        return;
    };
    let c = sb.agent().with_timeout(Some(Duration::from_secs(60)));
    c.create_container(common::create_req("pod", IMAGE, &["sleep", "100000"]))
        .await
        .unwrap();
    c.start_container(StartContainerRequest {
        container_id: "pod".into(),
    })
    .await
    .unwrap();
    let mib = env_usize("COCOON_STRESS_MIB", 12);
    let runs = env_usize("COCOON_STRESS_RUNS", 3);
    let chunk = env_usize("COCOON_STRESS_CHUNK_KIB", 256) * 1024;
    let read_len = (env_usize("COCOON_STRESS_READ_KIB", 1024) * 1024) as u32;
    let limit = Duration::from_secs(env_usize("COCOON_STRESS_LIMIT_S", 180) as u64);
    let mut stalls = Vec::new();
    for run in 0..runs {
        let conn = new_connection(&sb).await.with_timeout(Some(limit));
        let r = pump_through_cat(
            &conn,
            "pod",
            &format!("run{run}"),
            mib << 20,
            chunk,
            read_len,
            limit,
        )
        .await;
        match &r {
            Ok(t) => eprintln!(
                "stress run {run}: {mib} MiB echoed in {:.1} s ({:.1} MiB/s each way), chunk {} KiB, read {} KiB",
                t.as_secs_f64(),
                mib as f64 / t.as_secs_f64(),
                chunk / 1024,
                read_len / 1024
            ),
            Err(e) => eprintln!("stress run {run}: {e}"),
        }
        if let Err(e) = r {
            stalls.push(format!("run {run}: {e}"));
        }
    }
    // Several concurrent cats on one connection.
    let conn = new_connection(&sb).await.with_timeout(Some(limit));
    let per = (mib << 20) / 4;
    let started = Instant::now();
    let results = futures_join4(
        pump_through_cat(&conn, "pod", "par0", per, chunk, read_len, limit),
        pump_through_cat(&conn, "pod", "par1", per, chunk, read_len, limit),
        pump_through_cat(&conn, "pod", "par2", per, chunk, read_len, limit),
        pump_through_cat(&conn, "pod", "par3", per, chunk, read_len, limit),
    )
    .await;
    eprintln!(
        "4 concurrent cats, {} MiB total: {:?} in {:.1} s",
        mib,
        results,
        started.elapsed().as_secs_f64()
    );
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            stalls.push(format!("concurrent cat {i}: {e}"));
        }
    }
    eprintln!("stalls: {} of {} runs", stalls.len(), runs + 4);
    assert!(stalls.is_empty(), "agent channel stalled: {stalls:?}");
    c.remove_container(RemoveContainerRequest {
        container_id: "pod".into(),
        timeout: 10,
    })
    .await
    .unwrap();
    sb.shutdown().await.unwrap();
}

async fn futures_join4<A, B, C, D, T>(a: A, b: B, c: C, d: D) -> [T; 4]
where
    A: std::future::Future<Output = T>,
    B: std::future::Future<Output = T>,
    C: std::future::Future<Output = T>,
    D: std::future::Future<Output = T>,
{
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    [a, b, c, d]
}

/// The value in KiB of the first `key:` line of a /proc file.
fn proc_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The agent's memory as /proc shows it: `status` (VmRSS and its split) and
/// `smaps_rollup`, read through a container sharing the guest's pid namespace.
/// `smaps_rollup` walks the page tables; `status` reads the mm counters, which Linux 6.1
/// updates from per-thread caches every 64 faults and so may lag by megabytes.
struct AgentMemory {
    status: String,
    rollup: String,
    smaps: String,
}

impl AgentMemory {
    /// Resident KiB, from the page tables (the figure the benchmark reports).
    fn rss_kib(&self) -> u64 {
        proc_kib(&self.rollup, "Rss")
    }
    /// VmRSS from the (possibly lagging) counters, for comparison.
    fn vm_rss_kib(&self) -> u64 {
        proc_kib(&self.status, "VmRSS")
    }
    /// "perms path: Rss of Size KiB" for each file-backed mapping with resident pages.
    fn file_mappings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut head: Option<(String, String)> = None;
        let mut size = 0;
        for line in self.smaps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 && f[0].contains('-') && f[5].starts_with('/') {
                head = Some((f[1].to_string(), f[5].to_string()));
            } else if f.len() >= 5 && f[0].contains('-') {
                head = None;
            } else if f.first() == Some(&"Size:") {
                size = f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            } else if f.first() == Some(&"Rss:")
                && let Some((perms, path)) = &head
            {
                let rss = f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                if rss > 0 {
                    out.push(format!("{perms} {path}: {rss} of {size} KiB"));
                }
            }
        }
        out
    }
}

async fn agent_memory(c: &AgentClient, cid: &str) -> AgentMemory {
    let mut req = common::create_req(
        cid,
        IMAGE,
        &[
            "sh",
            "-c",
            "cat /proc/1/status; echo ====; cat /proc/1/smaps_rollup; echo ====; cat /proc/1/smaps",
        ],
    );
    let linux = req.oci.as_mut().unwrap().linux.as_mut().unwrap();
    linux.namespaces.retain(|n| n.kind != "pid");
    c.create_container(req).await.unwrap();
    let (out, status) = common::start_collect_remove(c, cid).await;
    assert_eq!(status, 0, "{out}");
    let mut parts = out.split("====");
    let mut next = || parts.next().unwrap_or("").to_string();
    AgentMemory {
        status: next(),
        rollup: next(),
        smaps: next(),
    }
}

/// Benchmark (run with `--ignored --nocapture`): agent VmRSS idle and with a running
/// container, and the ExecProcess+WaitProcess round trip of `true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn agent_guest_bench() {
    let Some((_state, sb)) = boot("agent-bench").await else {
        return;
    };
    let c = sb.agent().with_timeout(Some(Duration::from_secs(60)));
    // "Idle": measured by a short-lived container (counts the agent's buffers for it).
    let idle_mem = agent_memory(&c, "probe1").await;
    let idle = idle_mem.rss_kib();
    // A single-container pod's container, as `ctr run` makes it (new namespaces each).
    let (mut create, mut run) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let id = format!("c{i}");
        let t = Instant::now();
        c.create_container(common::create_req(&id, IMAGE, &["true"]))
            .await
            .unwrap();
        create.push(t.elapsed());
        let t = Instant::now();
        let (out, status) = common::start_collect_remove(&c, &id).await;
        assert_eq!(status, 0, "{out}");
        run.push(t.elapsed());
    }
    create.sort();
    run.sort();
    c.create_container(common::create_req("pod", IMAGE, &["sleep", "100000"]))
        .await
        .unwrap();
    c.start_container(StartContainerRequest {
        container_id: "pod".into(),
    })
    .await
    .unwrap();
    let busy_mem = agent_memory(&c, "probe2").await;
    let busy = busy_mem.rss_kib();
    let mut lat = Vec::new();
    for i in 0..30 {
        let id = format!("t{i}");
        let t = Instant::now();
        common::exec(&c, "pod", &id, &["true"], false).await;
        assert_eq!(common::wait(&c, "pod", &id).await, 0);
        lat.push(t.elapsed());
    }
    lat.sort();
    let after_mem = agent_memory(&c, "probe3").await;
    let after = after_mem.rss_kib();
    println!(
        "agent RSS (smaps_rollup): idle {idle} KiB, with one running container {busy} KiB, after 30 execs {after} KiB (goal <= 4096 KiB idle)"
    );
    println!(
        "agent VmRSS (status counters, may lag): idle {} KiB, with one running container {} KiB, after 30 execs {} KiB",
        idle_mem.vm_rss_kib(),
        busy_mem.vm_rss_kib(),
        after_mem.vm_rss_kib()
    );
    // Anonymous memory (heap, stacks, relocated data) versus pages of the binary, which
    // lives in the guest's tmpfs root (shmem) whether or not the agent maps it.
    println!(
        "agent idle RSS split (smaps_rollup): anonymous {} KiB, file/shmem {} KiB",
        proc_kib(&idle_mem.rollup, "Anonymous"),
        idle.saturating_sub(proc_kib(&idle_mem.rollup, "Anonymous"))
    );
    for m in idle_mem.file_mappings() {
        println!("  idle, resident: {m}");
    }
    println!(
        "container of its own pod running true, {:?} accel: CreateContainer median {:.1} ms, \
         StartContainer + output EOF + WaitProcess + RemoveContainer median {:.1} ms",
        sb.accel(),
        create[create.len() / 2].as_secs_f64() * 1e3,
        run[run.len() / 2].as_secs_f64() * 1e3
    );
    println!(
        "exec round trip (ExecProcess+WaitProcess of true), {:?} accel: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        sb.accel(),
        lat[lat.len() / 2].as_secs_f64() * 1e3,
        lat[0].as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    assert!(idle > 0 && busy > 0);
    sb.shutdown().await.unwrap();
}
