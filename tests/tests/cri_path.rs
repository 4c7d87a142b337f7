//! The kubelet path: containerd's CRI plugin (Debian's containerd 1.6) with the handler
//! `kata-qemu-coco-dev` → `containerd-shim-cocoon-v2`, driven by a CRI client (`k8s-cri`,
//! tonic over containerd's Unix socket) the way the kubelet drives it: RunPodSandbox,
//! CreateContainer, StartContainer, ExecSync, ContainerStatus, the container log file,
//! StopPodSandbox, RemovePodSandbox. containerd calls the shim's `start` once per container
//! with the same sandbox id; the pod must get one shim and one VM.
//!
//! Machine quirks (shared/docs/cri-path.md, the measured recipe): `restrict_oom_score_adj = true`, host-network pods
//! without a hostname (no CNI here), images imported rather than pulled on the host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cocoon_tests::{guest_dir, processes_mentioning, run_ok as run, shim_binary, workspace_root};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerResources,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest, UpdateContainerResourcesRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

const HANDLER: &str = "kata-qemu-coco-dev";
const PAUSE: &str = "docker.io/cocoon/pause:test";
const BUSYBOX: &str = "docker.io/cocoon/busybox:test";

/// The shipped coco-dev configuration pointed at the test guest and a private state dir.
/// Installs Cocoon into `w/opt-cocoon` with the shipped `deploy/install.sh` (this build's
/// shim, the guest image, the shipped class configurations rewritten for the prefix, the
/// containerd snippet; the shim linked into `w/bin`, containerd's PATH) and returns the
/// installed containerd snippet. The coco-dev class's `state_dir` is moved under `w` so the
/// test can assert it is left empty.
fn install_cocoon(guest: &Path, w: &Path) -> String {
    let prefix = w.join("opt-cocoon");
    let shim_dir = shim_binary().parent().unwrap().to_path_buf();
    let backend = std::env::var("VHOST_DEVICE_VSOCK")
        .unwrap_or_else(|_| "/opt/cocoon/bin/vhost-device-vsock".into());
    run(Command::new(workspace_root().join("deploy/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--target-dir")
        .arg(&shim_dir)
        .arg("--guest-dir")
        .arg(guest)
        .arg("--bin-link-dir")
        .arg(w.join("bin"))
        .env("VHOST_DEVICE_VSOCK", backend));
    let class = prefix.join("share/defaults/configuration-qemu-coco-dev.toml");
    let installed = std::fs::read_to_string(&class).unwrap();
    assert!(
        !installed.contains("/opt/cocoon/"),
        "install.sh left /opt/cocoon paths in {}",
        class.display()
    );
    let text: Vec<String> = installed
        .lines()
        .map(|l| {
            if l.starts_with("state_dir =") {
                format!("state_dir = {:?}", w.join("vmstate").display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&class, text.join("\n")).unwrap();
    let snippet = std::fs::read_to_string(prefix.join("share/containerd-config.toml")).unwrap();
    assert!(
        snippet.contains(&format!("ConfigPath = \"{}\"", class.display())),
        "the installed containerd snippet names the installed class configuration: {snippet}"
    );
    snippet
}

struct CriContainerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl CriContainerd {
    fn start(guest: &Path) -> CriContainerd {
        let dir = tempfile::Builder::new()
            .prefix("cocoon-cri-")
            .tempdir()
            .unwrap();
        let w = dir.path();
        let bin = w.join("bin");
        for d in ["bin", "cni/bin", "cni/net.d", "logs"] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        let runtimes = install_cocoon(guest, w);
        assert!(bin.join("containerd-shim-cocoon-v2").exists());
        let c = r#"plugins."io.containerd.grpc.v1.cri""#;
        let toml = format!(
            r#"version = 2
root = "{w}/root"
state = "{w}/state"
[grpc]
  address = "{w}/containerd.sock"
[ttrpc]
  address = "{w}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{w}/opt"
[{c}]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [{c}.cni]
    bin_dir = "{w}/cni/bin"
    conf_dir = "{w}/cni/net.d"
  [{c}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{HANDLER}"

# The runtimes, exactly as install.sh installed deploy/containerd/config.toml:
{runtimes}
"#,
            w = w.display(),
        );
        std::fs::write(w.join("config.toml"), toml).unwrap();
        let mut me = CriContainerd { dir, child: None };
        me.spawn();
        me.import_images();
        me
    }

    fn spawn(&mut self) {
        let w = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(w.join("containerd.log"))
            .unwrap();
        let path = format!(
            "{}:{}",
            w.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(w.join("config.toml"))
            .env("PATH", path)
            .env_remove("COCOON_CONFIG")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while !self.sock().exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.sock()).args(["-n", "k8s.io"]);
        c
    }

    fn import_images(&self) {
        let img = self.dir.path().join("img");
        std::fs::create_dir_all(&img).unwrap();
        let sh = format!(
            "set -e; cd {img}; umoci init --layout oci; umoci new --image oci:base; \
             umoci unpack --image oci:base bundle >/dev/null; mkdir -p bundle/rootfs/bin; \
             cp /bin/busybox bundle/rootfs/bin/; for a in sh echo true sleep cat; do ln -s busybox bundle/rootfs/bin/$a; done; \
             umoci repack --image oci:base bundle; \
             umoci config --image oci:base --tag pause --config.entrypoint /bin/sleep --config.cmd inf; \
             umoci config --image oci:base --tag busybox --config.cmd /bin/sh; \
             skopeo copy oci:oci:pause oci-archive:{img}/pause.tar:{PAUSE}; \
             skopeo copy oci:oci:busybox oci-archive:{img}/busybox.tar:{BUSYBOX}",
            img = img.display()
        );
        run(Command::new("sh").arg("-c").arg(sh));
        for tar in ["pause.tar", "busybox.tar"] {
            run(self.ctr().args(["images", "import"]).arg(img.join(tar)));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    async fn client(&self) -> RuntimeServiceClient<Channel> {
        let sock = self.sock();
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        RuntimeServiceClient::new(channel)
    }

    /// Processes of this test's pod: (shims, QEMUs, vsock backends).
    fn pod_processes(&self) -> (usize, usize, usize) {
        let w = self.dir.path().display().to_string();
        let cmdlines: Vec<String> = processes_mentioning(&w)
            .into_iter()
            .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .collect();
        let count = |needle: &str| cmdlines.iter().filter(|c| c.contains(needle)).count();
        (
            count("containerd-shim-cocoon-v2"),
            count("qemu-system"),
            count("vhost-device-vsock"),
        )
    }

    /// Stops containerd, then asserts nothing of ours is left: no process mentioning the work
    /// dir, no mount under it, no VM state.
    fn stop_and_assert_clean(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let w = self.dir.path().display().to_string();
        let start = Instant::now();
        loop {
            let procs = processes_mentioning(&w);
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let mounted: Vec<&str> = mounts.lines().filter(|l| l.contains(&w)).collect();
            let vmstate: Vec<_> = std::fs::read_dir(self.dir.path().join("vmstate"))
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            if procs.is_empty() && mounted.is_empty() && vmstate.is_empty() {
                break;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "left behind: processes {procs:?}, mounts {mounted:?}, VM state {vmstate:?}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let path = self.dir.path().to_path_buf();
        drop(self);
        assert!(!path.exists(), "temp dir {} left", path.display());
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Unmount anything containerd left under the work dir so the temp dir can go.
        let w = self.dir.path().display().to_string();
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|p| p.starts_with(&w))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
    }
}

fn pod_config(logdir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "pod1".into(),
            uid: "uid-pod1".into(),
            namespace: "cocoon-test".into(),
            attempt: 0,
        }),
        log_directory: logdir.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_path_runs_a_pod_in_one_vm() {
    let Some(guest) = guest_dir() else { return };
    let ctrd = CriContainerd::start(&guest);
    let mut rt = ctrd.client().await;
    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "containerd");

    let logdir = ctrd.dir.path().join("logs");
    let pod = pod_config(&logdir);
    let t = Instant::now();
    let sid = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", ctrd.log()))
        .into_inner()
        .pod_sandbox_id;
    eprintln!("RunPodSandbox (boots the VM): {:?}", t.elapsed());
    assert_eq!(
        ctrd.pod_processes(),
        (1, 1, 1),
        "one shim, one QEMU, one backend"
    );

    let cid = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "c1".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["/bin/sh".into(), "-c".into()],
                args: vec!["echo hello from the guest; echo to-stderr >&2; exec sleep 300".into()],
                log_path: "c1.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", ctrd.log()))
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", ctrd.log()));
    // containerd ran `start` for the container with the pod's sandbox id: same shim, same VM.
    assert_eq!(
        ctrd.pod_processes(),
        (1, 1, 1),
        "the container joined the pod's shim and VM"
    );

    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec!["echo".into(), "exec-ok".into()],
            timeout: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).as_ref(), r.exit_code),
        ("exec-ok\n", 0)
    );
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec!["sh".into(), "-c".into(), "echo oops >&2; exit 4".into()],
            timeout: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 4);
    assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");

    // UpdateContainerResources → the shim's Update → the agent's UpdateContainer: the
    // container's cgroup in the guest gets the new memory limit.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: cid.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", ctrd.log()));
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max".into(),
            ],
            timeout: 60,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).trim(), r.exit_code),
        ((96u64 << 20).to_string().as_str(), 0),
        "memory.max after UpdateContainerResources; stderr {}",
        String::from_utf8_lossy(&r.stderr)
    );

    let st = rt
        .container_status(ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    assert_eq!(st.image.unwrap().image, BUSYBOX);

    // The CRI log file: `<time> stdout F hello from the guest`.
    let log_file = logdir.join("c1.log");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if text.contains("to-stderr") && text.contains("hello from the guest") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "log file: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        text.lines()
            .any(|l| l.ends_with(" stdout F hello from the guest")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stderr F to-stderr")),
        "{text}"
    );

    let t = Instant::now();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", ctrd.log()));
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", ctrd.log()));
    eprintln!("StopPodSandbox + RemovePodSandbox: {:?}", t.elapsed());
    let start = Instant::now();
    while ctrd.pod_processes() != (0, 0, 0) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pod processes left after RemovePodSandbox: {:?}",
            ctrd.pod_processes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(rt);
    ctrd.stop_and_assert_clean();
}

