//! Task service against an in-process fake agent served over a real ttRPC Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use agent_protocol::types::{OOMEvent, ReadStreamResponse, WaitProcessResponse};
use agent_protocol::{AgentDispatcher, AgentError, AgentRequest, AgentResponse};
use runtime_core::ports::VmProcesses;

use super::*;

/// Records requests; the init process prints "hi\n" and exits with `exit_code`, or with
/// 128+signal when signalled.
struct FakeAgent {
    log: StdMutex<Vec<AgentRequest>>,
    exit: watch::Sender<Option<i32>>,
    printed: StdMutex<bool>,
    exit_code: i32,
    /// Whether UpdateInterface / UpdateRoutes succeed (else UNIMPLEMENTED).
    network_ok: bool,
    /// Containers GetOOMEvent reports, one per call; then the call waits (see `wake_polls`).
    ooms: StdMutex<Vec<String>>,
    /// A container whose OOM kill RemoveContainer finds (queued for GetOOMEvent, as the
    /// agent does when a container is removed before the kill was sampled).
    oom_at_remove: StdMutex<Option<String>>,
    /// Whether a GetOOMEvent already waiting takes what RemoveContainer queues (the real
    /// agent's behaviour); else only a later call sees it.
    wake_polls: bool,
    oom_wake: Notify,
}

