//! Handler tests against a recording fake host (no root needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use crate::*;
use agent_protocol::types::*;
use agent_protocol::{AgentDispatcher, AgentError, AgentRequest, AgentResponse, Code};

mod fake;
mod gaps;
use fake::{FakeHost, FakeImages, FakeNetwork};

struct Rig {
    host: Arc<FakeHost>,
    images: Arc<FakeImages>,
    network: Arc<FakeNetwork>,
    services: Services,
    _copy_root: tempfile::TempDir,
}

fn rig() -> Rig {
    let host = Arc::new(FakeHost::default());
    let images = Arc::new(FakeImages::default());
    let network = Arc::new(FakeNetwork::default());
    let copy_root = tempfile::tempdir().unwrap();
    let services = Services {
        sandbox: Arc::new(SandboxService::new(GuestInfo {
            agent_version: "9.9.9".into(),
            mem_block_size_bytes: 128 << 20,
            storage_handlers: vec!["image_guest_pull".into()],
            device_handlers: vec![],
            supports_seccomp: true,
        })),
        containers: Arc::new(ContainerService::new(host.clone(), images.clone())),
        copy_file: Arc::new(CopyFileService::new(copy_root.path().join("shared"))),
        network: Some(network.clone()),
    };
    Rig {
        host,
        images,
        network,
        services,
        _copy_root: copy_root,
    }
}

fn allow(r: &Rig) -> Dispatcher {
    Dispatcher::new(Arc::new(AllowAll), r.services.clone())
}

