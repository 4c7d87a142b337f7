//! Request handlers: each a line or three of routing to a typed service. Reached only through
//! the dispatcher, after the policy gate.

use agent_protocol::types::{
    AgentDetails, GuestDetailsResponse, HealthCheckResponse, Interfaces, OOMEvent,
    ReadStreamResponse, Routes, ServingStatus, VersionCheckResponse, WaitProcessResponse,
    WriteStreamResponse,
};
use agent_protocol::{AgentError, AgentRequest, AgentResponse, Code};

use crate::Services;
use crate::container::Stream;
use crate::error::host_error;

const EMPTY: Result<AgentResponse, AgentError> = Ok(AgentResponse::Empty);

pub(crate) async fn handle(s: &Services, req: AgentRequest) -> Result<AgentResponse, AgentError> {
    let c = &s.containers;
    match req {
        AgentRequest::Check(_) => Ok(AgentResponse::HealthCheck(HealthCheckResponse {
            status: ServingStatus::Serving,
        })),
        AgentRequest::Version(_) => Ok(AgentResponse::Version(VersionCheckResponse {
            grpc_version: agent_protocol::PROTOCOL_VERSION.to_string(),
            agent_version: s.sandbox.info().agent_version.clone(),
        })),
        AgentRequest::GetGuestDetails(r) => Ok(AgentResponse::GuestDetails(guest_details(
            s,
            r.mem_block_size,
        ))),
        AgentRequest::CreateSandbox(r) => s
            .sandbox
            .create(&r)
            .map(|()| c.set_sandbox_pidns(r.sandbox_pidns))
            .and(EMPTY),
        AgentRequest::DestroySandbox(_) => {
            c.remove_all().await;
            s.sandbox.destroy();
            EMPTY
        }
        AgentRequest::CreateContainer(r) => c.create(r).await.and(EMPTY),
        AgentRequest::StartContainer(r) => c.start(&r.container_id).await.and(EMPTY),
        AgentRequest::RemoveContainer(r) => c.remove(&r.container_id, r.timeout).await.and(EMPTY),
        AgentRequest::ExecProcess(r) => c.exec(r).await.and(EMPTY),
        AgentRequest::WaitProcess(r) => c
            .wait(&r.container_id, &r.exec_id)
            .await
            .map(|status| AgentResponse::WaitProcess(WaitProcessResponse { status })),
        AgentRequest::SignalProcess(r) => {
            c.signal(&r.container_id, &r.exec_id, r.signal).and(EMPTY)
        }
        AgentRequest::ReadStdout(r) => {
            read(s, &r.container_id, &r.exec_id, Stream::Stdout, r.len).await
        }
        AgentRequest::ReadStderr(r) => {
            read(s, &r.container_id, &r.exec_id, Stream::Stderr, r.len).await
        }
        AgentRequest::WriteStdin(r) => c
            .write_stdin(&r.container_id, &r.exec_id, &r.data)
            .await
            .map(|len| AgentResponse::WriteStream(WriteStreamResponse { len })),
        AgentRequest::CloseStdin(r) => c.close_stdin(&r.container_id, &r.exec_id).await.and(EMPTY),
        AgentRequest::TtyWinResize(r) => c
            .resize(&r.container_id, &r.exec_id, r.row, r.column)
            .and(EMPTY),
        AgentRequest::StatsContainer(r) => c
            .stats(&r.container_id)
            .await
            .map(AgentResponse::StatsContainer),
        AgentRequest::PauseContainer(r) => c.set_paused(&r.container_id, true).await.and(EMPTY),
        AgentRequest::ResumeContainer(r) => c.set_paused(&r.container_id, false).await.and(EMPTY),
        AgentRequest::UpdateContainer(r) => c
            .update(&r.container_id, r.resources.as_ref())
            .await
            .and(EMPTY),
        AgentRequest::CopyFile(r) => s.copy_file.copy(&r).and(EMPTY),
        AgentRequest::GetOOMEvent(_) => {
            // A long poll outstanding at DestroySandbox ends with it, so the server's
            // graceful stop (which waits for requests in flight) is not held up.
            tokio::select! {
                cid = c.next_oom_event() => Ok(AgentResponse::OOMEvent(OOMEvent { container_id: cid })),
                () = s.sandbox.shutdown_requested() => Err(AgentError::new(
                    Code::Unavailable,
                    "the sandbox is being destroyed: no more OOM events",
                )),
            }
        }
        AgentRequest::SetGuestDateTime(r) => c.set_time(r.sec, r.usec).and(EMPTY),
        AgentRequest::ListInterfaces(_) => {
            let net = network(s, "ListInterfaces")?;
            let interfaces = net.list_interfaces().await.map_err(host_error)?;
            Ok(AgentResponse::Interfaces(Interfaces { interfaces }))
        }
        AgentRequest::UpdateInterface(r) => {
            let net = network(s, "UpdateInterface")?;
            let iface = r.interface.ok_or_else(|| {
                AgentError::invalid_argument("UpdateInterface needs an interface")
            })?;
            net.update_interface(&iface)
                .await
                .map(AgentResponse::Interface)
                .map_err(host_error)
        }
        AgentRequest::UpdateRoutes(r) => {
            let net = network(s, "UpdateRoutes")?;
            let routes = r.routes.map(|r| r.routes).unwrap_or_default();
            let routes = net.update_routes(&routes).await.map_err(host_error)?;
            Ok(AgentResponse::Routes(Routes { routes }))
        }
        AgentRequest::ListRoutes(_) => {
            let net = network(s, "ListRoutes")?;
            let routes = net.list_routes().await.map_err(host_error)?;
            Ok(AgentResponse::Routes(Routes { routes }))
        }
        AgentRequest::AddARPNeighbors(r) => {
            let net = network(s, "AddARPNeighbors")?;
            let n = r.neighbors.map(|n| n.neighbors).unwrap_or_default();
            net.add_arp_neighbors(&n)
                .await
                .map_err(host_error)
                .and(EMPTY)
        }
        other => Err(AgentError::unimplemented(other.rpc_name())),
    }
}

async fn read(
    s: &Services,
    cid: &str,
    exec_id: &str,
    which: Stream,
    len: u32,
) -> Result<AgentResponse, AgentError> {
    let data = s.containers.read(cid, exec_id, which, len).await?;
    Ok(AgentResponse::ReadStream(ReadStreamResponse { data }))
}

fn network<'a>(
    s: &'a Services,
    rpc: &str,
) -> Result<&'a std::sync::Arc<dyn crate::NetworkHost>, AgentError> {
    s.network
        .as_ref()
        .ok_or_else(|| AgentError::unimplemented(rpc))
}

fn guest_details(s: &Services, want_block_size: bool) -> GuestDetailsResponse {
    let info = s.sandbox.info();
    GuestDetailsResponse {
        mem_block_size_bytes: if want_block_size {
            info.mem_block_size_bytes
        } else {
            0
        },
        agent_details: Some(AgentDetails {
            version: info.agent_version.clone(),
            init_daemon: std::process::id() == 1,
            device_handlers: info.device_handlers.clone(),
            storage_handlers: info.storage_handlers.clone(),
            supports_seccomp: info.supports_seccomp,
            extra_features: Vec::new(),
        }),
        support_mem_hotplug_probe: false,
    }
}
