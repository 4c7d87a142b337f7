//! Host integration test (root, no VM): the built `cocoon-agent` in its own mount and pid
//! namespace, listening on a Unix socket, runs busybox containers driven by `AgentClient`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_protocol::AgentClient;
use agent_protocol::types::{CheckRequest, DestroySandboxRequest};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A cgroup2 directory we may create children in.
fn cgroup_root(tag: &str) -> PathBuf {
    let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/unified")
    };
    base.join(format!("cocoon-test-{tag}-{}", std::process::id()))
}

struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path, store: &Path, cgroup: &Path) -> Agent {
        Self::start_with(dir, store, cgroup, &[])
    }

    /// An agent over a fresh busybox store in `dir`, with cgroup root `tag`; returns the
    /// store and the cgroup root too.
    fn with_busybox(dir: &Path, tag: &str) -> (Agent, PathBuf, PathBuf) {
        let store = dir.join("store");
        common::busybox_tree(&store.join("busybox"));
        let cgroup = cgroup_root(tag);
        (Self::start(dir, &store, &cgroup), store, cgroup)
    }

    fn start_with(dir: &Path, store: &Path, cgroup: &Path, extra: &[String]) -> Agent {
        let sock = dir.join("agent.sock");
        // The profiling run of scripts/agent-symbol-order.sh swaps in the shipped agent
        // binary and a wrapper (valgrind); every other test runs the binary cargo built.
        let binary = std::env::var("COCOON_AGENT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cocoon-agent").to_string());
        let wrapper = std::env::var("COCOON_AGENT_WRAPPER").unwrap_or_default();
        let child = Command::new("unshare")
            .args([
                "-m",
                "-p",
                "-f",
                "--kill-child",
                "--mount-proc",
                "env",
                "COCOON_AGENT_SANDBOXED=1",
            ])
            .args(wrapper.split_whitespace())
            .arg(binary)
            .arg(format!("agent.server_addr=unix://{}", sock.display()))
            .arg(format!("agent.cgroup_root={}", cgroup.display()))
            .arg(format!("agent.baked_rootfs={}", store.display()))
            .arg("agent.log=debug")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        Agent { child, sock }
    }

    async fn client(&mut self) -> AgentClient {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = AgentClient::connect(&format!("unix://{}", self.sock.display())).await
                && c.check(CheckRequest::default()).await.is_ok()
            {
                return c.with_timeout(Some(Duration::from_secs(30)));
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "agent exited early"
            );
            assert!(Instant::now() < deadline, "agent did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Host pid of the agent (the child of `unshare`).
    fn agent_pid(&self) -> u32 {
        let p = format!("/proc/{0}/task/{0}/children", self.child.id());
        std::fs::read_to_string(p)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().map(str::to_string));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_containers_on_the_host() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _store, cgroup) = Agent::with_busybox(dir.path(), "life");
    let c = agent.client().await;
    let agent_pid = agent.agent_pid();

    let image = "docker.io/library/busybox:latest";
    let controllers = common::CgroupControllers::below(cgroup.parent().unwrap());
    common::lifecycle(&c, image, controllers).await;
    common::signal_all_kills_execs(&c, image, true).await;
    common::signal_all_kills_execs(&c, image, false).await;
    common::orphan_left_by_init_is_killed_on_remove(&c, image).await;
    // The probe the guest test uses (the agent is pid 1 of its pid namespace here too).
    let rel = cgroup.file_name().unwrap().to_str().unwrap();
    common::assert_no_agent_leftovers(&c, image, rel).await;

    // Nothing left: no child processes, no container cgroups, no rootfs mounts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !children(agent_pid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        children(agent_pid).is_empty(),
        "leftover processes {:?}",
        children(agent_pid)
    );
    let left: Vec<_> = std::fs::read_dir(&cgroup)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "leftover cgroups {left:?}");
    let mounts = std::fs::read_to_string(format!("/proc/{agent_pid}/mountinfo")).unwrap();
    assert!(!mounts.contains("/run/kata-containers/pod"), "{mounts}");
    assert!(!mounts.contains("/run/kata-containers/c2"), "{mounts}");

    // DestroySandbox stops the agent, which removes its cgroup root.
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "agent exit {status:?}");
    assert!(!cgroup.exists(), "cgroup root left behind");
}

