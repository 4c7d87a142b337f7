//! Containers of the sandbox: lifecycle state, processes and their streams. Host effects go
//! through [`ContainerHost`] and [`ImageService`].

mod process;
pub mod rootfs;
pub mod stdio;
pub mod user;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_protocol::AgentError;
use agent_protocol::types::{
    CgroupStats, CreateContainerRequest, ExecProcessRequest, StatsContainerResponse,
};

use self::process::Proc;
pub(crate) use self::process::Stream;
use self::rootfs::{RootfsSource, plan_rootfs, validate_id};
use crate::error::{host_error, image_error};
use crate::host::{ContainerHost, ContainerPlan, ImageService};

/// Finished, waited-for exec processes kept per container (older ones are forgotten).
const KEPT_FINISHED_EXECS: usize = 64;
/// How often GetOOMEvent looks at `memory.events`.
const OOM_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Paused,
}

struct Container {
    id: String,
    status: Mutex<Status>,
    init: Arc<Proc>,
    rootfs: std::path::PathBuf,
    pulled: bool,
    execs: Mutex<Vec<(String, Arc<Proc>)>>,
}

impl Container {
    fn status(&self) -> Status {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set_status(&self, s: Status) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }
    fn execs(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<Proc>)>> {
        self.execs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Owns the sandbox's containers.
pub struct ContainerService {
    host: Arc<dyn ContainerHost>,
    images: Arc<dyn ImageService>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    sandbox_container: Mutex<Option<String>>,
    /// CreateSandbox asked for one pid namespace for the whole pod.
    sandbox_pidns: AtomicBool,
    create_lock: tokio::sync::Mutex<()>,
    oom_seen: Mutex<HashMap<String, u64>>,
    /// OOM kills found when a container was removed before GetOOMEvent sampled them:
    /// delivered first, so a container removed within one poll interval is not lost.
    oom_pending: Mutex<std::collections::VecDeque<String>>,
    oom_wake: tokio::sync::Notify,
}

impl ContainerService {
    /// New service over the given host ports.
    pub fn new(host: Arc<dyn ContainerHost>, images: Arc<dyn ImageService>) -> Self {
        ContainerService {
            host,
            images,
            containers: Mutex::new(HashMap::new()),
            sandbox_container: Mutex::new(None),
            sandbox_pidns: AtomicBool::new(false),
            create_lock: tokio::sync::Mutex::new(()),
            oom_seen: Mutex::new(HashMap::new()),
            oom_pending: Mutex::new(std::collections::VecDeque::new()),
            oom_wake: tokio::sync::Notify::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, cid: &str) -> Result<Arc<Container>, AgentError> {
        self.map()
            .get(cid)
            .cloned()
            .ok_or_else(|| AgentError::not_found(format!("container {cid:?} not found")))
    }

    fn process(&self, cid: &str, exec_id: &str) -> Result<Arc<Proc>, AgentError> {
        let c = self.get(cid)?;
        if exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        c.execs()
            .iter()
            .find(|(id, _)| id == exec_id)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                AgentError::not_found(format!(
                    "process {exec_id:?} of container {cid:?} not found"
                ))
            })
    }

    /// Whether containers of the pod share the sandbox (first) container's pid namespace,
    /// as CreateSandbox's `sandbox_pidns` asks (Kata semantics). A CreateContainer with
    /// `sandbox_pidns` asks the same for that one container.
    pub fn set_sandbox_pidns(&self, shared: bool) {
        self.sandbox_pidns.store(shared, Ordering::SeqCst);
    }

    /// Ids of the containers, sorted.
    pub fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.map().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// CreateContainer: rootfs, namespaces, cgroup and a waiting init process.
    pub async fn create(&self, req: CreateContainerRequest) -> Result<(), AgentError> {
        let cid = req.container_id.clone();
        validate_id("container_id", &cid)?;
        let wire_spec = req
            .oci
            .as_ref()
            .ok_or_else(|| AgentError::invalid_argument("CreateContainer needs an OCI spec"))?;
        let spec = wire_spec
            .to_oci()
            .map_err(|e| AgentError::invalid_argument(e.to_string()))?;
        if spec
            .process()
            .as_ref()
            .is_none_or(|p| p.args().as_ref().is_none_or(|a| a.is_empty()))
        {
            return Err(AgentError::invalid_argument(
                "OCI spec has no Process.Args to run",
            ));
        }
        let plan = plan_rootfs(
            &cid,
            wire_spec.root.as_ref().map(|r| r.path.as_str()),
            &req.storages,
        )?;
        if !req.devices.is_empty() {
            return Err(AgentError::invalid_argument(
                "device passthrough is not supported yet",
            ));
        }
        let _one_at_a_time = self.create_lock.lock().await;
        if self.map().contains_key(&cid) {
            return Err(AgentError::already_exists(format!(
                "container {cid:?} already exists"
            )));
        }
        let started = std::time::Instant::now();
        let pulled = match &plan.source {
            RootfsSource::Image(image) => {
                self.images
                    .pull(image, &cid, &plan.path)
                    .await
                    .map_err(image_error)?;
                true
            }
            RootfsSource::Present => false,
        };
        tracing::debug!(
            container = cid,
            rootfs_ms = started.elapsed().as_millis() as u64,
            "container rootfs ready"
        );
        let mut spec = spec;
        if let Err(e) = with_resolved_user(&mut spec, &plan.path, req.string_user.as_ref()) {
            if pulled {
                let _ = self.images.release(&cid, &plan.path).await;
            }
            return Err(e);
        }
        let sandbox_init_pid = self.sandbox_init_pid();
        let join_sandbox_pid_ns = req.sandbox_pidns || self.sandbox_pidns.load(Ordering::SeqCst);
        if join_sandbox_pid_ns && sandbox_init_pid.is_none() && self.has_sandbox_container() {
            if pulled {
                let _ = self.images.release(&cid, &plan.path).await;
            }
            return Err(AgentError::failed_precondition(
                "the sandbox container has exited: its pid namespace cannot be joined",
            ));
        }
        let created = self
            .host
            .create_container(ContainerPlan {
                container_id: cid.clone(),
                spec,
                rootfs: plan.path.clone(),
                sandbox_container: self.sandbox_container_id(),
                sandbox_init_pid,
                join_sandbox_pid_ns: join_sandbox_pid_ns && sandbox_init_pid.is_some(),
            })
            .await;
        let spawned = match created {
            Ok(s) => {
                tracing::debug!(
                    container = cid,
                    total_ms = started.elapsed().as_millis() as u64,
                    "container created"
                );
                s
            }
            Err(e) => {
                if pulled {
                    let _ = self.images.release(&cid, &plan.path).await;
                }
                return Err(host_error(e));
            }
        };
        let container = Arc::new(Container {
            id: cid.clone(),
            status: Mutex::new(Status::Created),
            init: Proc::new(spawned),
            rootfs: plan.path,
            pulled,
            execs: Mutex::new(Vec::new()),
        });
        self.map().insert(cid.clone(), container);
        let mut sb = self
            .sandbox_container
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if sb.is_none() {
            *sb = Some(cid);
        }
        Ok(())
    }

    fn has_sandbox_container(&self) -> bool {
        self.sandbox_container_id().is_some()
    }

    fn sandbox_container_id(&self) -> Option<String> {
        self.sandbox_container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sandbox_init_pid(&self) -> Option<i32> {
        let sb = self.sandbox_container_id()?;
        let c = self.map().get(&sb).cloned()?;
        c.init.exit_code().is_none().then_some(c.init.pid)
    }

    /// StartContainer: the init process execs the container's program (once).
    pub async fn start(&self, cid: &str) -> Result<(), AgentError> {
        let c = self.get(cid)?;
        {
            let mut st = c.status.lock().unwrap_or_else(|p| p.into_inner());
            if *st != Status::Created || c.init.exit_code().is_some() {
                return Err(AgentError::failed_precondition(format!(
                    "container {cid:?} was already started"
                )));
            }
            *st = Status::Running;
        }
        self.host.start_container(cid).await.map_err(host_error)
    }

    /// ExecProcess: another process in a running container.
    pub async fn exec(&self, req: ExecProcessRequest) -> Result<(), AgentError> {
        validate_id("exec_id", &req.exec_id)?;
        let c = self.get(&req.container_id)?;
        if c.status() != Status::Running || c.init.exit_code().is_some() {
            return Err(AgentError::failed_precondition(format!(
                "container {:?} is not running",
                req.container_id
            )));
        }
        let wire = req
            .process
            .as_ref()
            .ok_or_else(|| AgentError::invalid_argument("ExecProcess needs a process"))?;
        if wire.args.is_empty() {
            return Err(AgentError::invalid_argument("process has no Args to run"));
        }
        let mut process = agent_protocol::types::Spec {
            process: Some(wire.clone()),
            ..Default::default()
        }
        .to_oci()
        .map_err(|e| AgentError::invalid_argument(e.to_string()))?
        .process()
        .clone()
        .ok_or_else(|| AgentError::invalid_argument("process did not convert"))?;
        user::apply(&c.rootfs, &mut process, req.string_user.as_ref())?;
        if c.execs().iter().any(|(id, _)| *id == req.exec_id) {
            return Err(AgentError::already_exists(format!(
                "process {:?} already exists",
                req.exec_id
            )));
        }
        let spawned = self
            .host
            .exec_process(&req.container_id, &process)
            .await
            .map_err(host_error)?;
        let mut execs = c.execs();
        execs.push((req.exec_id, Proc::new(spawned)));
        forget_old_execs(&mut execs);
        Ok(())
    }

    /// WaitProcess: the exit status (at once if it already exited).
    pub async fn wait(&self, cid: &str, exec_id: &str) -> Result<i32, AgentError> {
        let p = self.process(cid, exec_id)?;
        Ok(p.wait().await)
    }

    /// SignalProcess: one process, or every process of the container for an empty exec id.
    pub fn signal(&self, cid: &str, exec_id: &str, signal: u32) -> Result<(), AgentError> {
        let sig = i32::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| AgentError::invalid_argument(format!("invalid signal {signal}")))?;
        let p = self.process(cid, exec_id)?;
        if exec_id.is_empty() {
            if p.exit_code().is_some() {
                // The init is gone (its pid may be reused); with a pid namespace every other
                // process of the container died with it.
                return Ok(());
            }
            return self.host.signal_container(cid, sig).map_err(host_error);
        }
        if p.exit_code().is_some() {
            return Err(AgentError::failed_precondition(format!(
                "process {exec_id:?} has exited"
            )));
        }
        self.host.signal_process(p.pid, sig).map_err(host_error)
    }

    /// ReadStdout / ReadStderr.
    pub(crate) async fn read(
        &self,
        cid: &str,
        exec_id: &str,
        which: Stream,
        len: u32,
    ) -> Result<Vec<u8>, AgentError> {
        self.process(cid, exec_id)?.read(which, len).await
    }

    /// WriteStdin.
    pub async fn write_stdin(
        &self,
        cid: &str,
        exec_id: &str,
        data: &[u8],
    ) -> Result<u32, AgentError> {
        self.process(cid, exec_id)?.write_stdin(data).await
    }

    /// CloseStdin.
    pub async fn close_stdin(&self, cid: &str, exec_id: &str) -> Result<(), AgentError> {
        self.process(cid, exec_id)?.close_stdin().await
    }

    /// TtyWinResize.
    pub fn resize(&self, cid: &str, exec_id: &str, rows: u32, cols: u32) -> Result<(), AgentError> {
        self.process(cid, exec_id)?.resize(rows, cols)
    }

    /// StatsContainer.
    pub async fn stats(&self, cid: &str) -> Result<StatsContainerResponse, AgentError> {
        self.get(cid)?;
        let cgroup: CgroupStats = self.host.stats(cid).await.map_err(host_error)?;
        Ok(StatsContainerResponse {
            cgroup_stats: Some(cgroup),
            network_stats: Vec::new(),
        })
    }

    /// PauseContainer / ResumeContainer.
    pub async fn set_paused(&self, cid: &str, paused: bool) -> Result<(), AgentError> {
        let c = self.get(cid)?;
        let (from, to) = if paused {
            (Status::Running, Status::Paused)
        } else {
            (Status::Paused, Status::Running)
        };
        if c.status() != from || c.init.exit_code().is_some() {
            return Err(AgentError::failed_precondition(format!(
                "container {cid:?} is not {}",
                if paused { "running" } else { "paused" }
            )));
        }
        self.host
            .set_frozen(cid, paused)
            .await
            .map_err(host_error)?;
        c.set_status(to);
        Ok(())
    }

    /// UpdateContainer.
    pub async fn update(
        &self,
        cid: &str,
        resources: Option<&agent_protocol::types::LinuxResources>,
    ) -> Result<(), AgentError> {
        self.get(cid)?;
        let Some(r) = resources else {
            return Ok(());
        };
        let r = r
            .to_oci()
            .map_err(|e| AgentError::invalid_argument(e.to_string()))?;
        self.host
            .update_resources(cid, &r)
            .await
            .map_err(host_error)
    }

    /// RemoveContainer: kill every process, wait up to `timeout_secs` (0 = no limit) for the
    /// init to be reaped, then release cgroup and rootfs.
    pub async fn remove(&self, cid: &str, timeout_secs: u32) -> Result<(), AgentError> {
        let c = self.get(cid)?;
        if c.init.exit_code().is_none() {
            if c.status() == Status::Paused {
                let _ = self.host.set_frozen(cid, false).await;
            }
            self.host.signal_container(cid, 9).map_err(host_error)?;
            let waited = c.init.wait();
            if timeout_secs == 0 {
                waited.await;
            } else if tokio::time::timeout(Duration::from_secs(timeout_secs.into()), waited)
                .await
                .is_err()
            {
                return Err(AgentError::deadline_exceeded(format!(
                    "container {cid:?} did not stop within {timeout_secs} s"
                )));
            }
        }
        // Last look at the cgroup's OOM counter before it goes away.
        let kills = self.host.oom_kill_count(cid);
        let seen = self
            .oom_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cid)
            .copied()
            .unwrap_or(0);
        if kills > seen {
            self.oom_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(cid.to_string());
            self.oom_wake.notify_one();
        }
        self.host.remove_container(cid).await.map_err(host_error)?;
        if c.pulled {
            self.images
                .release(&c.id, &c.rootfs)
                .await
                .map_err(image_error)?;
        }
        self.map().remove(cid);
        self.oom_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cid);
        let mut sb = self
            .sandbox_container
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if sb.as_deref() == Some(cid) {
            *sb = None;
        }
        Ok(())
    }

    /// Removes every container (DestroySandbox), best effort.
    pub async fn remove_all(&self) {
        for cid in self.container_ids() {
            if let Err(e) = self.remove(&cid, 10).await {
                tracing::warn!(container = cid, error = %e.message(), "remove on destroy failed");
            }
        }
    }

    /// SetGuestDateTime.
    pub fn set_time(&self, sec: i64, usec: i64) -> Result<(), AgentError> {
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(AgentError::invalid_argument(format!(
                "invalid time {sec}.{usec:06}"
            )));
        }
        self.host.set_time(sec, usec).map_err(host_error)
    }

    /// GetOOMEvent: waits until a container's cgroup records a new OOM kill (or one was
    /// found when its container was removed).
    pub async fn next_oom_event(&self) -> String {
        loop {
            let pending = self
                .oom_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            if let Some(cid) = pending {
                return cid;
            }
            for cid in self.container_ids() {
                let n = self.host.oom_kill_count(&cid);
                let mut seen = self.oom_seen.lock().unwrap_or_else(|p| p.into_inner());
                let last = seen.entry(cid.clone()).or_insert(0);
                if n > *last {
                    *last = n;
                    return cid;
                }
            }
            let _ = tokio::time::timeout(OOM_POLL, self.oom_wake.notified()).await;
        }
    }
}

fn forget_old_execs(execs: &mut Vec<(String, Arc<Proc>)>) {
    let finished = execs.iter().filter(|(_, p)| p.finished()).count();
    let mut excess = finished.saturating_sub(KEPT_FINISHED_EXECS);
    execs.retain(|(_, p)| {
        if excess > 0 && p.finished() {
            excess -= 1;
            false
        } else {
            true
        }
    });
}

/// Resolves named users of the spec's process through the container's rootfs.
fn with_resolved_user(
    spec: &mut oci_spec::runtime::Spec,
    rootfs: &std::path::Path,
    string_user: Option<&agent_protocol::types::StringUser>,
) -> Result<(), AgentError> {
    if let Some(mut p) = spec.process().clone() {
        user::apply(rootfs, &mut p, string_user)?;
        spec.set_process(Some(p));
    }
    Ok(())
}
