//! Audit gaps: the UNIMPLEMENTED sweep, error-text hygiene, RemoveContainer's timeout.

use std::time::Duration;

use super::*;

/// Every AgentService RPC the dispatcher implements. A handler that starts answering
/// UNIMPLEMENTED (or a new RPC that is implemented) must change this list.
const IMPLEMENTED: [&str; 26] = [
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "ExecProcess",
    "SignalProcess",
    "WaitProcess",
    "UpdateContainer",
    "StatsContainer",
    "PauseContainer",
    "ResumeContainer",
    "WriteStdin",
    "ReadStdout",
    "ReadStderr",
    "CloseStdin",
    "TtyWinResize",
    "UpdateInterface",
    "UpdateRoutes",
    "ListInterfaces",
    "ListRoutes",
    "AddARPNeighbors",
    "CreateSandbox",
    "DestroySandbox",
    "GetGuestDetails",
    "SetGuestDateTime",
    "CopyFile",
    "GetOOMEvent",
];

/// Every RPC of the table outside [`IMPLEMENTED`] answers UNIMPLEMENTED through an allow-all
/// gate and touches nothing; every implemented one answers something else.
#[tokio::test]
async fn unimplemented_sweep() {
    let r = rig();
    let d = allow(&r);
    for rpc in IMPLEMENTED {
        assert!(
            AgentRequest::AGENT_RPCS.iter().any(|i| i.rpc == rpc),
            "{rpc} is not in AGENT_RPCS"
        );
    }
    let mut unimplemented = Vec::new();
    for info in AgentRequest::AGENT_RPCS {
        if IMPLEMENTED.contains(&info.rpc) {
            continue;
        }
        let req = AgentRequest::default_for(info.rpc).unwrap();
        let err = call(&d, req)
            .await
            .expect_err(&format!("{} answered OK", info.rpc));
        assert_eq!(err.code(), Code::Unimplemented, "{}: {err}", info.rpc);
        assert_eq!(
            err.message(),
            format!("{} is not implemented", info.rpc),
            "{}",
            info.rpc
        );
        unimplemented.push(info.rpc);
    }
    assert_eq!(
        unimplemented.len() + IMPLEMENTED.len(),
        AgentRequest::AGENT_RPCS.len()
    );
    assert_eq!(unimplemented.len(), 16, "{unimplemented:?}");
    assert!(r.host.calls().is_empty(), "{:?}", r.host.calls());
    assert!(r.images.calls.lock().unwrap().is_empty());
    assert!(r.network.calls.lock().unwrap().is_empty());
    assert!(r.services.containers.container_ids().is_empty());
    assert!(
        !r.services.copy_file.root().exists(),
        "something wrote files"
    );
    assert!(r.services.sandbox.sandbox_id().is_none());
    assert!(r.services.sandbox.destroy(), "DestroySandbox ran");

    // The implemented ones really are implemented (default requests fail otherwise, or
    // long-poll: GetOOMEvent).
    let r = rig();
    let d = allow(&r);
    for rpc in IMPLEMENTED {
        let req = AgentRequest::default_for(rpc).unwrap();
        match tokio::time::timeout(Duration::from_millis(300), d.dispatch(req)).await {
            Err(_) => assert_eq!(rpc, "GetOOMEvent", "{rpc} hung"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => assert_ne!(e.code(), Code::Unimplemented, "{rpc}: {e}"),
        }
    }
}

/// Text that must never reach the host in an error message.
const FORBIDDEN: [&str; 15] = [
    // Debug dumps.
    "Some(",
    "(\"",
    "None",
    "Os {",
    "code: ",
    "kind: ",
    "Error {",
    " { ",
    "\\\"",
    // Guest attestation / secret locations (the CDH keeps secrets in memory; evidence and
    // TEE devices live here; CoCo's upstream CDH/AA dirs).
    "/sys/kernel/config/tsm",
    "/dev/tdx_guest",
    "/dev/sev-guest",
    "/run/confidential-containers",
    "/run/cocoon/image-cache",
    // Key material used by the failing requests below.
    "c2VjcmV0LWtleQ",
];

fn assert_clean(what: &str, e: &AgentError) {
    for bad in FORBIDDEN {
        assert!(
            !e.message().contains(bad),
            "{what}: error text contains {bad:?}: {}",
            e.message()
        );
    }
    assert!(!e.message().is_empty(), "{what}: empty error text");
}

/// Drives every failure the fakes can produce and scans each error text sent to the host.
#[tokio::test]
async fn error_texts_carry_no_debug_dumps_paths_or_keys() {
    let r = rig();
    let d = allow(&r);
    let root = r.services.copy_file.root().display().to_string();
    let mut reqs: Vec<(&str, AgentRequest)> = Vec::new();
    let cid = |s: &str| s.to_string();
    for bad_id in ["", "../x", "a/b", ".", "nope"] {
        reqs.push((
            "start bad id",
            AgentRequest::StartContainer(StartContainerRequest {
                container_id: cid(bad_id),
            }),
        ));
        reqs.push((
            "stats bad id",
            AgentRequest::StatsContainer(StatsContainerRequest {
                container_id: cid(bad_id),
            }),
        ));
        let mut create = create_req("x", "busybox");
        create.container_id = cid(bad_id);
        if !bad_id.is_empty() && bad_id != "nope" {
            reqs.push(("create bad id", AgentRequest::CreateContainer(create)));
        }
    }
    // CopyFile: traversal, outside the root, relative, a bad mode, a size mismatch, key
    // material as data (must not be echoed). (A path the host sent may be echoed: it is
    // the host's own text, so no secret location is used as a request path here.)
    for (path, mode, size) in [
        ("/run/../etc/shadow", 0o100_600, 1),
        ("/etc/shadow", 0o100_600, 1),
        ("relative/file", 0o100_644, 1),
        (&format!("{root}/a/../../x"), 0o100_644, 1),
        (&format!("{root}/f"), 0o170_000, 1),
        (&format!("{root}/f"), 0o100_644, 99),
    ] {
        reqs.push((
            "copy file",
            AgentRequest::CopyFile(CopyFileRequest {
                path: path.to_string(),
                file_mode: mode,
                file_size: size,
                data: b"c2VjcmV0LWtleQ".to_vec(),
                offset: if size == 99 { 7 } else { 0 },
                ..Default::default()
            }),
        ));
    }
    // CreateContainer: no spec, no args, devices, shared storage, an image whose layer key
    // is not released, a host I/O failure.
    let mut no_spec = create_req("n1", "busybox");
    no_spec.oci = None;
    reqs.push((
        "create without spec",
        AgentRequest::CreateContainer(no_spec),
    ));
    let mut no_args = create_req("n2", "busybox");
    no_args.oci.as_mut().unwrap().process.as_mut().unwrap().args = Vec::new();
    reqs.push((
        "create without args",
        AgentRequest::CreateContainer(no_args),
    ));
    let mut dev = create_req("n3", "busybox");
    dev.devices = vec![Device::default()];
    reqs.push(("create with devices", AgentRequest::CreateContainer(dev)));
    let mut shared = create_req("n4", "busybox");
    shared.storages[0].driver = "virtio-fs".into();
    reqs.push(("create shared", AgentRequest::CreateContainer(shared)));
    reqs.push((
        "create key error",
        AgentRequest::CreateContainer(create_req("n5", "registry.example/encrypted:1")),
    ));
    reqs.push((
        "create unavailable image",
        AgentRequest::CreateContainer(create_req("n6", "registry.example/app:1")),
    ));
    reqs.push((
        "create host io failure",
        AgentRequest::CreateContainer(create_req("io-fail", "busybox")),
    ));
    let mut bad_user = create_req("n7", "busybox");
    bad_user.string_user = Some(StringUser {
        uid: "nobody".into(),
        ..Default::default()
    });
    reqs.push((
        "create unknown user",
        AgentRequest::CreateContainer(bad_user),
    ));
    // Time, network, signals.
    reqs.push((
        "bad time",
        AgentRequest::SetGuestDateTime(SetGuestDateTimeRequest { sec: -1, usec: 0 }),
    ));
    reqs.push((
        "interface missing",
        AgentRequest::UpdateInterface(Default::default()),
    ));
    reqs.push((
        "interface unknown",
        AgentRequest::UpdateInterface(UpdateInterfaceRequest {
            interface: Some(Interface {
                hw_addr: "02:00:00:00:00:99".into(),
                ..Default::default()
            }),
        }),
    ));
    let mut seen = 0;
    for (what, req) in reqs {
        let e = call(&d, req)
            .await
            .expect_err(&format!("{what} was accepted"));
        assert_clean(what, &e);
        seen += 1;
    }
    // With a container: exec before start, a bad signal, unknown exec, exec id traversal,
    // double create, resume while running.
    call(
        &d,
        AgentRequest::CreateContainer(create_req("c", "busybox")),
    )
    .await
    .unwrap();
    let exec = |id: &str| {
        AgentRequest::ExecProcess(ExecProcessRequest {
            container_id: "c".into(),
            exec_id: id.into(),
            process: Some(Process {
                args: vec!["true".into()],
                cwd: "/".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let more = [
        ("exec before start", exec("e")),
        ("exec bad id", exec("../e")),
        (
            "bad signal",
            AgentRequest::SignalProcess(SignalProcessRequest {
                container_id: "c".into(),
                exec_id: String::new(),
                signal: 0,
            }),
        ),
        (
            "unknown exec",
            AgentRequest::WaitProcess(WaitProcessRequest {
                container_id: "c".into(),
                exec_id: "ghost".into(),
            }),
        ),
        (
            "double create",
            AgentRequest::CreateContainer(create_req("c", "busybox")),
        ),
        (
            "resume running",
            AgentRequest::ResumeContainer(ResumeContainerRequest {
                container_id: "c".into(),
            }),
        ),
    ];
    for (what, req) in more {
        let e = call(&d, req)
            .await
            .expect_err(&format!("{what} was accepted"));
        assert_clean(what, &e);
        seen += 1;
    }
    assert_eq!(seen, 36, "every failing request was driven");
    // The pulls that failed were attempted (the key error really came from the image port).
    let images = r.images.calls.lock().unwrap().clone();
    assert!(images.iter().any(|c| c.contains("encrypted")), "{images:?}");
    assert!(
        r.host
            .calls()
            .iter()
            .any(|c| c.starts_with("create io-fail")),
        "{:?}",
        r.host.calls()
    );
}

/// RemoveContainer whose init ignores the kill: DEADLINE_EXCEEDED after the timeout, with a
/// message naming the container; it still exists (nothing released) and can be removed
/// once its init dies.
#[tokio::test]
async fn remove_container_timeout_keeps_the_container() {
    let r = rig();
    let d = allow(&r);
    call(
        &d,
        AgentRequest::CreateContainer(create_req("stuck", "busybox")),
    )
    .await
    .unwrap();
    call(
        &d,
        AgentRequest::StartContainer(StartContainerRequest {
            container_id: "stuck".into(),
        }),
    )
    .await
    .unwrap();
    r.host.stubborn.lock().unwrap().insert("stuck".into());
    let remove = AgentRequest::RemoveContainer(RemoveContainerRequest {
        container_id: "stuck".into(),
        timeout: 1,
    });
    let t = std::time::Instant::now();
    let err = call(&d, remove.clone()).await.unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        err.message().contains("stuck") && err.message().contains("did not stop within 1 s"),
        "{}",
        err.message()
    );
    assert_eq!(r.services.containers.container_ids(), ["stuck"]);
    assert!(
        !r.host.calls().iter().any(|c| c == "remove stuck"),
        "{:?}",
        r.host.calls()
    );
    assert!(
        !r.images
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "release stuck")
    );
    // Still usable: stats work; once the init can die, a second RemoveContainer succeeds.
    call(
        &d,
        AgentRequest::StatsContainer(StatsContainerRequest {
            container_id: "stuck".into(),
        }),
    )
    .await
    .unwrap();
    r.host.stubborn.lock().unwrap().clear();
    call(&d, remove).await.unwrap();
    assert!(r.services.containers.container_ids().is_empty());
    assert!(r.host.calls().iter().any(|c| c == "remove stuck"));
}
