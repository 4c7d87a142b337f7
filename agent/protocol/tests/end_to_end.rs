//! In-process end to end: `serve` on a Unix socket in a temp dir, `AgentClient` over it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_protocol::types::*;
use agent_protocol::{
    AgentClient, AgentDispatcher, AgentError, AgentRequest, AgentResponse, ClientError, Code,
    ProtocolError, async_trait, serve, serve_stream,
};
use tokio::sync::oneshot;

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<AgentRequest>>,
}

#[async_trait]
impl AgentDispatcher for Recorder {
    async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError> {
        self.calls.lock().unwrap().push(req.clone());
        match req {
            AgentRequest::Check(_) => Ok(AgentResponse::HealthCheck(HealthCheckResponse {
                status: ServingStatus::Serving,
            })),
            AgentRequest::Version(_) => Ok(AgentResponse::Version(VersionCheckResponse {
                grpc_version: "test-grpc".into(),
                agent_version: "test-agent".into(),
            })),
            AgentRequest::GetGuestDetails(_) => {
                Ok(AgentResponse::GuestDetails(GuestDetailsResponse {
                    mem_block_size_bytes: 1 << 27,
                    agent_details: Some(AgentDetails {
                        version: "9.9.9".into(),
                        init_daemon: true,
                        ..Default::default()
                    }),
                    support_mem_hotplug_probe: false,
                }))
            }
            AgentRequest::CreateContainer(_) => Ok(AgentResponse::Empty),
            AgentRequest::WaitProcess(r) if r.container_id == "missing" => {
                Err(AgentError::not_found("container missing not found"))
            }
            AgentRequest::WaitProcess(_) => Ok(AgentResponse::WaitProcess(WaitProcessResponse {
                status: 137,
            })),
            AgentRequest::ReadStdout(r) => Ok(AgentResponse::ReadStream(ReadStreamResponse {
                data: format!("out of {}", r.exec_id).into_bytes(),
            })),
            AgentRequest::SetPolicy(_) => Err(AgentError::permission_denied(
                "SetPolicyRequest is blocked by policy",
            )),
            // Wrong variant on purpose: must come back INTERNAL.
            AgentRequest::StatsContainer(_) => Ok(AgentResponse::Empty),
            AgentRequest::GetOOMEvent(_) => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(AgentResponse::OOMEvent(OOMEvent::default()))
            }
            other => Err(AgentError::unimplemented(other.rpc_name())),
        }
    }
}

struct Running {
    _dir: tempfile::TempDir,
    address: String,
    path: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ProtocolError>>,
}

async fn start(dispatcher: Arc<dyn AgentDispatcher>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let address = format!("unix://{}", path.display());
    let (stop, stopped) = oneshot::channel::<()>();
    let serve_address = address.clone();
    let task = tokio::spawn(async move {
        serve(&serve_address, dispatcher, async {
            let _ = stopped.await;
        })
        .await
    });
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(path.exists(), "server did not create {}", path.display());
    Running {
        _dir: dir,
        address,
        path,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
        assert!(!self.path.exists(), "socket file removed on shutdown");
    }
}