fn create_req(cid: &str, image: &str) -> CreateContainerRequest {
    let root = format!("/run/kata-containers/{cid}/rootfs");
    CreateContainerRequest {
        container_id: cid.into(),
        storages: vec![Storage {
            driver: "image_guest_pull".into(),
            source: image.into(),
            mount_point: root.clone(),
            ..Default::default()
        }],
        oci: Some(Spec {
            version: "1.1.0".into(),
            process: Some(Process {
                args: vec!["cat".into()],
                cwd: "/".into(),
                ..Default::default()
            }),
            root: Some(Root {
                path: root,
                readonly: false,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn call(d: &Dispatcher, req: AgentRequest) -> Result<AgentResponse, AgentError> {
    tokio::time::timeout(Duration::from_secs(5), d.dispatch(req))
        .await
        .expect("request hung")
}

/// SIGKILLs container `cid`'s init and waits for it.
async fn kill_and_wait(d: &Dispatcher, cid: &str) {
    call(
        d,
        AgentRequest::SignalProcess(SignalProcessRequest {
            container_id: cid.into(),
            exec_id: String::new(),
            signal: 9,
        }),
    )
    .await
    .unwrap();
    call(
        d,
        AgentRequest::WaitProcess(WaitProcessRequest {
            container_id: cid.into(),
            exec_id: String::new(),
        }),
    )
    .await
    .unwrap();
}

fn read_req(cid: &str, exec: &str, len: u32) -> ReadStreamRequest {
    ReadStreamRequest {
        container_id: cid.into(),
        exec_id: exec.into(),
        len,
    }
}

async fn read_exact(d: &Dispatcher, cid: &str, exec: &str, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let AgentResponse::ReadStream(r) =
            call(d, AgentRequest::ReadStdout(read_req(cid, exec, 0)))
                .await
                .unwrap()
        else {
            panic!("read")
        };
        got.extend(r.data);
    }
    got
}

fn write_req(cid: &str, exec: &str, data: &[u8]) -> WriteStreamRequest {
    WriteStreamRequest {
        container_id: cid.into(),
        exec_id: exec.into(),
        data: data.to_vec(),
    }
}

#[tokio::test]
async fn container_lifecycle_through_the_dispatcher() {
    let r = rig();
    let d = allow(&r);
    call(
        &d,
        AgentRequest::CreateContainer(create_req("pause", "docker.io/library/busybox")),
    )
    .await
    .unwrap();
    call(
        &d,
        AgentRequest::CreateContainer(create_req("c2", "cocoon-baked:busybox")),
    )
    .await
    .unwrap();
    let start = |cid: &str| {
        AgentRequest::StartContainer(StartContainerRequest {
            container_id: cid.into(),
        })
    };
    call(&d, start("c2")).await.unwrap();
    // Double start is refused.
    let err = call(&d, start("c2")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Stdin echoes through the fake `cat`.
    let AgentResponse::WriteStream(w) = call(
        &d,
        AgentRequest::WriteStdin(write_req("c2", "", b"hello\n")),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(w.len, 6);
    assert_eq!(read_exact(&d, "c2", "", 6).await, b"hello\n");
    // Exec, signal it, wait gives 128 + 9; waiting again gives the same.
    let exec = ExecProcessRequest {
        container_id: "c2".into(),
        exec_id: "e1".into(),
        process: Some(Process {
            args: vec!["sleep".into(), "100".into()],
            cwd: "/".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    call(&d, AgentRequest::ExecProcess(exec.clone()))
        .await
        .unwrap();
    let err = call(&d, AgentRequest::ExecProcess(exec)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    call(
        &d,
        AgentRequest::SignalProcess(SignalProcessRequest {
            container_id: "c2".into(),
            exec_id: "e1".into(),
            signal: 9,
        }),
    )
    .await
    .unwrap();
    let wait = AgentRequest::WaitProcess(WaitProcessRequest {
        container_id: "c2".into(),
        exec_id: "e1".into(),
    });
    for _ in 0..2 {
        assert_eq!(
            call(&d, wait.clone()).await.unwrap(),
            AgentResponse::WaitProcess(WaitProcessResponse { status: 137 })
        );
    }
    // Stats, pause/resume (state checked), update.
    let AgentResponse::StatsContainer(s) = call(
        &d,
        AgentRequest::StatsContainer(StatsContainerRequest {
            container_id: "c2".into(),
        }),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(s.cgroup_stats.unwrap().pids_stats.unwrap().current, 1);
    let resume = AgentRequest::ResumeContainer(ResumeContainerRequest {
        container_id: "c2".into(),
    });
    assert_eq!(
        call(&d, resume.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    call(
        &d,
        AgentRequest::PauseContainer(PauseContainerRequest {
            container_id: "c2".into(),
        }),
    )
    .await
    .unwrap();
    call(&d, resume).await.unwrap();
    call(
        &d,
        AgentRequest::UpdateContainer(UpdateContainerRequest {
            container_id: "c2".into(),
            resources: Some(LinuxResources {
                memory: Some(LinuxMemory {
                    limit: 64 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
    )
    .await
    .unwrap();
    // Close stdin: `cat` exits 0; the init's Wait returns it; then EOF on stdout.
    call(
        &d,
        AgentRequest::CloseStdin(CloseStdinRequest {
            container_id: "c2".into(),
            exec_id: String::new(),
        }),
    )
    .await
    .unwrap();
    let wait_init = AgentRequest::WaitProcess(WaitProcessRequest {
        container_id: "c2".into(),
        exec_id: String::new(),
    });
    assert_eq!(
        call(&d, wait_init).await.unwrap(),
        AgentResponse::WaitProcess(WaitProcessResponse { status: 0 })
    );
    let err = call(&d, AgentRequest::ReadStdout(read_req("c2", "", 10)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(err.message(), "EOF");
    // Remove both; the pause one is still running and gets SIGKILL.
    for cid in ["c2", "pause"] {
        call(
            &d,
            AgentRequest::RemoveContainer(RemoveContainerRequest {
                container_id: cid.into(),
                timeout: 5,
            }),
        )
        .await
        .unwrap();
    }
    assert!(r.services.containers.container_ids().is_empty());
    let calls = r.host.calls();
    let expect_prefix = [
        "create pause sandbox=\"-\" sandbox_pid=None",
        "create c2 sandbox=\"pause\" sandbox_pid=Some(101)",
        "start c2",
    ];
    assert_eq!(&calls[..3], &expect_prefix);
    for needle in [
        "signal 103 9",
        "frozen c2 true",
        "frozen c2 false",
        "update c2 memory=Some(67108864)",
        "remove c2",
        "signal-all pause 9",
        "remove pause",
    ] {
        assert!(
            calls.iter().any(|c| c == needle),
            "{needle} not in {calls:?}"
        );
    }
    let images = r.images.calls.lock().unwrap().clone();
    assert_eq!(
        images,
        [
            "pull docker.io/library/busybox pause /run/kata-containers/pause/rootfs",
            "pull cocoon-baked:busybox c2 /run/kata-containers/c2/rootfs",
            "release c2",
            "release pause",
        ]
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_bad_requests_touch_nothing() {
    let r = rig();
    let d = allow(&r);
    let reqs = [
        AgentRequest::StartContainer(StartContainerRequest {
            container_id: "nope".into(),
        }),
        AgentRequest::WaitProcess(WaitProcessRequest {
            container_id: "nope".into(),
            exec_id: String::new(),
        }),
        AgentRequest::ReadStdout(read_req("nope", "", 1)),
        AgentRequest::StatsContainer(StatsContainerRequest {
            container_id: "nope".into(),
        }),
        AgentRequest::RemoveContainer(RemoveContainerRequest {
            container_id: "nope".into(),
            timeout: 0,
        }),
    ];
    for req in reqs {
        let name = req.rpc_name();
        assert_eq!(
            call(&d, req).await.unwrap_err().code(),
            Code::NotFound,
            "{name}"
        );
    }
    // Host-shared rootfs, a Root.Path elsewhere, and an image we cannot pull.
    let mut shared = create_req("c1", "busybox");
    shared.storages[0].driver = "virtio-fs".into();
    let err = call(&d, AgentRequest::CreateContainer(shared))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("virtio-fs"), "{}", err.message());
    let mut elsewhere = create_req("c1", "busybox");
    elsewhere.oci.as_mut().unwrap().root.as_mut().unwrap().path =
        "/run/kata-containers/shared/containers/c1/rootfs".into();
    let err = call(&d, AgentRequest::CreateContainer(elsewhere))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(r.images.calls.lock().unwrap().is_empty());
    let err = call(
        &d,
        AgentRequest::CreateContainer(create_req("c1", "quay.io/app/server:1.0")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("not available yet"),
        "{}",
        err.message()
    );
    assert!(r.host.calls().is_empty(), "{:?}", r.host.calls());
    // Now one container; an unknown exec id is NOT_FOUND.
    call(
        &d,
        AgentRequest::CreateContainer(create_req("c1", "busybox")),
    )
    .await
    .unwrap();
    let err = call(
        &d,
        AgentRequest::CreateContainer(create_req("c1", "busybox")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = call(
        &d,
        AgentRequest::WaitProcess(WaitProcessRequest {
            container_id: "c1".into(),
            exec_id: "ghost".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Exec before start is refused.
    let exec = ExecProcessRequest {
        container_id: "c1".into(),
        exec_id: "e".into(),
        process: Some(Process {
            args: vec!["true".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = call(&d, AgentRequest::ExecProcess(exec)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Error texts carry no Debug dumps.
    assert!(!err.message().contains("Some("), "{}", err.message());
}

#[tokio::test]
async fn read_length_is_capped() {
    let r = rig();
    let d = allow(&r);
    call(
        &d,
        AgentRequest::CreateContainer(create_req("c", "busybox")),
    )
    .await
    .unwrap();
    call(
        &d,
        AgentRequest::StartContainer(StartContainerRequest {
            container_id: "c".into(),
        }),
    )
    .await
    .unwrap();
    let big = vec![b'x'; 3 << 20];
    let d = Arc::new(d);
    let d2 = d.clone();
    let writer = tokio::spawn(async move {
        d2.dispatch(AgentRequest::WriteStdin(write_req("c", "", &big)))
            .await
            .unwrap()
    });
    let mut total = 0;
    while total < 3 << 20 {
        let AgentResponse::ReadStream(rs) =
            call(&d, AgentRequest::ReadStdout(read_req("c", "", u32::MAX)))
                .await
                .unwrap()
        else {
            panic!()
        };
        assert!(!rs.data.is_empty());
        assert!(rs.data.len() <= crate::container::stdio::MAX_READ_BYTES);
        total += rs.data.len();
    }
    assert_eq!(total, 3 << 20);
    writer.await.unwrap();
}

#[tokio::test]
async fn oom_events_long_poll_and_time() {
    let r = rig();
    let d = Arc::new(allow(&r));
    call(
        &d,
        AgentRequest::CreateContainer(create_req("c", "busybox")),
    )
    .await
    .unwrap();
    let d2 = d.clone();
    let poll = tokio::spawn(async move {
        d2.dispatch(AgentRequest::GetOOMEvent(Default::default()))
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!poll.is_finished(), "no OOM yet");
    r.host.oom.lock().unwrap().insert("c".into(), 1);
    let ev = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        AgentResponse::OOMEvent(OOMEvent {
            container_id: "c".into()
        })
    );
    call(
        &d,
        AgentRequest::SetGuestDateTime(SetGuestDateTimeRequest {
            sec: 1_700_000_000,
            usec: 5,
        }),
    )
    .await
    .unwrap();
    let err = call(
        &d,
        AgentRequest::SetGuestDateTime(SetGuestDateTimeRequest { sec: 1, usec: -1 }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(r.host.calls().contains(&"time 1700000000.5".to_string()));
}

/// A GetOOMEvent long poll outstanding at DestroySandbox ends with it (UNAVAILABLE), so the
/// server's graceful stop, which waits for requests in flight, is not held up until its
/// grace period runs out; a poll sent after the destroy ends at once too.
#[tokio::test]
async fn oom_long_poll_ends_when_the_sandbox_is_destroyed() {
    let r = rig();
    let d = Arc::new(allow(&r));
    let d2 = d.clone();
    let poll = tokio::spawn(async move {
        d2.dispatch(AgentRequest::GetOOMEvent(Default::default()))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "no OOM and no destroy yet");
    call(&d, AgentRequest::DestroySandbox(Default::default()))
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(2), poll)
        .await
        .expect("the poll outlived DestroySandbox")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let late = tokio::time::timeout(
        Duration::from_secs(2),
        d.dispatch(AgentRequest::GetOOMEvent(Default::default())),
    )
    .await
    .expect("a poll after DestroySandbox blocked");
    assert_eq!(late.unwrap_err().code(), Code::Unavailable);
}

/// A container OOM-killed and removed before GetOOMEvent's next sample still produces its
/// event (found at RemoveContainer), exactly once.
#[tokio::test]
async fn oom_kill_of_a_container_removed_before_the_poll_is_not_lost() {
    let r = rig();
    let d = Arc::new(allow(&r));
    for cid in ["gone", "stays"] {
        call(
            &d,
            AgentRequest::CreateContainer(create_req(cid, "busybox")),
        )
        .await
        .unwrap();
    }
    r.host.oom.lock().unwrap().insert("gone".into(), 1);
    call(
        &d,
        AgentRequest::RemoveContainer(RemoveContainerRequest {
            container_id: "gone".into(),
            timeout: 5,
        }),
    )
    .await
    .unwrap();
    let ev = tokio::time::timeout(
        Duration::from_secs(3),
        d.dispatch(AgentRequest::GetOOMEvent(Default::default())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        ev,
        AgentResponse::OOMEvent(OOMEvent {
            container_id: "gone".into()
        })
    );
    // Delivered once: the next poll waits (nothing new for "stays").
    let d2 = d.clone();
    let again = tokio::spawn(async move {
        d2.dispatch(AgentRequest::GetOOMEvent(Default::default()))
            .await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !again.is_finished(),
        "the removed container's OOM event came twice"
    );
    again.abort();
}

#[tokio::test]
async fn health_version_details_and_destroy() {
    let r = rig();
    let d = allow(&r);
    let resp = call(&d, AgentRequest::Check(Default::default()))
        .await
        .unwrap();
    assert_eq!(
        resp,
        AgentResponse::HealthCheck(HealthCheckResponse {
            status: ServingStatus::Serving
        })
    );
    let AgentResponse::Version(v) = call(&d, AgentRequest::Version(Default::default()))
        .await
        .unwrap()
    else {
        panic!("version")
    };
    assert_eq!(v.agent_version, "9.9.9");
    let req = GuestDetailsRequest {
        mem_block_size: true,
        ..Default::default()
    };
    let AgentResponse::GuestDetails(g) =
        call(&d, AgentRequest::GetGuestDetails(req)).await.unwrap()
    else {
        panic!("details")
    };
    assert_eq!(g.mem_block_size_bytes, 128 << 20);
    assert_eq!(
        g.agent_details.unwrap().storage_handlers,
        ["image_guest_pull"]
    );
    // CreateSandbox refuses host-shared storages, then works once.
    let mut cs = CreateSandboxRequest {
        sandbox_id: "sb".into(),
        storages: vec![Storage {
            driver: "virtio-fs".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = call(&d, AgentRequest::CreateSandbox(cs.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    cs.storages.clear();
    call(&d, AgentRequest::CreateSandbox(cs.clone()))
        .await
        .unwrap();
    assert_eq!(r.services.sandbox.sandbox_id().as_deref(), Some("sb"));
    assert_eq!(
        call(&d, AgentRequest::CreateSandbox(cs))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    // Networking without a network port: UNIMPLEMENTED.
    let mut no_net = r.services.clone();
    no_net.network = None;
    let d_no_net = Dispatcher::new(Arc::new(AllowAll), no_net);
    for req in [
        AgentRequest::ListInterfaces(Default::default()),
        AgentRequest::ListRoutes(Default::default()),
    ] {
        let err = call(&d_no_net, req).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    }
    assert!(r.network.calls.lock().unwrap().is_empty());

    call(
        &d,
        AgentRequest::CreateContainer(create_req("c", "busybox")),
    )
    .await
    .unwrap();
    let shutdown = r.services.sandbox.shutdown_requested();
    call(&d, AgentRequest::DestroySandbox(Default::default()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), shutdown)
        .await
        .expect("shutdown signalled");
    assert!(r.host.calls().contains(&"remove c".to_string()));
    assert!(r.services.containers.container_ids().is_empty());
    assert!(!r.services.sandbox.destroy(), "second destroy is a no-op");
}

/// Every RPC through the deny-all gate: PERMISSION_DENIED and no side effect on any service.
#[tokio::test]
async fn deny_all_sweep() {
    let r = rig();
    let d = Dispatcher::new(Arc::new(DenyAll), r.services.clone());
    let all = AgentRequest::AGENT_RPCS
        .iter()
        .chain(AgentRequest::HEALTH_RPCS);
    let mut n = 0;
    for info in all {
        let mut req = AgentRequest::default_for(info.rpc).unwrap();
        // Make the would-be side effects real requests, so a missing gate would show.
        match &mut req {
            AgentRequest::CreateContainer(c) => *c = create_req("c", "busybox"),
            AgentRequest::CopyFile(c) => {
                c.path = format!("{}/f", r.services.copy_file.root().display());
                c.file_mode = 0o100_644;
                c.file_size = 1;
                c.data = b"x".to_vec();
            }
            AgentRequest::SetGuestDateTime(t) => t.sec = 1,
            _ => {}
        }
        let err = call(&d, req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{}", info.rpc);
        assert!(
            err.message().contains(info.policy_rule),
            "{}",
            err.message()
        );
        n += 1;
    }
    assert_eq!(n, 44);
    assert!(r.host.calls().is_empty(), "{:?}", r.host.calls());
    assert!(r.images.calls.lock().unwrap().is_empty());
    assert!(r.network.calls.lock().unwrap().is_empty());
    assert!(r.services.containers.container_ids().is_empty());
    assert!(!r.services.copy_file.root().exists(), "CopyFile wrote");
    assert!(r.services.sandbox.sandbox_id().is_none());
    assert!(
        r.services.sandbox.destroy(),
        "DestroySandbox must not have run"
    );
}

#[tokio::test]
async fn copy_file_traversal_is_refused_through_the_dispatcher() {
    let r = rig();
    let d = allow(&r);
    let err = call(
        &d,
        AgentRequest::CopyFile(CopyFileRequest {
            path: "/run/../etc/shadow".into(),
            file_mode: 0o100_600,
            file_size: 1,
            data: b"x".to_vec(),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not canonical"), "{}", err.message());
}

/// The network RPCs reach the network port with the request's content; a missing interface
/// is refused before the port is called; the port's NOT_FOUND reaches the host as such.
#[tokio::test]
async fn network_rpcs_reach_the_network_port() {
    let r = rig();
    let d = allow(&r);
    let AgentResponse::Interfaces(list) =
        call(&d, AgentRequest::ListInterfaces(Default::default()))
            .await
            .unwrap()
    else {
        panic!("wrong response type");
    };
    assert_eq!(list.interfaces[0].name, "lo");
    let err = call(&d, AgentRequest::UpdateInterface(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let iface = Interface {
        hw_addr: "02:00:00:00:00:01".into(),
        name: "eth0".into(),
        ..Default::default()
    };
    let AgentResponse::Interface(got) = call(
        &d,
        AgentRequest::UpdateInterface(UpdateInterfaceRequest {
            interface: Some(iface.clone()),
        }),
    )
    .await
    .unwrap() else {
        panic!("wrong response type");
    };
    assert_eq!(got, iface);
    let err = call(
        &d,
        AgentRequest::UpdateInterface(UpdateInterfaceRequest {
            interface: Some(Interface {
                hw_addr: "02:00:00:00:00:99".into(),
                ..Default::default()
            }),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("02:00:00:00:00:99"));
    let routes = vec![Route {
        gateway: "10.0.2.2".into(),
        device: "eth0".into(),
        ..Default::default()
    }];
    let AgentResponse::Routes(table) = call(
        &d,
        AgentRequest::UpdateRoutes(UpdateRoutesRequest {
            routes: Some(Routes {
                routes: routes.clone(),
            }),
        }),
    )
    .await
    .unwrap() else {
        panic!("wrong response type");
    };
    assert_eq!(table.routes, routes);
    call(&d, AgentRequest::ListRoutes(Default::default()))
        .await
        .unwrap();
    call(
        &d,
        AgentRequest::AddARPNeighbors(AddARPNeighborsRequest {
            neighbors: Some(ARPNeighbors {
                neighbors: vec![ARPNeighbor::default(); 2],
            }),
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        *r.network.calls.lock().unwrap(),
        vec![
            "list_interfaces",
            "update_interface 02:00:00:00:00:01 eth0",
            "update_interface 02:00:00:00:00:99 ",
            "update_routes 1",
            "list_routes",
            "add_arp_neighbors 2",
        ]
    );
    let AgentResponse::GuestDetails(details) =
        call(&d, AgentRequest::GetGuestDetails(Default::default()))
            .await
            .unwrap()
    else {
        panic!("wrong response type");
    };
    assert!(details.agent_details.unwrap().supports_seccomp);
}

#[tokio::test]
async fn sandbox_pidns_makes_later_containers_join_the_sandbox_pid_namespace() {
    async fn create(d: &Dispatcher, req: CreateContainerRequest) -> Result<(), AgentError> {
        call(d, AgentRequest::CreateContainer(req))
            .await
            .map(|_| ())
    }
    // Without sandbox_pidns: every container keeps its own pid namespace, unless its own
    // CreateContainer asks to join.
    let r = rig();
    let d = allow(&r);
    call(&d, AgentRequest::CreateSandbox(Default::default()))
        .await
        .unwrap();
    create(&d, create_req("pause", "cocoon-baked:busybox"))
        .await
        .unwrap();
    create(&d, create_req("own", "cocoon-baked:busybox"))
        .await
        .unwrap();
    let mut one = create_req("one", "cocoon-baked:busybox");
    one.sandbox_pidns = true;
    create(&d, one).await.unwrap();
    assert_eq!(
        r.host.calls(),
        [
            "create pause sandbox=\"-\" sandbox_pid=None",
            "create own sandbox=\"pause\" sandbox_pid=Some(101)",
            "create one sandbox=\"pause\" sandbox_pid=Some(101) join_pidns",
        ]
    );
    // The sandbox container's init exits: later containers still join the pod's IPC and
    // UTS namespaces (the host keeps them), only its pid namespace is gone.
    kill_and_wait(&d, "pause").await;
    create(&d, create_req("after", "cocoon-baked:busybox"))
        .await
        .unwrap();
    assert_eq!(
        r.host.calls().last().map(String::as_str),
        Some("create after sandbox=\"pause\" sandbox_pid=None"),
    );

    // With sandbox_pidns: the first container gets the namespace, the others join it.
    let r = rig();
    let d = allow(&r);
    call(
        &d,
        AgentRequest::CreateSandbox(CreateSandboxRequest {
            sandbox_id: "sb".into(),
            sandbox_pidns: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    for cid in ["pause", "app"] {
        create(&d, create_req(cid, "cocoon-baked:busybox"))
            .await
            .unwrap();
    }
    assert_eq!(
        r.host.calls(),
        [
            "create pause sandbox=\"-\" sandbox_pid=None",
            "create app sandbox=\"pause\" sandbox_pid=Some(101) join_pidns",
        ]
    );
    // Once the sandbox container is gone, joining its namespace is refused.
    kill_and_wait(&d, "pause").await;
    let err = create(&d, create_req("late", "cocoon-baked:busybox"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("pid namespace"), "{err}");
    assert!(
        !r.host.calls().iter().any(|c| c.starts_with("create late")),
        "{:?}",
        r.host.calls()
    );
    // The refused container's image was released again.
    let images = r.images.calls.lock().unwrap().clone();
    assert_eq!(images.last().map(String::as_str), Some("release late"));
}
