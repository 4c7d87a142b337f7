//! Request handlers: each one line of routing to a typed service. Reached only through the
//! dispatcher, after the policy gate.

use agent_protocol::types::{
    AgentDetails, GuestDetailsResponse, HealthCheckResponse, ServingStatus, VersionCheckResponse,
};
use agent_protocol::{AgentError, AgentRequest, AgentResponse};

use crate::sandbox::SandboxService;

pub(crate) async fn handle(
    sandbox: &SandboxService,
    req: AgentRequest,
) -> Result<AgentResponse, AgentError> {
    match req {
        AgentRequest::Check(_) => Ok(AgentResponse::HealthCheck(HealthCheckResponse {
            status: ServingStatus::Serving,
        })),
        AgentRequest::Version(_) => Ok(AgentResponse::Version(VersionCheckResponse {
            grpc_version: agent_protocol::PROTOCOL_VERSION.to_string(),
            agent_version: sandbox.info().agent_version.clone(),
        })),
        AgentRequest::GetGuestDetails(r) => Ok(AgentResponse::GuestDetails(guest_details(
            sandbox,
            r.mem_block_size,
        ))),
        AgentRequest::DestroySandbox(_) => {
            sandbox.destroy();
            Ok(AgentResponse::Empty)
        }
        other => Err(AgentError::unimplemented(other.rpc_name())),
    }
}

fn guest_details(sandbox: &SandboxService, want_block_size: bool) -> GuestDetailsResponse {
    let info = sandbox.info();
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
            supports_seccomp: false,
            extra_features: Vec::new(),
        }),
        support_mem_hotplug_probe: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agent_protocol::{AgentDispatcher, Code};

    use crate::{AllowAll, DenyAll, Dispatcher, GuestInfo, SandboxService};

    use super::*;

    fn service() -> Arc<SandboxService> {
        Arc::new(SandboxService::new(GuestInfo {
            agent_version: "9.9.9".into(),
            mem_block_size_bytes: 128 << 20,
            storage_handlers: vec!["image_guest_pull".into()],
            device_handlers: vec![],
        }))
    }

    #[tokio::test]
    async fn health_version_details_and_destroy() {
        let sb = service();
        let d = Dispatcher::new(Arc::new(AllowAll), sb.clone());
        let r = d
            .dispatch(AgentRequest::Check(Default::default()))
            .await
            .unwrap();
        assert_eq!(
            r,
            AgentResponse::HealthCheck(HealthCheckResponse {
                status: ServingStatus::Serving
            })
        );
        let AgentResponse::Version(v) = d
            .dispatch(AgentRequest::Version(Default::default()))
            .await
            .unwrap()
        else {
            panic!("version")
        };
        assert_eq!(v.agent_version, "9.9.9");
        let req = agent_protocol::types::GuestDetailsRequest {
            mem_block_size: true,
            ..Default::default()
        };
        let AgentResponse::GuestDetails(g) = d
            .dispatch(AgentRequest::GetGuestDetails(req))
            .await
            .unwrap()
        else {
            panic!("details")
        };
        assert_eq!(g.mem_block_size_bytes, 128 << 20);
        assert_eq!(
            g.agent_details.unwrap().storage_handlers,
            ["image_guest_pull"]
        );

        let shutdown = sb.shutdown_requested();
        d.dispatch(AgentRequest::DestroySandbox(Default::default()))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), shutdown)
            .await
            .expect("shutdown signalled");
        assert!(!sb.destroy(), "second destroy is a no-op");
    }

    #[tokio::test]
    async fn unimplemented_rpcs_say_so() {
        let d = Dispatcher::new(Arc::new(AllowAll), service());
        let err = d
            .dispatch(AgentRequest::default_for("CreateContainer").unwrap())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    }

    /// Every RPC through the deny-all gate: PERMISSION_DENIED and no side effect.
    #[tokio::test]
    async fn deny_all_sweep() {
        let sb = service();
        let d = Dispatcher::new(Arc::new(DenyAll), sb.clone());
        let all = AgentRequest::AGENT_RPCS
            .iter()
            .chain(AgentRequest::HEALTH_RPCS);
        let mut n = 0;
        for info in all {
            let req = AgentRequest::default_for(info.rpc).unwrap();
            let err = d.dispatch(req).await.unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{}", info.rpc);
            assert!(
                err.message().contains(info.policy_rule),
                "{}",
                err.message()
            );
            n += 1;
        }
        assert_eq!(n, 44);
        assert!(sb.destroy(), "DestroySandbox must not have run");
    }
}
