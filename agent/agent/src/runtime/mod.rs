//! The real [`ContainerHost`]: namespaces via a vfork-style `clone`, a container-init helper (the agent
//! binary re-executed), cgroup v2, pipes and ptys. Exits are collected by the one
//! [`Reaper`]; nothing here calls `wait`.

pub mod caps;
pub mod cgroup;
pub mod fdio;
pub mod helper;
pub mod plan;
pub mod podns;
pub mod seccomp;
pub mod spawn;
mod tty;

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use agent_core::{ContainerHost, ContainerPlan, HostError, ProcessIo, SpawnedProcess};
use agent_protocol::types::CgroupStats;
use nix::unistd::pipe2;

use self::cgroup::CgroupRoot;
use self::fdio::FdStream;
use self::plan::{HelperPlan, Setup};
use self::podns::PodNamespaces;
use self::spawn::{ChildFds, spawn_helper};
use crate::reaper::Reaper;

/// How long container setup may take before the helper is killed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

struct HostContainer {
    init_pid: i32,
    /// The container's compiled seccomp filters, applied to exec'd processes too.
    seccomp: seccomp::Filters,
    /// Control socket of a created, not yet started init.
    control: Option<UnixStream>,
    /// The pod's IPC and UTS namespaces, kept by the pod's sandbox container.
    pod_namespaces: Option<PodNamespaces>,
}

/// Containers on this Linux system.
pub struct LinuxHost {
    reaper: Reaper,
    cgroups: CgroupRoot,
    containers: Mutex<HashMap<String, HostContainer>>,
}

struct Spawn {
    pid: i32,
    io: ProcessIo,
    exit: tokio::sync::oneshot::Receiver<i32>,
    control: UnixStream,
}

fn io_err(what: &str) -> impl FnOnce(nix::Error) -> HostError + '_ {
    move |e| HostError::io(what, std::io::Error::from(e))
}

impl LinuxHost {
    /// A host whose containers live below the cgroup directory `cgroup_root`.
    pub fn new(reaper: Reaper, cgroup_root: impl Into<PathBuf>) -> Result<Self, HostError> {
        Ok(LinuxHost {
            reaper,
            cgroups: CgroupRoot::open(cgroup_root)?,
            containers: Mutex::new(HashMap::new()),
        })
    }

    /// The cgroup root.
    pub fn cgroup_root(&self) -> &std::path::Path {
        self.cgroups.path()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostContainer>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New handles on the namespaces kept by the pod's sandbox container `sandbox`.
    fn pod_namespaces(&self, sandbox: &str) -> Result<PodNamespaces, HostError> {
        match self.state().get(sandbox).map(|c| c.pod_namespaces.as_ref()) {
            Some(Some(ns)) => ns.try_clone(),
            _ => Err(HostError::FailedPrecondition(format!(
                "the pod's namespaces are gone with its sandbox container {sandbox:?}"
            ))),
        }
    }

    fn init_pid(&self, cid: &str) -> Result<i32, HostError> {
        self.state()
            .get(cid)
            .map(|c| c.init_pid)
            .ok_or_else(|| HostError::NotFound(format!("container {cid:?} not found")))
    }

    /// Starts the helper, moves it into the cgroup, hands it the plan and waits for `ok`.
    async fn spawn(
        &self,
        cid: &str,
        clone_flags: u64,
        join_pid_ns_of: Option<i32>,
        plan: &HelperPlan,
    ) -> Result<Spawn, HostError> {
        let (child, pipes) = stdio(plan.process.terminal)?;
        let (control, child_control) =
            UnixStream::pair().map_err(|e| HostError::io("socketpair", e))?;
        let fds = ChildFds {
            stdin: child.0,
            stdout: child.1,
            stderr: child.2,
            control: child_control.into(),
        };
        let pid = spawn_helper(clone_flags, join_pid_ns_of, &fds)
            .map_err(|e| HostError::io("start container process", e))?;
        drop(fds);
        let exit = self.reaper.watch(pid);
        let kill = || {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        };
        if let Err(e) = self.cgroups.add(cid, pid) {
            kill();
            return Err(e);
        }
        let json = serde_json::to_vec(plan)
            .map_err(|e| HostError::InvalidArgument(format!("encode plan: {e}")))?;
        let answer = blocking_exchange(control, json).await;
        match answer {
            Ok((control, line, master)) if line == "ok" => {
                // A terminal process: the helper sent the master of the pty it opened in
                // the container's devpts.
                let io = match (pipes, master) {
                    (Some(io), _) => Ok(io),
                    (None, Some(master)) => tty::io_from_master(master),
                    (None, None) => Err(HostError::FailedPrecondition(
                        "container process sent no terminal".into(),
                    )),
                };
                match io {
                    Ok(io) => Ok(Spawn {
                        pid,
                        io,
                        exit,
                        control,
                    }),
                    Err(e) => {
                        kill();
                        Err(e)
                    }
                }
            }
            Ok((_, line, _)) => {
                kill();
                Err(helper_error(&line))
            }
            Err(e) => {
                kill();
                Err(e)
            }
        }
    }
}

fn helper_error(line: &str) -> HostError {
    match line.strip_prefix("err ") {
        Some(msg) => HostError::InvalidArgument(format!("container setup failed: {msg}")),
        None => HostError::FailedPrecondition("container process exited during setup".to_string()),
    }
}

/// Sends the length-prefixed plan and reads one answer line (blocking, in a worker thread),
/// with the descriptor that came with it (a terminal's master).
async fn blocking_exchange(
    mut control: UnixStream,
    plan: Vec<u8>,
) -> Result<(UnixStream, String, Option<OwnedFd>), HostError> {
    tokio::task::spawn_blocking(move || {
        control
            .set_read_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| HostError::io("control socket", e))?;
        let len = (plan.len() as u32).to_le_bytes();
        control
            .write_all(&len)
            .and_then(|_| control.write_all(&plan))
            .map_err(|e| HostError::io("send plan to container process", e))?;
        let mut fd = None;
        let line = read_line(&mut control, &mut fd)?;
        Ok((control, line, fd))
    })
    .await
    .map_err(|_| HostError::FailedPrecondition("setup task failed".into()))?
}