#[async_trait::async_trait]
impl AgentDispatcher for FakeAgent {
    async fn dispatch(&self, req: AgentRequest) -> Result<AgentResponse, AgentError> {
        self.log.lock().unwrap().push(req.clone());
        match req {
            AgentRequest::StartContainer(_) => {
                // A negative exit code: the process runs until signalled.
                if self.exit_code >= 0 {
                    self.exit.send_replace(Some(self.exit_code));
                }
                Ok(AgentResponse::Empty)
            }
            AgentRequest::WaitProcess(_) => {
                let mut rx = self.exit.subscribe();
                let code = loop {
                    if let Some(c) = *rx.borrow_and_update() {
                        break c;
                    }
                    rx.changed()
                        .await
                        .map_err(|_| AgentError::internal("gone"))?;
                };
                Ok(AgentResponse::WaitProcess(WaitProcessResponse {
                    status: code,
                }))
            }
            AgentRequest::ReadStdout(r) => {
                assert!(r.len <= 32 * 1024, "reads are capped at 32 KiB");
                let mut printed = self.printed.lock().unwrap();
                let data = if *printed { vec![] } else { b"hi\n".to_vec() };
                *printed = true;
                Ok(AgentResponse::ReadStream(ReadStreamResponse { data }))
            }
            AgentRequest::ReadStderr(_) => {
                Ok(AgentResponse::ReadStream(ReadStreamResponse::default()))
            }
            AgentRequest::UpdateInterface(r) if self.network_ok => {
                Ok(AgentResponse::Interface(r.interface.unwrap_or_default()))
            }
            AgentRequest::UpdateRoutes(r) if self.network_ok => {
                Ok(AgentResponse::Routes(r.routes.unwrap_or_default()))
            }
            AgentRequest::GetOOMEvent(_) => loop {
                let next = self.ooms.lock().unwrap().pop();
                match next {
                    Some(container_id) => {
                        break Ok(AgentResponse::OOMEvent(OOMEvent { container_id }));
                    }
                    None if self.wake_polls => {
                        self.oom_wake.notified().await;
                        // The answer is still on its way when RemoveContainer returns.
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    None => std::future::pending().await,
                }
            },
            AgentRequest::RemoveContainer(_) => {
                if let Some(c) = self.oom_at_remove.lock().unwrap().take() {
                    self.ooms.lock().unwrap().push(c);
                    self.oom_wake.notify_one();
                }
                Ok(AgentResponse::Empty)
            }
            AgentRequest::SignalProcess(s) => {
                self.exit.send_replace(Some(128 + s.signal as i32));
                Ok(AgentResponse::Empty)
            }
            AgentRequest::CreateContainer(_)
            | AgentRequest::ExecProcess(_)
            | AgentRequest::PauseContainer(_)
            | AgentRequest::ResumeContainer(_)
            | AgentRequest::DestroySandbox(_) => Ok(AgentResponse::Empty),
            other => Err(AgentError::unimplemented(other.rpc_name())),
        }
    }
}

struct FakeVm {
    died: StdMutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    client: AgentClient,
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: Arc<StdMutex<u32>>,
}

#[async_trait::async_trait]
impl Vm for FakeVm {
    fn agent(&self) -> AgentClient {
        self.client.clone()
    }
    fn processes(&self) -> VmProcesses {
        VmProcesses::default()
    }
    fn exited(&self) -> runtime_core::ports::ExitFuture {
        match self.died.lock().unwrap().take() {
            Some(rx) => Box::pin(async move {
                let _ = rx.await;
            }),
            None => Box::pin(std::future::pending()),
        }
    }
    async fn stop(self: Box<Self>) -> Result<(), VmmError> {
        *self.stopped.lock().unwrap() += 1;
        let _ = self.stop.send(());
        Ok(())
    }
}

struct FakeVmm {
    agent: Arc<FakeAgent>,
    dir: PathBuf,
    boots: StdMutex<Vec<VmRequest>>,
    stopped: Arc<StdMutex<u32>>,
    /// Sends to make the last booted VM "crash".
    crash: StdMutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[async_trait::async_trait]
impl Vmm for FakeVmm {
    async fn boot(&self, req: VmRequest) -> Result<Box<dyn Vm>, VmmError> {
        let sock = self.dir.join(format!("{}.sock", req.sandbox_id));
        let addr = format!("unix://{}", sock.display());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let dispatcher: Arc<dyn AgentDispatcher> = self.agent.clone();
        let a = addr.clone();
        tokio::spawn(async move {
            let _ = agent_protocol::serve(&a, dispatcher, async {
                let _ = rx.await;
            })
            .await;
        });
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let client = AgentClient::connect(&addr)
            .await
            .map_err(|e| VmmError(e.to_string()))?;
        self.boots.lock().unwrap().push(req);
        let (crash, died) = tokio::sync::oneshot::channel();
        *self.crash.lock().unwrap() = Some(crash);
        Ok(Box::new(FakeVm {
            died: StdMutex::new(Some(died)),
            client,
            stop: tx,
            stopped: self.stopped.clone(),
        }))
    }
}

#[derive(Default)]
struct Events(StdMutex<Vec<TaskEvent>>);

#[async_trait::async_trait]
impl EventSink for Events {
    async fn publish(&self, event: TaskEvent) {
        self.0.lock().unwrap().push(event);
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    vmm: Arc<FakeVmm>,
    events: Arc<Events>,
    service: Arc<TaskService>,
    agent: Arc<FakeAgent>,
}

fn fixture(exit_code: i32) -> Fixture {
    fixture_with(exit_code, None, true)
}

/// `extra_toml` is appended to the shipped coco-dev configuration.
fn fixture_with(exit_code: i32, extra_toml: Option<&str>, network_ok: bool) -> Fixture {
    fixture_full(exit_code, extra_toml, network_ok, false)
}

fn fixture_full(
    exit_code: i32,
    extra_toml: Option<&str>,
    network_ok: bool,
    wake_polls: bool,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(FakeAgent {
        log: StdMutex::new(Vec::new()),
        exit: watch::channel(None).0,
        printed: StdMutex::new(false),
        exit_code,
        network_ok,
        ooms: StdMutex::new(Vec::new()),
        oom_at_remove: StdMutex::new(None),
        wake_polls,
        oom_wake: Notify::new(),
    });
    let vmm = Arc::new(FakeVmm {
        agent: agent.clone(),
        dir: dir.path().to_path_buf(),
        boots: StdMutex::new(Vec::new()),
        stopped: Arc::new(StdMutex::new(0)),
        crash: StdMutex::new(None),
    });
    let events = Arc::new(Events::default());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/configs/configuration-qemu-coco-dev.toml");
    let cfg = match extra_toml {
        None => shipped.display().to_string(),
        Some(extra) => {
            let p = dir.path().join("class.toml");
            let text = std::fs::read_to_string(&shipped).unwrap() + "\n" + extra;
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        }
    };
    let env = Arc::new(move |k: &str| (k == "COCOON_CONFIG").then(|| cfg.clone()));
    let service = TaskService::new(
        vmm.clone(),
        events.clone(),
        env,
        "unix:///x".into(),
        Arc::new(Notify::new()),
    );
    Fixture {
        dir,
        vmm,
        events,
        service,
        agent,
    }
}

fn bundle(f: &Fixture, id: &str, annotations: serde_json::Value) -> PathBuf {
    let b = f.dir.path().join(id);
    std::fs::create_dir(&b).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["echo", "hi"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "annotations": annotations,
    });
    std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
    b
}

fn params(id: &str, bundle: PathBuf, stdout: &Path) -> CreateParams {
    CreateParams {
        id: id.into(),
        bundle,
        stdio: Stdio {
            stdout: stdout.display().to_string(),
            ..Default::default()
        },
        config_path: None,
    }
}

#[tokio::test]
async fn standalone_container_runs_and_its_exit_propagates() {
    let f = fixture(3);
    let b = bundle(
        &f,
        "c1",
        serde_json::json!({"io.cocoon.image": "docker.io/library/busybox:1"}),
    );
    let out = f.dir.path().join("c1.out");
    f.service
        .create(params("c1", b.clone(), &out))
        .await
        .unwrap();
    assert_eq!(f.vmm.boots.lock().unwrap().len(), 1);
    assert!(
        b.join(RECORD_FILE).is_file(),
        "crash-cleanup record written"
    );
    assert_eq!(
        f.service.state("c1", "").await.unwrap().status,
        Status::Created
    );
    f.service.start("c1", "").await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), f.service.wait("c1", ""))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.status, 3);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hi\n",
        "output complete before exit"
    );
    // The agent saw the guest-pull storage and the guest rootfs path.
    let created = f.agent.log.lock().unwrap().iter().find_map(|r| match r {
        AgentRequest::CreateContainer(c) => Some(c.clone()),
        _ => None,
    });
    let c = created.unwrap();
    assert_eq!(c.storages[0].driver, "image_guest_pull");
    assert_eq!(c.storages[0].source, "docker.io/library/busybox:1");
    assert_eq!(
        c.oci.unwrap().root.unwrap().path,
        "/run/kata-containers/c1/rootfs"
    );

    let (_, e) = f.service.delete("c1", "").await.unwrap();
    assert_eq!(e.unwrap().status, 3);
    assert_eq!(
        *f.vmm.stopped.lock().unwrap(),
        1,
        "VM stopped with its container"
    );
    assert!(!b.join(RECORD_FILE).exists());
    assert!(f.service.is_empty().await);
    let topics: Vec<&str> = f
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic())
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[tokio::test]
async fn pod_containers_share_one_vm_and_kill_propagates() {
    let f = fixture(0);
    let sb = bundle(
        &f,
        "pod1",
        serde_json::json!({"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "pod1"}),
    );
    let out = f.dir.path().join("out");
    f.service.create(params("pod1", sb, &out)).await.unwrap();
    let wb = bundle(
        &f,
        "w1",
        serde_json::json!({"io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.image-name": "docker.io/x/y:1"}),
    );
    f.service.create(params("w1", wb, &out)).await.unwrap();
    assert_eq!(f.vmm.boots.lock().unwrap().len(), 1, "one VM per pod");
    let e = f.service.kill("w1", "", 9).await;
    assert!(e.is_ok(), "killing a created task ends it");
    assert_eq!(f.service.wait("w1", "").await.unwrap().status, 137);
    assert!(
        f.service.kill("w1", "", 9).await.is_err(),
        "second kill: not found"
    );
    f.service.delete("w1", "").await.unwrap();
    assert_eq!(
        *f.vmm.stopped.lock().unwrap(),
        0,
        "workload delete keeps the VM"
    );
    // Deleting a running sandbox is refused, and refusing it keeps the VM.
    f.service.start("pod1", "").await.unwrap();
    let e = f.service.delete("pod1", "").await;
    assert!(e.is_err(), "delete of a running sandbox: {e:?}");
    assert_eq!(*f.vmm.stopped.lock().unwrap(), 0);
    f.service.kill("pod1", "", 9).await.unwrap();
    assert_eq!(f.service.wait("pod1", "").await.unwrap().status, 137);
    f.service.delete("pod1", "").await.unwrap();
    assert_eq!(*f.vmm.stopped.lock().unwrap(), 1);
}

#[tokio::test]
async fn forbidden_annotation_fails_create_before_any_boot() {
    let f = fixture(0);
    for (id, key, value) in [
        (
            "c1",
            "io.katacontainers.config.hypervisor.path",
            "/tmp/evil-qemu",
        ),
        ("c2", "io.katacontainers.config_path", "/tmp/evil.toml"),
    ] {
        let b = bundle(
            &f,
            id,
            serde_json::json!({"io.cocoon.image": "x", key: value}),
        );
        let err = f
            .service
            .create(params(id, b, Path::new("/dev/null")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
        assert!(
            matches!(
                err,
                ServiceError::Core(CoreError::ForbiddenAnnotation { .. })
            ),
            "{err}"
        );
    }
    let b = bundle(&f, "c3", serde_json::json!({}));
    let err = f
        .service
        .create(params("c3", b, Path::new("/dev/null")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("io.cocoon.image"), "{err}");
    assert!(
        f.vmm.boots.lock().unwrap().is_empty(),
        "no VM booted for a refused container"
    );
    let orphan = bundle(
        &f,
        "w9",
        serde_json::json!({"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "nope", "io.cocoon.image": "x"}),
    );
    let err = f
        .service
        .create(params("w9", orphan, Path::new("/dev/null")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("sandbox \"nope\" not found"),
        "{err}"
    );
}

const NETWORK: &str =
    "[network]\nforwards = [{ guest = \"10.0.2.100:5000\", host = \"127.0.0.1:5055\" }]\n";

/// The RPCs the agent saw, in order, without the OOM watcher's background long poll.
fn rpc_names(f: &Fixture) -> Vec<&'static str> {
    f.agent
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !matches!(r, AgentRequest::GetOOMEvent(_)))
        .map(|r| r.rpc_name())
        .collect()
}

#[tokio::test]
async fn configured_network_is_set_up_in_the_guest_before_the_container() {
    let f = fixture_with(0, Some(NETWORK), true);
    let b = bundle(&f, "n1", serde_json::json!({"io.cocoon.image": "x"}));
    f.service
        .create(params("n1", b, Path::new("/dev/null")))
        .await
        .unwrap();
    let net = f.vmm.boots.lock().unwrap()[0]
        .config
        .network
        .clone()
        .unwrap();
    assert_eq!(net.forwards[0].host.port(), 5055);
    assert_eq!(
        rpc_names(&f),
        ["UpdateInterface", "UpdateRoutes", "CreateContainer"]
    );
    let iface = f.agent.log.lock().unwrap().iter().find_map(|r| match r {
        AgentRequest::UpdateInterface(i) => i.interface.clone(),
        _ => None,
    });
    assert_eq!(iface.unwrap().ip_addresses[0].address, "10.0.2.15");

    // Without a [network] section the guest network is left alone.
    let plain = fixture(0);
    let b = bundle(&plain, "n2", serde_json::json!({"io.cocoon.image": "x"}));
    plain
        .service
        .create(params("n2", b, Path::new("/dev/null")))
        .await
        .unwrap();
    assert_eq!(rpc_names(&plain), ["CreateContainer"]);
}

#[tokio::test]
async fn failed_network_setup_fails_create_and_stops_the_vm() {
    let f = fixture_with(0, Some(NETWORK), false);
    let b = bundle(&f, "n3", serde_json::json!({"io.cocoon.image": "x"}));
    let err = f
        .service
        .create(params("n3", b.clone(), Path::new("/dev/null")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UpdateInterface"), "{err}");
    assert_eq!(*f.vmm.stopped.lock().unwrap(), 1, "VM stopped");
    assert!(!b.join(RECORD_FILE).exists());
    assert!(f.service.is_empty().await);
    assert!(!rpc_names(&f).contains(&"CreateContainer"));
}

#[tokio::test]
async fn vm_crash_ends_every_process_with_an_error_status() {
    let f = fixture(-1);
    let b = bundle(&f, "v1", serde_json::json!({"io.cocoon.image": "x"}));
    f.service
        .create(params("v1", b.clone(), Path::new("/dev/null")))
        .await
        .unwrap();
    f.service.start("v1", "").await.unwrap();
    assert_eq!(
        f.service.state("v1", "").await.unwrap().status,
        Status::Running
    );
    let _ = f.vmm.crash.lock().unwrap().take().unwrap().send(());
    let exit = tokio::time::timeout(Duration::from_secs(5), f.service.wait("v1", ""))
        .await
        .expect("the crash ends the task")
        .unwrap();
    assert_eq!(exit.status, VM_GONE_STATUS);
    let exits: Vec<u32> = f
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Exit { exit_status, .. } => Some(*exit_status),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [VM_GONE_STATUS], "one exit event");
    let (_, e) = f.service.delete("v1", "").await.unwrap();
    assert_eq!(e.unwrap().status, VM_GONE_STATUS);
    assert_eq!(
        *f.vmm.stopped.lock().unwrap(),
        0,
        "a dead VM is dropped (cleaned up), not asked to stop"
    );
    assert!(f.service.is_empty().await);
}

#[tokio::test]
async fn guest_oom_kills_become_oom_events() {
    let f = fixture(-1);
    f.agent.ooms.lock().unwrap().extend(["c1".to_string()]);
    let b = bundle(
        &f,
        "c1",
        serde_json::json!({"io.cocoon.image": "docker.io/library/busybox:1"}),
    );
    let out = f.dir.path().join("out");
    f.service.create(params("c1", b, &out)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ooms: Vec<String> = f
            .events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                TaskEvent::Oom { container_id } => Some(container_id.clone()),
                _ => None,
            })
            .collect();
        if !ooms.is_empty() {
            assert_eq!(ooms, ["c1"], "one OOM event for the container");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no OOM event published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The watcher polls again (and waits) rather than spinning or republishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let polls = f
        .agent
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, AgentRequest::GetOOMEvent(_)))
        .count();
    assert_eq!(polls, 2, "one answered poll, one outstanding");
}

fn topics(f: &Fixture) -> Vec<&'static str> {
    f.events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.topic())
        .collect()
}

#[tokio::test]
async fn exec_pause_and_resume_publish_their_events() {
    let f = fixture(-1);
    let b = bundle(&f, "c1", serde_json::json!({"io.cocoon.image": "x"}));
    let pid = f
        .service
        .create(params("c1", b, Path::new("/dev/null")))
        .await
        .unwrap();
    f.service.start("c1", "").await.unwrap();
    let spec = br#"{"args": ["echo", "from-exec"], "cwd": "/"}"#;
    f.service
        .exec("c1", "e1", Stdio::default(), spec)
        .await
        .unwrap();
    assert_eq!(
        f.service
            .exec("c1", "e1", Stdio::default(), spec)
            .await
            .ok(),
        None,
        "a second exec with the same id is refused"
    );
    f.service.start("c1", "e1").await.unwrap();
    f.service.set_paused("c1", true).await.unwrap();
    assert!(
        f.service.set_paused("c1", true).await.is_err(),
        "pausing a paused container is refused"
    );
    f.service.set_paused("c1", false).await.unwrap();
    let c1 = || "c1".to_string();
    let events: Vec<TaskEvent> = f.events.0.lock().unwrap().clone();
    assert_eq!(
        events[1..],
        [
            TaskEvent::Start {
                container_id: c1(),
                pid
            },
            TaskEvent::ExecAdded {
                container_id: c1(),
                exec_id: "e1".into()
            },
            TaskEvent::ExecStarted {
                container_id: c1(),
                exec_id: "e1".into(),
                pid
            },
            TaskEvent::Paused { container_id: c1() },
            TaskEvent::Resumed { container_id: c1() },
        ],
        "{events:#?}"
    );
    let exec = f.agent.log.lock().unwrap().iter().find_map(|r| match r {
        AgentRequest::ExecProcess(e) => Some(e.clone()),
        _ => None,
    });
    let exec = exec.unwrap();
    assert_eq!(exec.exec_id, "e1");
    assert_eq!(exec.process.unwrap().args, ["echo", "from-exec"]);
}

mod oom;