/// Descriptors of `pid` that refer to an IPC namespace.
fn ipc_namespace_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("ipc:["))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_namespaces_outlive_the_sandbox_init_on_the_host() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _store, cgroup) = Agent::with_busybox(dir.path(), "podns");
    let c = agent.client().await;
    let agent_pid = agent.agent_pid();
    let outside = std::fs::read_link(format!("/proc/{agent_pid}/ns/ipc")).unwrap();
    common::pod_namespaces_outlive_the_sandbox_init(
        &c,
        "docker.io/library/busybox:latest",
        &outside.to_string_lossy(),
    )
    .await;
    // The handles the agent kept on the first pod's namespaces were closed with it; the
    // last pod's sandbox ("next", removed) kept none either.
    assert_eq!(ipc_namespace_fds(agent_pid), 0);
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .ok();
    let _ = std::fs::remove_dir(&cgroup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_and_named_users_on_the_host() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, store, cgroup) = Agent::with_busybox(dir.path(), "seccomp");
    common::add_web_user(&store.join("busybox"));
    let c = agent.client().await;
    common::seccomp_scenario(&c, "docker.io/library/busybox:latest").await;
    common::named_user_scenario(&c, "docker.io/library/busybox:latest").await;
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .ok();
    let _ = std::fs::remove_dir(&cgroup);
}

/// Text that must never reach the host in an error message: Debug dumps, guest attestation
/// and secret locations, and the secret material the KBS serves below.
const FORBIDDEN: [&str; 13] = [
    "Some(",
    "(\"",
    "Os {",
    "code: ",
    "kind: ",
    "Error {",
    " { ",
    "\\\"",
    "/sys/kernel/config/tsm",
    "/dev/tdx_guest",
    "/dev/sev-guest",
    "/run/cocoon/image-cache",
    "hunter2-secret",
];