fn read_line(control: &mut UnixStream, fd: &mut Option<OwnedFd>) -> Result<String, HostError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match tty::recv_with_fd(control, &mut byte, fd) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() < 4096 => line.push(byte[0]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(HostError::Timeout("container setup timed out".into()));
            }
            Err(e) => return Err(HostError::io("read from container process", e)),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Waits for EOF on the control socket (the exec happened) or an `err` line.
async fn await_exec(mut control: UnixStream) -> Result<(), HostError> {
    tokio::task::spawn_blocking(move || {
        control
            .set_read_timeout(Some(SETUP_TIMEOUT))
            .map_err(|e| HostError::io("control socket", e))?;
        let line = read_line(&mut control, &mut None)?;
        if line.is_empty() {
            Ok(())
        } else {
            Err(helper_error(&line))
        }
    })
    .await
    .map_err(|_| HostError::FailedPrecondition("exec task failed".into()))?
}

type ChildStdio = (OwnedFd, OwnedFd, OwnedFd);

/// The helper's stdio, and the agent's ends when they are pipes. A terminal helper starts
/// with `/dev/null` and replaces it by the pty it opens inside the container.
fn stdio(terminal: bool) -> Result<(ChildStdio, Option<ProcessIo>), HostError> {
    if terminal {
        return Ok((tty::null_stdio()?, None));
    }
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (in_r, in_w) = pipe2(flags).map_err(io_err("pipe"))?;
    let (out_r, out_w) = pipe2(flags).map_err(io_err("pipe"))?;
    let (err_r, err_w) = pipe2(flags).map_err(io_err("pipe"))?;
    let wrap = |fd| FdStream::new(fd).map_err(|e| HostError::io("register pipe", e));
    let io = ProcessIo {
        stdin: Some(Box::new(wrap(in_w)?)),
        stdout: Some(Box::new(wrap(out_r)?)),
        stderr: Some(Box::new(wrap(err_r)?)),
        tty: None,
    };
    Ok(((in_r, out_w, err_w), Some(io)))
}

