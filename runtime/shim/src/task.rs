//! containerd's task API (ttRPC `containerd.task.v2.Task`) mapped onto [`TaskService`].

use std::sync::Arc;

use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PauseRequest,
    PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
    StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, Status as ApiStatus,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use runtime_core::{CoreError, Status, Stdio};

use crate::events::timestamp;
use crate::service::{CreateParams, ServiceError, TaskService};

/// The ttRPC task service of the shim.
pub struct ShimTask {
    /// The pod's service.
    pub service: Arc<TaskService>,
}

/// Maps a service error to a ttRPC status containerd understands.
pub fn to_ttrpc(e: ServiceError) -> ttrpc::Error {
    let code = match &e {
        ServiceError::Core(c) => match c {
            CoreError::NotFound { .. } => Code::NOT_FOUND,
            CoreError::AlreadyExists { .. } => Code::ALREADY_EXISTS,
            CoreError::InvalidState { .. } => Code::FAILED_PRECONDITION,
            _ => Code::INVALID_ARGUMENT,
        },
        ServiceError::Agent(a) => match a.code() {
            agent_protocol::Code::NotFound => Code::NOT_FOUND,
            agent_protocol::Code::InvalidArgument => Code::INVALID_ARGUMENT,
            agent_protocol::Code::AlreadyExists => Code::ALREADY_EXISTS,
            agent_protocol::Code::FailedPrecondition => Code::FAILED_PRECONDITION,
            agent_protocol::Code::PermissionDenied => Code::PERMISSION_DENIED,
            agent_protocol::Code::Unimplemented => Code::UNIMPLEMENTED,
            agent_protocol::Code::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
            _ => Code::UNKNOWN,
        },
        ServiceError::Vmm(_) | ServiceError::Io(_) => Code::UNKNOWN,
    };
    tracing::info!(error = %e, ?code, "task request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

fn api_status(s: Status) -> ApiStatus {
    match s {
        Status::Created => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Paused => ApiStatus::PAUSED,
        Status::Stopped => ApiStatus::STOPPED,
    }
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Extracts `ConfigPath` from containerd's runtime options (`runtimeoptions.v1.Options`:
/// `type_url = 1`, `config_path = 2`, both strings).
pub fn config_path_option(options: Option<&Any>) -> Option<String> {
    let any = options?;
    if !any.type_url.ends_with("runtimeoptions.v1.Options") {
        return None;
    }
    let buf = &any.value;
    let mut pos = 0;
    let mut found = None;
    while pos < buf.len() {
        let tag = read_varint(buf, &mut pos)?;
        match tag & 7 {
            0 => {
                read_varint(buf, &mut pos)?;
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                if tag >> 3 == 2 {
                    found = Some(String::from_utf8_lossy(&buf[pos..end]).into_owned());
                }
                pos = end;
            }
            _ => return found,
        }
    }
    found
}

fn metrics_any(s: &agent_protocol::types::StatsContainerResponse) -> ttrpc::Result<Any> {
    let mut m = Metrics::new();
    if let Some(cg) = &s.cgroup_stats {
        if let Some(cpu) = cg.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref()) {
            m.cpu = Some(CPUStat {
                usage: Some(CPUUsage {
                    total: cpu.total_usage,
                    kernel: cpu.usage_in_kernelmode,
                    user: cpu.usage_in_usermode,
                    per_cpu: cpu.percpu_usage.clone(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into();
        }
        if let Some(mem) = &cg.memory_stats {
            let usage = mem.usage.as_ref().map(|u| MemoryEntry {
                usage: u.usage,
                max: u.max_usage,
                limit: u.limit,
                failcnt: u.failcnt,
                ..Default::default()
            });
            m.memory = Some(MemoryStat {
                cache: mem.cache,
                usage: usage.into(),
                ..Default::default()
            })
            .into();
        }
        if let Some(p) = &cg.pids_stats {
            m.pids = Some(PidsStat {
                current: p.current,
                limit: p.limit,
                ..Default::default()
            })
            .into();
        }
    }
    crate::events::to_any(&m)
        .map_err(|e| ttrpc::Error::RpcStatus(ttrpc::get_status(Code::INTERNAL, e.to_string())))
}

#[async_trait::async_trait]
impl Task for ShimTask {
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let v = self
            .service
            .state(&req.id, &req.exec_id)
            .await
            .map_err(to_ttrpc)?;
        Ok(StateResponse {
            id: req.id,
            bundle: v.bundle,
            pid: v.pid,
            status: api_status(v.status).into(),
            stdin: v.stdio.stdin,
            stdout: v.stdio.stdout,
            stderr: v.stdio.stderr,
            terminal: v.stdio.terminal,
            exit_status: v.exit.map(|e| e.status).unwrap_or(0),
            exited_at: v.exit.map(|e| timestamp(e.at)).into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let params = CreateParams {
            id: req.id.clone(),
            bundle: req.bundle.clone().into(),
            stdio: Stdio {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            config_path: config_path_option(req.options.as_ref()),
        };
        let pid = self.service.create(params).await.map_err(to_ttrpc)?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let pid = self
            .service
            .start(&req.id, &req.exec_id)
            .await
            .map_err(to_ttrpc)?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        let (pid, exit) = self
            .service
            .delete(&req.id, &req.exec_id)
            .await
            .map_err(to_ttrpc)?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        self.service.state(&req.id, "").await.map_err(to_ttrpc)?;
        let pid = self.service.task_pid().await;
        let info = containerd_shim_protos::types::task::ProcessInfo {
            pid,
            ..Default::default()
        };
        Ok(PidsResponse {
            processes: vec![info],
            ..Default::default()
        })
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        self.service
            .set_paused(&req.id, true)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        self.service
            .set_paused(&req.id, false)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        self.service
            .kill(&req.id, &req.exec_id, req.signal)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        self.service
            .exec(&req.id, &req.exec_id, stdio, &spec)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        self.service
            .resize_pty(&req.id, &req.exec_id, req.width, req.height)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        if req.stdin {
            self.service
                .close_stdin(&req.id, &req.exec_id)
                .await
                .map_err(to_ttrpc)?;
        }
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let json = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        self.service
            .update(&req.id, &json)
            .await
            .map_err(to_ttrpc)?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let e = self
            .service
            .wait(&req.id, &req.exec_id)
            .await
            .map_err(to_ttrpc)?;
        Ok(WaitResponse {
            exit_status: e.status,
            exited_at: Some(timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let s = self.service.stats(&req.id).await.map_err(to_ttrpc)?;
        Ok(StatsResponse {
            stats: Some(metrics_any(&s)?).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        _req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.service.task_pid().await,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        if req.now || self.service.is_empty().await {
            self.service.stop_vm().await;
            self.service.exit.notify_one();
        }
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_path_is_decoded_from_runtime_options() {
        // runtimeoptions.v1.Options{type_url: "x", config_path: "/opt/c.toml"}
        let mut value = vec![0x0a, 1, b'x', 0x12, 11];
        value.extend_from_slice(b"/opt/c.toml");
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: value.clone(),
            ..Default::default()
        };
        assert_eq!(
            config_path_option(Some(&any)).as_deref(),
            Some("/opt/c.toml")
        );
        let other = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value,
            ..Default::default()
        };
        assert_eq!(config_path_option(Some(&other)), None);
        let truncated = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: vec![0x12, 50, b'/'],
            ..Default::default()
        };
        assert_eq!(config_path_option(Some(&truncated)), None);
        assert_eq!(config_path_option(None), None);
    }
}