/// Errors of the real agent (real host adapter, in-guest pull with the data hub) carry no
/// Debug dumps, guest secret paths or key material: bad ids, bad CopyFile paths, an exec of
/// a missing program, an unavailable cgroup controller, and a CreateContainer whose pull
/// fails on KBS resources holding secrets (malformed registry credentials with a password,
/// a missing layer key / policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_texts_of_the_real_agent_are_clean() {
    use agent_protocol::types::*;
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    common::busybox_tree(&store.join("busybox"));
    // A KBS with a malformed auth.json carrying a password and a non-JSON "policy" that is
    // really a key.
    let root = dir.path().join("resources");
    for (path, content) in [
        (
            "default/credential/leaky",
            r#"{"auths": {"r.example": {"auth": 7, "password": "hunter2-secret"}}, "x": "hunter2-secret"#,
        ),
        ("default/policy/key", "hunter2-secret-key-material"),
    ] {
        let f = root.join(path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }
    let mut kcfg = cocoon_kbs::KbsConfig::for_loopback(root);
    kcfg.allow_sample = true;
    kcfg.resource_policy_file = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../attestation/kbs/config/policy-coco-dev.rego"
        )
        .into(),
    );
    let kbs = cocoon_kbs::KbsServer::start(kcfg).await.unwrap();
    // The agent creates its (fixed) blob cache dir on the first registry pull.
    let cache_was_there = Path::new("/run/cocoon").exists();
    let mut errors: Vec<(String, String)> = Vec::new();
    // Guest pull is on: the baked store is reached through its prefix.
    let image = "cocoon-baked:busybox";
    for (tag, extra_key) in [
        (
            "auth",
            "agent.image_registry_auth=kbs:///default/credential/leaky",
        ),
        ("policy", "agent.image_policy=kbs:///default/policy/key"),
        (
            "missing",
            "agent.image_policy=kbs:///default/policy/missing",
        ),
    ] {
        let adir = dir.path().join(tag);
        std::fs::create_dir_all(&adir).unwrap();
        let cgroup = cgroup_root(&format!("err{tag}"));
        let extra = [
            "agent.guest_pull=true".to_string(),
            format!("agent.aa_kbc_params=cc_kbc::{}", kbs.url()),
            "agent.tee_class=coco-dev".to_string(),
            extra_key.to_string(),
        ];
        let mut agent = Agent::start_with(&adir, &store, &cgroup, &extra);
        let c = agent.client().await;
        let mut note = |what: &str, e: agent_protocol::ClientError| {
            let text = e.rpc_message().map(str::to_string).unwrap_or_else(|| {
                panic!("{what}: not an agent error: {e}");
            });
            errors.push((format!("{tag}: {what}"), text));
        };
        let e = c
            .create_container(common::create_req("pulled", "127.0.0.1:9/app:1", &["true"]))
            .await
            .unwrap_err();
        note("pull with KBS resources", e);
        if tag == "auth" {
            // The real host's failures, once.
            for id in ["nope", "../x", "a/b"] {
                let e = c
                    .start_container(StartContainerRequest {
                        container_id: id.into(),
                    })
                    .await
                    .unwrap_err();
                note("start bad id", e);
                if id != "nope" {
                    let e = c
                        .create_container(common::create_req(id, image, &["true"]))
                        .await
                        .unwrap_err();
                    note("create bad id", e);
                }
            }
            for path in [
                "/run/../etc/shadow",
                "/etc/shadow",
                "/run/kata-containers/shared/x/../../y",
            ] {
                let e = c
                    .copy_file(CopyFileRequest {
                        path: path.into(),
                        file_mode: 0o100_644,
                        file_size: 1,
                        data: b"x".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .unwrap_err();
                note("copy file", e);
            }
            // The first (sandbox) container stays up: later ones join its namespaces.
            c.create_container(common::create_req("run", image, &["sleep", "1000"]))
                .await
                .unwrap();
            c.start_container(StartContainerRequest {
                container_id: "run".into(),
            })
            .await
            .unwrap();
            let e = c
                .create_container(common::create_req("noprog", image, &["/no/such/program"]))
                .await
                .and(
                    c.start_container(StartContainerRequest {
                        container_id: "noprog".into(),
                    })
                    .await,
                );
            if let Err(e) = e {
                note("missing program", e);
            }
            let e = c
                .exec_process(ExecProcessRequest {
                    container_id: "run".into(),
                    exec_id: "missing".into(),
                    process: Some(common::process(&["/no/such/program"], false)),
                    ..Default::default()
                })
                .await;
            if let Err(e) = e {
                note("exec missing program", e);
            }
            let e = c
                .update_container(UpdateContainerRequest {
                    container_id: "run".into(),
                    resources: Some(LinuxResources {
                        memory: Some(LinuxMemory {
                            limit: 64 << 20,
                            ..Default::default()
                        }),
                        pids: Some(LinuxPids { limit: 10 }),
                        ..Default::default()
                    }),
                })
                .await;
            if let Err(e) = e {
                note("update unavailable controller", e);
            }
            let e = c
                .signal_process(SignalProcessRequest {
                    container_id: "run".into(),
                    exec_id: String::new(),
                    signal: 99,
                })
                .await
                .unwrap_err();
            note("bad signal", e);
        }
        c.destroy_sandbox(DestroySandboxRequest::default())
            .await
            .ok();
        let _ = agent.child.wait();
        let _ = std::fs::remove_dir(&cgroup);
    }
    kbs.stop().await;
    if !cache_was_there {
        let _ = std::fs::remove_dir("/run/cocoon/image-cache");
        let _ = std::fs::remove_dir("/run/cocoon");
    }
    eprintln!("{} errors checked", errors.len());
    for (what, text) in &errors {
        eprintln!("{what}: {text}");
        for bad in FORBIDDEN {
            assert!(
                !text.contains(bad),
                "{what}: error text contains {bad:?}: {text}"
            );
        }
    }
    let pulls: Vec<_> = errors
        .iter()
        .filter(|(w, _)| w.ends_with("pull with KBS resources"))
        .collect();
    assert_eq!(pulls.len(), 3, "{pulls:?}");
    for (what, text) in pulls {
        assert!(text.contains("agent.image_"), "{what}: {text}");
    }
    assert!(errors.len() >= 15, "{errors:?}");
}

/// The workload whose functions `scripts/agent-symbol-order.sh` lays out first in the
/// shipped agent: start-up, health checks, the guest benchmark's idle probe (a container
/// reading the agent's /proc files), one container of its own, an exec, shutdown. Run
/// under callgrind by that script; on its own it checks that the workload succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "profiling workload: run by scripts/agent-symbol-order.sh"]
async fn idle_workload_for_symbol_ordering() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, _store, _cgroup) = Agent::with_busybox(dir.path(), "profile");
    // Valgrind runs the agent ~50x slower than native.
    let c = agent
        .client()
        .await
        .with_timeout(Some(Duration::from_secs(300)));
    let image = "docker.io/library/busybox:latest";
    for _ in 0..3 {
        c.check(CheckRequest::default()).await.unwrap();
    }
    let mut probe = common::create_req("probe", image, &["sh", "-c", "cat /proc/1/status"]);
    let linux = probe.oci.as_mut().unwrap().linux.as_mut().unwrap();
    linux.namespaces.retain(|n| n.kind != "pid");
    c.create_container(probe).await.unwrap();
    let (out, status) = common::start_collect_remove(&c, "probe").await;
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("VmRSS"), "{out}");
    c.create_container(common::create_req("pod", image, &["sleep", "1000"]))
        .await
        .unwrap();
    c.start_container(agent_protocol::types::StartContainerRequest {
        container_id: "pod".into(),
    })
    .await
    .unwrap();
    common::exec(&c, "pod", "e1", &["true"], false).await;
    assert_eq!(common::wait(&c, "pod", "e1").await, 0);
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "agent exit {status:?}");
}
