//! `agent-bench`: host-run figures for the agent (root, no VM). Starts `cocoon-agent` (the
//! binary next to this one) in private mount+pid namespaces like the host test, then prints
//! its VmRSS idle and with one running busybox container, and the ExecProcess+WaitProcess
//! round trip of `true` as a ratio to a plain fork+exec+wait of `/bin/true` measured in the
//! same run. In-guest figures: `cargo test -p cocoon-tests --test agent_guest -- --ignored
//! --nocapture agent_guest_bench`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_protocol::AgentClient;
use agent_protocol::types::*;
use anyhow::{Context, bail};

fn busybox_tree(dest: &Path) -> anyhow::Result<()> {
    let bin = dest.join("bin");
    for d in ["bin", "proc", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dest.join(d))?;
    }
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).context("copy /usr/bin/busybox")?;
    for applet in ["sh", "true", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    Ok(())
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// "RssAnon A KiB, RssFile F KiB" of a process: heap and stacks versus mapped code/data.
fn rss_split(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "RssAnon {}, RssFile {}",
        field("RssAnon:"),
        field("RssFile:")
    )
}

fn spec(cid: &str, args: &[&str]) -> CreateContainerRequest {
    let root = format!("/run/kata-containers/{cid}/rootfs");
    CreateContainerRequest {
        container_id: cid.into(),
        storages: vec![Storage {
            driver: "image_guest_pull".into(),
            source: "cocoon-baked:busybox".into(),
            mount_point: root.clone(),
            ..Default::default()
        }],
        oci: Some(Spec {
            process: Some(Process {
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                ..Default::default()
            }),
            root: Some(Root {
                path: root,
                readonly: false,
            }),
            linux: Some(Linux {
                namespaces: ["pid", "ipc", "uts", "mount"]
                    .iter()
                    .map(|k| LinuxNamespace {
                        kind: k.to_string(),
                        path: String::new(),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("agent-bench needs root (namespaces, cgroups)");
    }
    let agent_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("cocoon-agent"))
        .context("locate cocoon-agent")?;
    let work = std::env::temp_dir().join(format!("agent-bench-{}", std::process::id()));
    let store = work.join("store");
    busybox_tree(&store.join("busybox"))?;
    let cg_base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/unified")
    };
    let cgroup = cg_base.join(format!("cocoon-bench-{}", std::process::id()));
    let sock = work.join("agent.sock");
    let mut child = Command::new("unshare")
        .args([
            "-m",
            "-p",
            "-f",
            "--kill-child",
            "--mount-proc",
            "env",
            "COCOON_AGENT_SANDBOXED=1",
        ])
        .arg(&agent_bin)
        .arg(format!("agent.server_addr=unix://{}", sock.display()))
        .arg(format!("agent.cgroup_root={}", cgroup.display()))
        .arg(format!("agent.baked_rootfs={}", store.display()))
        .arg("agent.log=warn")
        .stdout(Stdio::null())
        .spawn()?;
    let result = bench(&sock, child.id()).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn bench(sock: &Path, unshare_pid: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let c = loop {
        if let Ok(c) = AgentClient::connect(&format!("unix://{}", sock.display())).await
            && c.check(CheckRequest::default()).await.is_ok()
        {
            break c;
        }
        if Instant::now() > deadline {
            bail!("agent did not come up");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let agent_pid: u32 =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))?
            .split_whitespace()
            .next()
            .context("agent pid")?
            .parse()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = vm_rss_kib(agent_pid);
    let idle_split = rss_split(agent_pid);
    if std::env::var_os("AGENT_BENCH_SMAPS").is_some() {
        let _ = std::fs::copy(format!("/proc/{agent_pid}/smaps"), "/tmp/agent-bench.smaps");
    }
    c.create_container(spec("pod", &["sleep", "100000"]))
        .await?;
    c.start_container(StartContainerRequest {
        container_id: "pod".into(),
    })
    .await?;
    let busy = vm_rss_kib(agent_pid);
    let mut exec_lat = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        c.exec_process(ExecProcessRequest {
            container_id: "pod".into(),
            exec_id: format!("t{i}"),
            process: spec("x", &["true"]).oci.and_then(|s| s.process),
            ..Default::default()
        })
        .await?;
        let st = c
            .wait_process(WaitProcessRequest {
                container_id: "pod".into(),
                exec_id: format!("t{i}"),
            })
            .await?;
        if st.status != 0 {
            bail!("true exited {}", st.status);
        }
        exec_lat.push(t.elapsed());
    }
    let after = vm_rss_kib(agent_pid);
    let mut fork_lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        Command::new("/bin/true").status()?;
        fork_lat.push(t.elapsed());
    }
    c.remove_container(RemoveContainerRequest {
        container_id: "pod".into(),
        timeout: 10,
    })
    .await?;
    let (e, f) = (median(exec_lat), median(fork_lat));
    println!(
        "agent VmRSS idle:                 {idle} KiB ({:.2} x the 4096 KiB goal)",
        idle as f64 / 4096.0
    );
    println!("  of which {idle_split}");
    println!("agent VmRSS one running container: {busy} KiB");
    println!("agent VmRSS after 50 execs:        {after} KiB");
    println!(
        "exec round trip median: {:.2} ms = {:.1} x plain fork+exec+wait of /bin/true ({:.2} ms)",
        e.as_secs_f64() * 1e3,
        e.as_secs_f64() / f.as_secs_f64(),
        f.as_secs_f64() * 1e3
    );
    Ok(())
}