fn rpc_error(result: Result<impl std::fmt::Debug, ClientError>) -> (Code, String) {
    match result.expect_err("expected an error") {
        ClientError::Rpc { code, message } => (code, message),
        other => panic!("expected an RPC status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_details_and_error_codes_over_a_unix_socket() {
    let recorder = Arc::new(Recorder::default());
    let server = start(recorder.clone()).await;
    let client = AgentClient::connect(&server.address).await.unwrap();

    let health = client.check(CheckRequest::default()).await.unwrap();
    assert_eq!(health.status, ServingStatus::Serving);
    let version = client.version(CheckRequest::default()).await.unwrap();
    assert_eq!(version.agent_version, "test-agent");

    let details = client
        .guest_details(GuestDetailsRequest {
            mem_block_size: true,
            mem_hotplug_probe: true,
        })
        .await
        .unwrap();
    assert_eq!(details.mem_block_size_bytes, 1 << 27);
    assert_eq!(details.agent_details.unwrap().version, "9.9.9");

    // UNIMPLEMENTED from the dispatcher, with its plain message.
    let (code, message) = rpc_error(client.get_metrics(GetMetricsRequest {}).await);
    assert_eq!(code, Code::Unimplemented);
    assert_eq!(message, "GetMetrics is not implemented");

    // PERMISSION_DENIED.
    let (code, message) = rpc_error(
        client
            .set_policy(SetPolicyRequest {
                policy: "package agent_policy".into(),
            })
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(message, "SetPolicyRequest is blocked by policy");

    // NOT_FOUND, and a typed success.
    let (code, _) = rpc_error(
        client
            .wait_process(WaitProcessRequest {
                container_id: "missing".into(),
                exec_id: "e".into(),
            })
            .await,
    );
    assert_eq!(code, Code::NotFound);
    let waited = client
        .wait_process(WaitProcessRequest {
            container_id: "c1".into(),
            exec_id: "c1".into(),
        })
        .await
        .unwrap();
    assert_eq!(waited.status, 137);

    // A response variant that does not fit the RPC is INTERNAL.
    let (code, message) = rpc_error(
        client
            .stats_container(StatsContainerRequest {
                container_id: "c1".into(),
            })
            .await,
    );
    assert_eq!(code, Code::Internal);
    assert!(message.contains("StatsContainer"), "{message}");

    // The generic call and the request that reached the dispatcher.
    let sent = CreateContainerRequest {
        container_id: "c1".into(),
        storages: vec![Storage {
            driver: "local".into(),
            mount_point: "/run/kata-containers/c1/rootfs".into(),
            ..Default::default()
        }],
        oci: Some(Spec {
            version: "1.1.0".into(),
            process: Some(Process {
                args: vec!["/bin/true".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = client
        .call(AgentRequest::CreateContainer(sent.clone()))
        .await
        .unwrap();
    assert_eq!(response, AgentResponse::Empty);
    let response = client
        .call(AgentRequest::ReadStdout(ReadStreamRequest {
            container_id: "c1".into(),
            exec_id: "e7".into(),
            len: 10,
        }))
        .await
        .unwrap();
    assert_eq!(
        response,
        AgentResponse::ReadStream(ReadStreamResponse {
            data: b"out of e7".to_vec()
        })
    );
    let received = recorder
        .calls
        .lock()
        .unwrap()
        .iter()
        .find_map(|r| match r {
            AgentRequest::CreateContainer(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        received, sent,
        "the dispatcher sees exactly what the host sent"
    );

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_is_routed_to_its_own_variant() {
    // Deny-all over the real wire: each of the 44 methods must arrive as the right variant.
    struct DenyAll(Mutex<Vec<&'static str>>);
    #[async_trait]
    impl AgentDispatcher for DenyAll {
        async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError> {
            self.0.lock().unwrap().push(req.rpc_name());
            Err(AgentError::permission_denied(format!(
                "{} is blocked by policy",
                req.policy_rule()
            )))
        }
    }
    let deny = Arc::new(DenyAll(Mutex::new(Vec::new())));
    let server = start(deny.clone()).await;
    let client = AgentClient::connect(&server.address).await.unwrap();
    let all: Vec<_> = AgentRequest::HEALTH_RPCS
        .iter()
        .chain(AgentRequest::AGENT_RPCS)
        .collect();
    assert_eq!(all.len(), 44);
    for info in &all {
        let req = AgentRequest::default_for(info.rpc).unwrap();
        let (code, message) = rpc_error(client.call(req).await);
        assert_eq!(code, Code::PermissionDenied, "{}", info.rpc);
        assert_eq!(
            message,
            format!("{} is blocked by policy", info.policy_rule)
        );
    }
    let seen = deny.0.lock().unwrap().clone();
    let expected: Vec<_> = all.iter().map(|i| i.rpc).collect();
    assert_eq!(seen, expected);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_timeout_is_reported_as_timeout() {
    let server = start(Arc::new(Recorder::default())).await;
    let client = AgentClient::connect(&server.address)
        .await
        .unwrap()
        .with_long_poll_timeout(Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    let err = client
        .get_oom_event(GetOOMEventRequest {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                rpc: "GetOOMEvent",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection still works afterwards.
    let health = client.check(CheckRequest::default()).await.unwrap();
    assert_eq!(health.status, ServingStatus::Serving);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stream_answers_on_a_connected_socketpair() {
    let (agent_end, host_end) = tokio::net::UnixStream::pair().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_stream(
        agent_end,
        Arc::new(Recorder::default()),
        async {
            let _ = stopped.await;
        },
    ));
    let client = AgentClient::from_tokio_unix_stream(host_end).unwrap();
    let health = client.check(CheckRequest::default()).await.unwrap();
    assert_eq!(health.status, ServingStatus::Serving);
    // Dropping the host end ends serve_stream (peer EOF) without the shutdown signal.
    drop(client);
    let result = tokio::time::timeout(Duration::from_secs(15), task).await;
    let served = result
        .expect("serve_stream returns after peer EOF")
        .unwrap();
    served.unwrap();
    drop(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_unix_stream_client_and_stale_socket_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    // A stale socket file: bound, then the listener is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let address = format!("unix://{}", path.display());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let address = address.clone();
        async move {
            serve(&address, Arc::new(Recorder::default()), async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let mut stream = None;
    for _ in 0..200 {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&path) {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = AgentClient::from_unix_stream(stream.expect("server listening")).unwrap();
    let health = client.check(CheckRequest::default()).await.unwrap();
    assert_eq!(health.status, ServingStatus::Serving);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_addresses_are_clear_errors() {
    let err = serve("tcp://127.0.0.1:1", Arc::new(Recorder::default()), async {})
        .await
        .unwrap_err();
    assert!(matches!(err, ProtocolError::InvalidAddress { .. }), "{err}");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");

    let err = serve(
        "unix:///nonexistent-dir/for/sure/agent.sock",
        Arc::new(Recorder::default()),
        async {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProtocolError::Bind { .. }), "{err}");

    let err = AgentClient::connect("vsock://-1:1024").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", dir.path().join("none.sock").display());
    let err = AgentClient::connect(&missing).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

#[test]
fn client_outside_a_runtime_is_an_error_not_a_panic() {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let err = AgentClient::from_unix_stream(a).unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}