/// The deployment artifacts agree with each other (no VM): every RuntimeClass's handler has
/// a runtime in the containerd snippet, of type `io.containerd.cocoon.v2`, whose
/// `ConfigPath` is a shipped class configuration (installed under /opt/cocoon) whose
/// `runtime.class` is that handler; no snippet runtime lacks a RuntimeClass.
#[test]
fn deploy_artifacts_name_the_same_handlers() {
    let root = workspace_root();
    let snippet: toml::Table = toml::from_str(
        &std::fs::read_to_string(root.join("deploy/containerd/config.toml")).unwrap(),
    )
    .unwrap();
    let runtimes = snippet["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
        .as_table()
        .unwrap();
    let mut handlers = Vec::new();
    for entry in std::fs::read_dir(root.join("deploy/runtimeclasses")).unwrap() {
        let path = entry.unwrap().path();
        let yaml = std::fs::read_to_string(&path).unwrap();
        let field = |key: &str| {
            yaml.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{}: no {key}", path.display()))
        };
        let (name, handler) = (field("name:"), field("handler:"));
        assert_eq!(name, handler, "{}", path.display());
        assert!(
            yaml.contains("katacontainers.io/kata-runtime: \"true\""),
            "{}",
            path.display()
        );
        let rt = runtimes
            .get(&handler)
            .unwrap_or_else(|| panic!("handler {handler} has no containerd runtime"));
        assert_eq!(rt["runtime_type"].as_str(), Some("io.containerd.cocoon.v2"));
        let config_path = rt["options"]["ConfigPath"].as_str().unwrap();
        let file = config_path
            .strip_prefix("/opt/cocoon/share/defaults/")
            .unwrap_or_else(|| {
                panic!("{handler}: ConfigPath {config_path} is not where install.sh puts configs")
            });
        let class = runtime_config::RuntimeClassConfig::load(
            &root.join("runtime/config/configs").join(file),
        )
        .unwrap_or_else(|e| panic!("{handler}: {file}: {e}"));
        assert_eq!(class.runtime.class, handler, "{file}");
        handlers.push(handler);
    }
    handlers.sort();
    let mut configured: Vec<&String> = runtimes.keys().collect();
    configured.sort();
    assert_eq!(
        configured.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        handlers.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(
        handlers,
        ["kata-qemu-coco-dev", "kata-qemu-snp", "kata-qemu-tdx"]
    );
}
