//! The task service of one pod, in domain terms (containerd's protobufs are mapped in
//! [`crate::task`]). The first container boots the VM through the [`Vmm`] port, later ones
//! join it, and the VM stops when the container that booted it is deleted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use agent_protocol::types::{
    CreateContainerRequest, ExecProcessRequest, PauseContainerRequest, RemoveContainerRequest,
    ResumeContainerRequest, SignalProcessRequest, StartContainerRequest, StatsContainerRequest,
    StatsContainerResponse, TtyWinResizeRequest, UpdateContainerRequest, WaitProcessRequest,
};
use agent_protocol::{AgentClient, ClientError};
use runtime_config::RuntimeClassConfig;
use runtime_core::persist::{RECORD_FILE, ShimRecord};
use runtime_core::pod;
use runtime_core::spec::{self, HostProcess, HostResources, HostSpec};
use runtime_core::{
    ContainerState, CoreError, EventSink, ExitInfo, Pod, Status, Stdio, TaskEvent, Vm, VmRequest,
    Vmm, VmmError,
};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::stdio::{self, Output, StdinHandle};

/// Exit status reported when the VM died under a process.
pub const VM_GONE_STATUS: u32 = 255;

/// How long Delete, before it stops the VM, waits for an OOM kill the agent found at
/// RemoveContainer (queued for GetOOMEvent) to reach containerd. An event already queued
/// arrives within one agent round trip; when there is none, this is what Delete costs.
pub const OOM_DRAIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Errors of the task service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Pure-logic error (state, annotations, spec, configuration).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The agent refused or failed.
    #[error("agent: {0}")]
    Agent(#[from] ClientError),
    /// The VM could not be booted or stopped.
    #[error("sandbox VM: {0}")]
    Vmm(#[from] VmmError),
    /// Host I/O (bundle, stdio).
    #[error("{0}")]
    Io(String),
}

/// Configures the guest's `eth0` and default route (a class with a `[network]` section).
pub async fn configure_guest_network(agent: &AgentClient) -> Result<(), ClientError> {
    agent
        .update_interface(runtime_core::network::interface_request())
        .await?;
    agent
        .update_routes(runtime_core::network::routes_request())
        .await?;
    tracing::info!("guest network configured");
    Ok(())
}

/// Parameters of Create.
#[derive(Debug, Clone, Default)]
pub struct CreateParams {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// containerd's stdio.
    pub stdio: Stdio,
    /// Runtime option `ConfigPath`, when containerd passed one.
    pub config_path: Option<String>,
}

/// A process as State reports it.
#[derive(Debug, Clone)]
pub struct ProcessView {
    /// Bundle of the container.
    pub bundle: String,
    /// Status.
    pub status: Status,
    /// Host pid reported for it.
    pub pid: u32,
    /// Stdio.
    pub stdio: Stdio,
    /// Exit, if stopped.
    pub exit: Option<ExitInfo>,
}

type Key = (String, String);

/// Looks up an environment variable (injected so tests need not touch the process env).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Default)]
struct Inner {
    pod: Pod,
    vm: Option<Box<dyn Vm>>,
    agent: Option<AgentClient>,
    task_pid: u32,
    stdin: HashMap<Key, StdinHandle>,
    outputs: HashMap<Key, Vec<JoinHandle<()>>>,
}

/// The task service of one shim (one pod).
pub struct TaskService {
    vmm: Arc<dyn Vmm>,
    events: Arc<dyn EventSink>,
    env: EnvLookup,
    inner: Mutex<Inner>,
    exits: watch::Sender<u64>,
    /// `/tasks/oom` events published so far, per container (bumped after the publish).
    ooms: watch::Sender<HashMap<String, u64>>,
    /// Signalled when the shim should exit.
    pub exit: Arc<Notify>,
    /// Address of this shim, recorded in each bundle.
    pub address: String,
}

impl TaskService {
    /// A service booting VMs with `vmm` and publishing to `events`; `env` looks up the
    /// configuration variables (the process environment in production).
    pub fn new(
        vmm: Arc<dyn Vmm>,
        events: Arc<dyn EventSink>,
        env: EnvLookup,
        address: String,
        exit: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(TaskService {
            vmm,
            events,
            env,
            inner: Mutex::new(Inner::default()),
            exits: watch::channel(0).0,
            ooms: watch::channel(HashMap::new()).0,
            exit,
            address,
        })
    }

    fn read_spec(bundle: &Path) -> Result<HostSpec, ServiceError> {
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ServiceError::Io(format!("cannot read {}: {e}", path.display())))?;
        Ok(HostSpec::from_json(&text)?)
    }

    fn load_class_config(
        &self,
        option: Option<&str>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<RuntimeClassConfig, ServiceError> {
        let env = self.env.clone();
        let choice =
            runtime_core::class::select_config(option, |v| env(v), annotations, |p| p.is_file())?;
        tracing::info!(path = %choice.path.display(), origin = ?choice.origin, "runtime configuration");
        RuntimeClassConfig::load(&choice.path)
            .map_err(|e| ServiceError::Core(CoreError::Config(e.to_string())))
    }

    /// Create: boots the VM for the pod's first container, then CreateContainer in the guest.
    pub async fn create(self: &Arc<Self>, p: CreateParams) -> Result<u32, ServiceError> {
        let host = Self::read_spec(&p.bundle)?;
        let placement = pod::classify(&p.id, &host.annotations)?;
        let storage = pod::guest_pull_storage(&p.id, placement.role, &host.annotations)?;
        let mut agent_spec = spec::spec_to_agent(&host, &pod::guest_rootfs(&p.id))?;
        if let Some(proc_) = agent_spec.process.as_mut() {
            proc_.terminal = p.stdio.terminal;
        }
        let mut inner = self.inner.lock().await;
        if inner.pod.containers.contains_key(&p.id) {
            return Err(CoreError::AlreadyExists {
                what: "container",
                id: p.id,
            }
            .into());
        }
        let mut cfg = self.load_class_config(p.config_path.as_deref(), &host.annotations)?;
        let overrides = runtime_core::class::apply_pod_annotations(&mut cfg, &host.annotations)?;
        let container = ContainerState::new(
            &p.id,
            &p.bundle.display().to_string(),
            placement.role,
            p.stdio.clone(),
        );
        // Admission first (pure), so a wrong pod never boots a VM.
        let mut pod_after = inner.pod.clone();
        pod_after.admit(&placement.sandbox_id, container)?;
        let mut record = ShimRecord {
            sandbox_id: placement.sandbox_id.clone(),
            container_id: p.id.clone(),
            shim_address: self.address.clone(),
            ..Default::default()
        };
        let booted = placement.role.boots_vm();
        let wants_network = cfg.network.is_some();
        if booted {
            let vm = self
                .vmm
                .boot(VmRequest {
                    sandbox_id: placement.sandbox_id.clone(),
                    config: cfg,
                    overrides,
                })
                .await?;
            let procs = vm.processes();
            record.processes = crate::cleanup::process_records(&procs);
            record.dirs = procs.state_dir.iter().cloned().collect();
            if wants_network && let Err(e) = configure_guest_network(&vm.agent()).await {
                if let Err(stop) = vm.stop().await {
                    tracing::warn!(error = %stop, "stopping the VM after a failed network setup");
                }
                return Err(e.into());
            }
            inner.task_pid = procs.main_pid.unwrap_or(0);
            inner.agent = Some(vm.agent());
            self.spawn_oom_watcher(vm.agent());
            let died = vm.exited();
            inner.vm = Some(vm);
            let this = Arc::downgrade(self);
            tokio::spawn(async move {
                died.await;
                if let Some(this) = this.upgrade() {
                    this.vm_died().await;
                }
            });
        }
        let Some(agent) = inner.agent.clone() else {
            return Err(CoreError::NotFound {
                what: "sandbox VM",
                id: placement.sandbox_id,
            }
            .into());
        };
        crate::cleanup::write_record(&p.bundle, &record);
        let req = CreateContainerRequest {
            container_id: p.id.clone(),
            storages: vec![storage],
            oci: Some(agent_spec),
            sandbox_pidns: false,
            ..Default::default()
        };
        if let Err(e) = agent.create_container(req).await {
            if booted && let Some(vm) = inner.vm.take() {
                inner.agent = None;
                if let Err(stop) = vm.stop().await {
                    tracing::warn!(error = %stop, "stopping the VM after a failed create");
                }
                let _ = std::fs::remove_file(p.bundle.join(RECORD_FILE));
            }
            return Err(e.into());
        }
        inner.pod = pod_after;
        let pid = inner.task_pid;
        drop(inner);
        self.events
            .publish(TaskEvent::Create {
                container_id: p.id,
                bundle: p.bundle.display().to_string(),
                pid,
            })
            .await;
        Ok(pid)
    }

    fn agent_of(inner: &Inner) -> Result<AgentClient, ServiceError> {
        inner.agent.clone().ok_or_else(|| {
            CoreError::NotFound {
                what: "sandbox VM",
                id: inner.pod.sandbox_id.clone().unwrap_or_default(),
            }
            .into()
        })
    }

    /// Start: the init process (empty `exec_id`) or an exec.
    pub async fn start(self: &Arc<Self>, id: &str, exec_id: &str) -> Result<u32, ServiceError> {
        let mut inner = self.inner.lock().await;
        let agent = Self::agent_of(&inner)?;
        let pid = inner.task_pid;
        let c = inner.pod.container(id)?;
        let proc_ = c.process(exec_id)?.clone();
        if proc_.status != Status::Created {
            return Err(CoreError::InvalidState {
                what: if exec_id.is_empty() {
                    "container"
                } else {
                    "exec"
                },
                id: id.to_string(),
                status: proc_.status,
                op: "start",
            }
            .into());
        }
        if exec_id.is_empty() {
            agent
                .start_container(StartContainerRequest {
                    container_id: id.to_string(),
                })
                .await?;
        } else {
            agent
                .exec_process(ExecProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                    process: proc_.spec.clone(),
                    ..Default::default()
                })
                .await?;
        }
        inner.pod.container_mut(id)?.process_mut(exec_id)?.start()?;
        let key = (id.to_string(), exec_id.to_string());
        let mut outs = Vec::new();
        let s = &proc_.stdio;
        if !s.stdout.is_empty() {
            outs.push(stdio::spawn_output(
                agent.clone(),
                id.into(),
                exec_id.into(),
                Output::Stdout,
                s.stdout.clone(),
            ));
        }
        if !s.stderr.is_empty() && !s.terminal {
            outs.push(stdio::spawn_output(
                agent.clone(),
                id.into(),
                exec_id.into(),
                Output::Stderr,
                s.stderr.clone(),
            ));
        }
        if !s.stdin.is_empty() {
            match stdio::spawn_stdin(agent.clone(), id.into(), exec_id.into(), s.stdin.clone()) {
                Ok(h) => {
                    inner.stdin.insert(key.clone(), h);
                }
                Err(e) => tracing::warn!(path = s.stdin, error = %e, "cannot open stdin"),
            }
        }
        inner.outputs.insert(key.clone(), outs);
        drop(inner);
        self.spawn_waiter(agent, key, pid);
        let ev = if exec_id.is_empty() {
            TaskEvent::Start {
                container_id: id.to_string(),
                pid,
            }
        } else {
            TaskEvent::ExecStarted {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                pid,
            }
        };
        self.events.publish(ev).await;
        Ok(pid)
    }

    fn spawn_waiter(self: &Arc<Self>, agent: AgentClient, key: Key, pid: u32) {
        let this = self.clone();
        tokio::spawn(async move {
            let waited = agent
                .with_long_poll_timeout(None)
                .wait_process(WaitProcessRequest {
                    container_id: key.0.clone(),
                    exec_id: key.1.clone(),
                })
                .await;
            let status = match waited {
                Ok(r) => u32::try_from(r.status).unwrap_or(VM_GONE_STATUS),
                Err(e) => {
                    tracing::warn!(container = key.0, exec = key.1, error = %e, "WaitProcess failed; the VM is gone");
                    VM_GONE_STATUS
                }
            };
            // Output first: the client must see all of it before the exit.
            let outs = this
                .inner
                .lock()
                .await
                .outputs
                .remove(&key)
                .unwrap_or_default();
            for h in outs {
                if tokio::time::timeout(std::time::Duration::from_secs(2), h)
                    .await
                    .is_err()
                {
                    tracing::debug!(container = key.0, "output still open after exit");
                }
            }
            this.record_exit(&key, status, pid).await;
        });
    }

    async fn record_exit(&self, key: &Key, status: u32, pid: u32) {
        let at = SystemTime::now();
        let recorded = {
            let mut inner = self.inner.lock().await;
            inner.stdin.remove(key);
            inner
                .pod
                .container_mut(&key.0)
                .and_then(|c| c.process_mut(&key.1).map(|p| p.exited(status, at)))
                .unwrap_or(false)
        };
        if recorded {
            self.exits.send_modify(|n| *n += 1);
            self.events
                .publish(TaskEvent::Exit {
                    container_id: key.0.clone(),
                    id: if key.1.is_empty() {
                        key.0.clone()
                    } else {
                        key.1.clone()
                    },
                    pid,
                    exit_status: status,
                    exited_at: at,
                })
                .await;
        }
    }

    /// The VM went away on its own (QEMU crashed or was killed): every process of the pod
    /// exits with [`VM_GONE_STATUS`] and what is left of the VM (backend, state directory)
    /// is removed. Nothing happens when the VM was stopped on purpose (it is no longer held).
    async fn vm_died(&self) {
        let at = SystemTime::now();
        // The lock is held until the VM's processes are reaped and its state dir removed, so
        // a concurrent Delete/Shutdown (which may end the shim process) waits for the cleanup.
        let mut inner = self.inner.lock().await;
        let Some(vm) = inner.vm.take() else { return };
        inner.agent = None;
        inner.stdin.clear();
        let mut exits = Vec::new();
        for c in inner.pod.containers.values_mut() {
            for exec_id in c.all_exited(VM_GONE_STATUS, at) {
                exits.push((c.id.clone(), exec_id));
            }
        }
        let pid = inner.task_pid;
        tracing::warn!(
            processes = exits.len(),
            "the sandbox VM exited unexpectedly"
        );
        if let Err(e) = tokio::task::spawn_blocking(move || drop(vm)).await {
            tracing::warn!(error = %e, "cleaning up after the VM");
        }
        drop(inner);
        self.exits.send_modify(|n| *n += 1);
        for (container_id, exec_id) in exits {
            let id = if exec_id.is_empty() {
                container_id.clone()
            } else {
                exec_id
            };
            self.events
                .publish(TaskEvent::Exit {
                    container_id,
                    id,
                    pid,
                    exit_status: VM_GONE_STATUS,
                    exited_at: at,
                })
                .await;
        }
    }

    /// Exec: registers an exec (started by [`start`](Self::start)).
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: Stdio,
        spec_json: &[u8],
    ) -> Result<(), ServiceError> {
        let host: HostProcess = serde_json::from_slice(spec_json)
            .map_err(|e| CoreError::Spec(format!("exec process spec: {e}")))?;
        if host.args.is_empty() {
            return Err(CoreError::Spec("exec process args are empty".into()).into());
        }
        let mut p = spec::process_to_agent(&host);
        p.terminal = stdio.terminal;
        let mut inner = self.inner.lock().await;
        inner.pod.container_mut(id)?.add_exec(exec_id, stdio, p)?;
        drop(inner);
        self.events
            .publish(TaskEvent::ExecAdded {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            })
            .await;
        Ok(())
    }

    /// Kill: signals a process (empty `exec_id` = the container's processes).
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ServiceError> {
        let key = (id.to_string(), exec_id.to_string());
        let (agent, status, pid) = {
            let inner = self.inner.lock().await;
            let p = inner.pod.container(id)?.process(exec_id)?;
            (inner.agent.clone(), p.status, inner.task_pid)
        };
        match (status, agent) {
            (Status::Stopped, _) => Err(CoreError::NotFound {
                what: "running process",
                id: format!("{id}/{exec_id}"),
            }
            .into()),
            // Never started: there is nothing in the guest to signal; it just ends.
            (Status::Created, _) => {
                self.record_exit(&key, 128 + signal, pid).await;
                Ok(())
            }
            (_, None) => {
                self.record_exit(&key, VM_GONE_STATUS, pid).await;
                Ok(())
            }
            (_, Some(agent)) => {
                agent
                    .signal_process(SignalProcessRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                        signal,
                    })
                    .await?;
                Ok(())
            }
        }
    }

    /// Delete: removes an exec or a container; deleting the VM's container stops the VM.
    pub async fn delete(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<(u32, Option<ExitInfo>), ServiceError> {
        let mut inner = self.inner.lock().await;
        let pid = inner.task_pid;
        if !exec_id.is_empty() {
            let p = inner.pod.container_mut(id)?.remove_exec(exec_id)?;
            return Ok((pid, p.exit));
        }
        inner.pod.container(id)?.check_deletable()?;
        let ooms_before = self.oom_count(id);
        let mut removed_from = None;
        if let Some(agent) = inner.agent.clone() {
            let r = agent
                .remove_container(RemoveContainerRequest {
                    container_id: id.to_string(),
                    timeout: 10,
                })
                .await;
            match r {
                Ok(_) => removed_from = Some(agent),
                Err(e) => tracing::warn!(id, error = %e, "RemoveContainer failed"),
            }
        }
        let removal = inner.pod.remove(id)?;
        let exit = removal.container.init.exit;
        let bundle = PathBuf::from(&removal.container.bundle);
        if removal.stop_vm {
            // The VM's OOM watcher ends with it: an OOM kill RemoveContainer found must be
            // published first (and so before /tasks/delete). The kernel's OOM killer sends
            // SIGKILL, so an init that exited any other way (or has no status yet) costs
            // Delete no wait.
            let killed = exit.as_ref().is_some_and(|e| e.status == 128 + 9);
            if let Some(agent) = removed_from.filter(|_| killed) {
                self.drain_ooms(&agent, id, ooms_before).await;
            }
            for c in inner.pod.containers.values_mut() {
                c.all_exited(VM_GONE_STATUS, SystemTime::now());
            }
            inner.agent = None;
            if let Some(vm) = inner.vm.take()
                && let Err(e) = vm.stop().await
            {
                tracing::warn!(error = %e, "stopping the VM");
            }
        }
        let _ = std::fs::remove_file(bundle.join(RECORD_FILE));
        drop(inner);
        self.exits.send_modify(|n| *n += 1);
        self.events
            .publish(TaskEvent::Delete {
                container_id: id.to_string(),
                pid,
                exit_status: exit.map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| e.at).unwrap_or_else(SystemTime::now),
            })
            .await;
        Ok((pid, exit))
    }

    /// Wait: until the process has exited.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitInfo, ServiceError> {
        let mut rx = self.exits.subscribe();
        loop {
            {
                let inner = self.inner.lock().await;
                let p = inner.pod.container(id)?.process(exec_id)?;
                if let Some(e) = p.exit {
                    return Ok(e);
                }
            }
            if rx.changed().await.is_err() {
                return Err(ServiceError::Io("shim shutting down".into()));
            }
        }
    }

    /// State of a process.
    pub async fn state(&self, id: &str, exec_id: &str) -> Result<ProcessView, ServiceError> {
        let inner = self.inner.lock().await;
        let c = inner.pod.container(id)?;
        let p = c.process(exec_id)?;
        Ok(ProcessView {
            bundle: c.bundle.clone(),
            status: p.status,
            pid: inner.task_pid,
            stdio: p.stdio.clone(),
            exit: p.exit,
        })
    }

    /// The host pid reported for the pod's tasks (QEMU).
    pub async fn task_pid(&self) -> u32 {
        self.inner.lock().await.task_pid
    }

    /// Stats of a container from the agent (cgroup figures inside the guest).
    pub async fn stats(&self, id: &str) -> Result<StatsContainerResponse, ServiceError> {
        let agent = {
            let inner = self.inner.lock().await;
            inner.pod.container(id)?;
            Self::agent_of(&inner)?
        };
        Ok(agent
            .stats_container(StatsContainerRequest {
                container_id: id.to_string(),
            })
            .await?)
    }

    /// Pause (`true`) or resume (`false`) a container.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<(), ServiceError> {
        let mut inner = self.inner.lock().await;
        let agent = Self::agent_of(&inner)?;
        {
            // Check the transition before asking the guest.
            let mut probe = inner.pod.container(id)?.init.clone();
            if paused {
                probe.pause()?
            } else {
                probe.resume()?
            }
        }
        let cid = id.to_string();
        if paused {
            agent
                .pause_container(PauseContainerRequest {
                    container_id: cid.clone(),
                })
                .await?;
            inner.pod.container_mut(id)?.init.pause()?;
        } else {
            agent
                .resume_container(ResumeContainerRequest {
                    container_id: cid.clone(),
                })
                .await?;
            inner.pod.container_mut(id)?.init.resume()?;
        }
        drop(inner);
        let ev = if paused {
            TaskEvent::Paused { container_id: cid }
        } else {
            TaskEvent::Resumed { container_id: cid }
        };
        self.events.publish(ev).await;
        Ok(())
    }

    /// Update: new cgroup resources (OCI `LinuxResources` JSON).
    pub async fn update(&self, id: &str, resources_json: &[u8]) -> Result<(), ServiceError> {
        let r: HostResources = serde_json::from_slice(resources_json)
            .map_err(|e| CoreError::Spec(format!("resources: {e}")))?;
        let agent = {
            let inner = self.inner.lock().await;
            inner.pod.container(id)?;
            Self::agent_of(&inner)?
        };
        agent
            .update_container(UpdateContainerRequest {
                container_id: id.to_string(),
                resources: Some(spec::resources_to_agent(&r)),
            })
            .await?;
        Ok(())
    }

    /// ResizePty.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ServiceError> {
        let agent = {
            let inner = self.inner.lock().await;
            inner.pod.container(id)?.process(exec_id)?;
            Self::agent_of(&inner)?
        };
        agent
            .tty_win_resize(TtyWinResizeRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                row: height,
                column: width,
            })
            .await?;
        Ok(())
    }

    /// CloseIO: closes the process's stdin after what containerd already wrote.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), ServiceError> {
        let inner = self.inner.lock().await;
        inner.pod.container(id)?.process(exec_id)?;
        if let Some(h) = inner.stdin.get(&(id.to_string(), exec_id.to_string())) {
            h.close();
        }
        Ok(())
    }

    /// True when no container is left (Shutdown may exit the shim).
    pub async fn is_empty(&self) -> bool {
        self.inner.lock().await.pod.containers.is_empty()
    }

    /// Stops the VM if one is still running (shim exit).
    pub async fn stop_vm(&self) {
        let vm = {
            let mut inner = self.inner.lock().await;
            inner.agent = None;
            inner.vm.take()
        };
        if let Some(vm) = vm
            && let Err(e) = vm.stop().await
        {
            tracing::warn!(error = %e, "stopping the VM at shim exit");
        }
    }
}

mod oom;
#[cfg(test)]
mod tests;