#[async_trait::async_trait]
impl ContainerHost for LinuxHost {
    async fn create_container(&self, plan: ContainerPlan) -> Result<SpawnedProcess, HostError> {
        let cid = plan.container_id.as_str();
        let spec = &plan.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| HostError::InvalidArgument("spec has no process".into()))?;
        let ns = plan::namespaces(spec);
        // Held until the helper has joined them, even if the sandbox is removed meanwhile.
        let joined = match &plan.sandbox_container {
            Some(sandbox) => Some(self.pod_namespaces(sandbox)?),
            None => None,
        };
        let setup = plan::container_setup(
            spec,
            &plan.rootfs.display().to_string(),
            ns,
            joined.as_ref().map(PodNamespaces::paths).as_ref(),
        )
        .map_err(HostError::InvalidArgument)?;
        let filters = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(profile) => seccomp::compile(profile).map_err(HostError::InvalidArgument)?,
            None => Vec::new(),
        };
        let mut helper_plan = HelperPlan {
            setup: Setup::Create(setup),
            process: plan::process_plan(process).map_err(HostError::InvalidArgument)?,
        };
        helper_plan.process.seccomp = filters.clone();
        let mut flags = libc::CLONE_NEWNS as u64;
        // sandbox_pidns: the container's processes live in the sandbox container's pid
        // namespace (its init is not pid 1 there) instead of a namespace of their own.
        let join_pid_ns_of = plan.sandbox_init_pid.filter(|_| plan.join_sandbox_pid_ns);
        if ns.pid && join_pid_ns_of.is_none() {
            flags |= libc::CLONE_NEWPID as u64;
        }
        if plan.sandbox_container.is_none() {
            if ns.ipc {
                flags |= libc::CLONE_NEWIPC as u64;
            }
            if ns.uts {
                flags |= libc::CLONE_NEWUTS as u64;
            }
        }
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let started = std::time::Instant::now();
        self.cgroups.create(cid, resources)?;
        let cgroup_done = started.elapsed();
        let spawned = self.spawn(cid, flags, join_pid_ns_of, &helper_plan).await;
        tracing::debug!(
            container = cid,
            cgroup_us = cgroup_done.as_micros() as u64,
            spawn_us = (started.elapsed() - cgroup_done).as_micros() as u64,
            "container init spawned"
        );
        drop(joined);
        // A sandbox container's init: keep its new namespaces for the pod's later containers.
        let pinned = spawned.and_then(|s| match plan.sandbox_container {
            None => PodNamespaces::of_process(s.pid).map(|p| (s, Some(p))),
            Some(_) => Ok((s, None)),
        });
        let (s, pod_namespaces) = match pinned {
            Ok(ok) => ok,
            Err(e) => {
                self.cgroups.kill_remaining(cid).await;
                let _ = self.cgroups.remove(cid).await;
                return Err(e);
            }
        };
        self.state().insert(
            cid.to_string(),
            HostContainer {
                init_pid: s.pid,
                seccomp: filters,
                control: Some(s.control),
                pod_namespaces,
            },
        );
        Ok(SpawnedProcess {
            pid: s.pid,
            io: s.io,
            exit: s.exit,
        })
    }

    async fn start_container(&self, cid: &str) -> Result<(), HostError> {
        let mut control = self
            .state()
            .get_mut(cid)
            .ok_or_else(|| HostError::NotFound(format!("container {cid:?} not found")))?
            .control
            .take()
            .ok_or_else(|| {
                HostError::FailedPrecondition(format!("container {cid:?} was already started"))
            })?;
        control
            .write_all(&[1])
            .map_err(|e| HostError::io("start container", e))?;
        await_exec(control).await
    }

    async fn exec_process(
        &self,
        cid: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<SpawnedProcess, HostError> {
        let (init_pid, filters) = {
            let state = self.state();
            let c = state
                .get(cid)
                .ok_or_else(|| HostError::NotFound(format!("container {cid:?} not found")))?;
            (c.init_pid, c.seccomp.clone())
        };
        let mut helper_plan = HelperPlan {
            setup: Setup::Exec { init_pid },
            process: plan::process_plan(process).map_err(HostError::InvalidArgument)?,
        };
        helper_plan.process.seccomp = filters;
        let s = self.spawn(cid, 0, Some(init_pid), &helper_plan).await?;
        let pid = s.pid;
        if let Err(e) = await_exec(s.control).await {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
        Ok(SpawnedProcess {
            pid,
            io: s.io,
            exit: s.exit,
        })
    }

    fn signal_process(&self, pid: i32, signal: i32) -> Result<(), HostError> {
        // SAFETY: kill(2) with integer arguments.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(HostError::FailedPrecondition(
                    "the process has exited".into(),
                ));
            }
            return Err(HostError::io("signal process", e));
        }
        Ok(())
    }

    fn signal_container(&self, cid: &str, signal: i32) -> Result<(), HostError> {
        let init = self.init_pid(cid)?;
        // The init first (it may not be in the cgroup listing yet if it is just exiting).
        // SAFETY: kill(2) with integer arguments.
        unsafe { libc::kill(init, signal) };
        self.cgroups.signal_all(cid, signal)
    }

    async fn stats(&self, cid: &str) -> Result<CgroupStats, HostError> {
        self.init_pid(cid)?;
        self.cgroups.stats(cid)
    }

    async fn set_frozen(&self, cid: &str, frozen: bool) -> Result<(), HostError> {
        self.init_pid(cid)?;
        self.cgroups.set_frozen(cid, frozen).await
    }

    async fn update_resources(
        &self,
        cid: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), HostError> {
        self.init_pid(cid)?;
        self.cgroups.update(cid, resources)
    }

    async fn remove_container(&self, cid: &str) -> Result<(), HostError> {
        // Processes the exited init left behind (no pid namespace of its own) go first, so
        // the rootfs is released and the cgroup can be removed.
        self.cgroups.kill_remaining(cid).await;
        self.state().remove(cid);
        self.cgroups.remove(cid).await
    }

    fn oom_kill_count(&self, cid: &str) -> u64 {
        self.cgroups.oom_kills(cid)
    }

    fn set_time(&self, sec: i64, usec: i64) -> Result<(), HostError> {
        let ts = nix::sys::time::TimeSpec::new(sec, usec * 1000);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
            .map_err(io_err("set the guest clock"))
    }
}
