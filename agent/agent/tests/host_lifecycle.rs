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
        let sock = dir.join("agent.sock");
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
            .arg(env!("CARGO_BIN_EXE_cocoon-agent"))
            .arg(format!("agent.server_addr=unix://{}", sock.display()))
            .arg(format!("agent.cgroup_root={}", cgroup.display()))
            .arg(format!("agent.baked_rootfs={}", store.display()))
            .arg("agent.log=debug")
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
    let store = dir.path().join("store");
    common::busybox_tree(&store.join("busybox"));
    let cgroup = cgroup_root("life");
    let mut agent = Agent::start(dir.path(), &store, &cgroup);
    let c = agent.client().await;
    let agent_pid = agent.agent_pid();

    common::lifecycle(&c, "docker.io/library/busybox:latest").await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_and_named_users_on_the_host() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    common::busybox_tree(&store.join("busybox"));
    common::add_web_user(&store.join("busybox"));
    let cgroup = cgroup_root("seccomp");
    let mut agent = Agent::start(dir.path(), &store, &cgroup);
    let c = agent.client().await;
    common::seccomp_scenario(&c, "docker.io/library/busybox:latest").await;
    common::named_user_scenario(&c, "docker.io/library/busybox:latest").await;
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .ok();
    let _ = std::fs::remove_dir(&cgroup);
}
