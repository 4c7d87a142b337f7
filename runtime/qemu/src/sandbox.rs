//! One sandbox VM: start the vsock backend and QEMU, wait for the agent, shut down, clean up.
//!
//! Everything a sandbox creates lives in one state directory (`<state_dir>/<id>`), and every
//! process it starts is [`Supervised`]; dropping a [`Sandbox`] kills them and removes the
//! directory, so an error at any step leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_protocol::AgentClient;
use agent_protocol::types::{CheckRequest, DestroySandboxRequest, ServingStatus};
use runtime_config::{Accel, AgentChannel, MachineType, RuntimeClassConfig, Tee};

use crate::argv::{AccelKind, AgentDevice, TeeLaunch, UserNetwork, VmSpec, build_argv};
use crate::process::{self, Supervised};
use crate::qmp::QmpClient;
use crate::vsock::{AgentEndpoint, connect_with_retry};

/// Errors while booting or stopping a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file the VM needs is missing.
    #[error("{what} not found: {path}")]
    MissingFile {
        /// Which input (guest kernel, initrd, firmware, ...).
        what: &'static str,
        /// Path from the configuration.
        path: PathBuf,
    },
    /// Bad sandbox id or state directory.
    #[error("sandbox {id}: {reason}")]
    State {
        /// Sandbox id.
        id: String,
        /// Reason.
        reason: String,
    },
    /// The configuration cannot run on this host.
    #[error("cannot run {class} here: {reason}")]
    Unsupported {
        /// Runtime class.
        class: String,
        /// Reason.
        reason: String,
    },
    /// The QEMU command line could not be built.
    #[error(transparent)]
    Argv(#[from] crate::argv::ArgvError),
    /// A process could not start.
    #[error(transparent)]
    Spawn(#[from] process::ProcessError),
    /// QEMU or the vsock backend exited early.
    #[error("{name} exited during {stage} ({exit}); last output:\n{output}")]
    Exited {
        /// Process name.
        name: String,
        /// What we were doing.
        stage: &'static str,
        /// Exit status.
        exit: String,
        /// Tail of its log / the guest console.
        output: String,
    },
    /// QMP failed.
    #[error("QMP: {0}")]
    Qmp(#[from] crate::qmp::QmpError),
    /// The agent could not be reached or did not become healthy.
    #[error("agent not ready: {0}")]
    Agent(String),
    /// Filesystem error on the state directory.
    #[error("sandbox state I/O at {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Options for [`Sandbox::boot`] beyond the runtime-class configuration.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Sandbox id (also the state-directory name). Must be `[A-Za-z0-9_.-]{1,64}`.
    pub id: String,
    /// Override the configuration's state directory.
    pub state_dir: Option<PathBuf>,
    /// Restricted guest networking to host loopback; overrides the class's `[network]`
    /// section (`None`: the section decides).
    pub network: Option<UserNetwork>,
    /// An existing initdata disk image to attach (ignored when `initdata_image` is set).
    pub initdata_disk: Option<PathBuf>,
    /// Initdata disk image bytes (`measured_boot::initdata::Initdata::to_image`): written to
    /// [`INITDATA_IMAGE_FILE`] in the sandbox's state directory before QEMU starts, and so
    /// removed with it, and attached read-only.
    pub initdata_image: Option<Vec<u8>>,
    /// HOST_DATA / MRCONFIGID digests (from initdata) for TEE classes.
    pub initdata_digest: Option<Vec<u8>>,
}

/// File name of the initdata disk image in a sandbox's state directory.
pub const INITDATA_IMAGE_FILE: &str = "initdata.img";

/// Where the time went while booting.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BootTimings {
    /// Spawning QEMU until QMP reports `running`.
    pub qemu_start: Duration,
    /// Guest uptime when the agent started (kernel boot + module loading), from the console.
    pub guest_kernel: Option<Duration>,
    /// Spawning QEMU until Health.Check answered SERVING.
    pub agent_ready: Duration,
    /// Total including backend start.
    pub total: Duration,
}

/// A running sandbox VM with a healthy agent.
pub struct Sandbox {
    id: String,
    dir: PathBuf,
    qemu: Arc<Supervised>,
    backend: Option<Arc<Supervised>>,
    endpoint: AgentEndpoint,
    client: AgentClient,
    timings: BootTimings,
    accel: AccelKind,
    removed: bool,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && id != "."
        && id != ".."
}

/// Host TSC frequency in kHz (TCG's rdtsc reads the host TSC; microvm has no other
/// calibration source, so the guest is told).
pub fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// The kernel command line the runtime gives a guest.
pub fn kernel_cmdline(cfg: &RuntimeClassConfig, accel: AccelKind, tsc_khz: Option<u64>) -> String {
    let q = &cfg.hypervisor.qemu;
    let mut parts: Vec<String> = vec!["console=ttyS0".into(), "quiet".into(), "panic=-1".into()];
    if accel == AccelKind::Tcg {
        if let Some(khz) = tsc_khz {
            parts.push(format!("tsc_early_khz={khz}"));
        }
        parts.push("tsc=reliable".into());
    }
    if q.machine_type == MachineType::Microvm {
        parts.push("pci=off".into());
    }
    parts.push(format!("agent.server_addr=vsock://-1:{}", cfg.agent.port));
    if cfg.agent.debug {
        parts.push("agent.log=debug".into());
    }
    if !q.kernel_params.is_empty() {
        parts.push(q.kernel_params.clone());
    }
    parts.join(" ")
}

/// Resolves `accel = "auto"` against the host.
pub fn resolve_accel(
    cfg: &RuntimeClassConfig,
    kvm_usable: bool,
) -> Result<AccelKind, SandboxError> {
    match cfg.hypervisor.qemu.accel {
        Accel::Tcg => Ok(AccelKind::Tcg),
        Accel::Kvm if kvm_usable => Ok(AccelKind::Kvm),
        Accel::Kvm => Err(SandboxError::Unsupported {
            class: cfg.runtime.class.clone(),
            reason: "accel = \"kvm\" but KVM cannot run a standard guest on this host".into(),
        }),
        Accel::Auto if kvm_usable => Ok(AccelKind::Kvm),
        Accel::Auto if cfg.hypervisor.qemu.tee != Tee::None => Err(SandboxError::Unsupported {
            class: cfg.runtime.class.clone(),
            reason: "a TEE guest needs KVM".into(),
        }),
        Accel::Auto => Ok(AccelKind::Tcg),
    }
}

/// The state-directory name of a sandbox: its id, or for ids longer than 24 characters (CRI
/// sandbox ids are 64 hex digits) the first 12 characters and a hash of the whole id, so the
/// Unix sockets inside stay within the 108-byte `sun_path` limit.
pub fn state_dir_name(id: &str) -> String {
    if id.len() <= 24 {
        return id.to_string();
    }
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let prefix: String = id.chars().take(12).collect();
    format!("{prefix}-{:011x}", h & 0xfff_ffff_ffff)
}

/// Picks the guest CID for kernel vhost-vsock from the sandbox id (3..2^31).
fn guest_cid_for(id: &str) -> u32 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    3 + (h % 0x7fff_0000) as u32
}

fn tail(path: &Path, max: usize) -> String {
    let data = std::fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(max);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// Reads the agent's start marker (`cocoon-agent: started uptime_ms=N`) from the console.
pub fn agent_start_uptime(console: &str) -> Option<Duration> {
    console.lines().find_map(|l| {
        let rest = l.split("cocoon-agent: started uptime_ms=").nth(1)?;
        let ms: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_millis(ms))
    })
}

async fn wait_for_path(
    path: &Path,
    proc_: &Supervised,
    stage: &'static str,
    log: &Path,
) -> Result<(), SandboxError> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(exit) = proc_.exited() {
            return Err(SandboxError::Exited {
                name: proc_.name().to_string(),
                stage,
                exit: exit.to_string(),
                output: tail(log, 2000),
            });
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(SandboxError::State {
                id: proc_.name().to_string(),
                reason: format!("{} did not appear during {stage}", path.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Connects to QMP. The socket file appears at bind(), a moment before QEMU listens, so a
/// refused connection is retried while QEMU is alive.
async fn connect_qmp(
    socket: &Path,
    qemu: &Supervised,
    log: &Path,
) -> Result<QmpClient, SandboxError> {
    let start = Instant::now();
    loop {
        match QmpClient::connect(socket, Duration::from_secs(10)).await {
            Ok(c) => return Ok(c),
            Err(crate::qmp::QmpError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && start.elapsed() < Duration::from_secs(10) =>
            {
                if let Some(exit) = qemu.exited() {
                    return Err(SandboxError::Exited {
                        name: "qemu".into(),
                        stage: "QMP connection",
                        exit: exit.to_string(),
                        output: tail(log, 2000),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, SandboxError> {
    std::fs::File::create(path).map_err(|source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Sandbox {
    /// Boots a sandbox VM and waits until its agent answers Health.Check with SERVING.
    pub async fn boot(
        cfg: &RuntimeClassConfig,
        opts: &BootOptions,
        kvm_usable: bool,
    ) -> Result<Sandbox, SandboxError> {
        let started = Instant::now();
        let id = opts.id.clone();
        if !valid_id(&id) {
            return Err(SandboxError::State {
                id,
                reason: "sandbox id must be 1-64 characters of [A-Za-z0-9_.-]".into(),
            });
        }
        let q = &cfg.hypervisor.qemu;
        for (what, p) in [
            ("guest kernel", &q.kernel),
            ("guest initrd", &q.initrd),
            ("QEMU binary", &q.path),
        ] {
            if !p.is_file() {
                return Err(SandboxError::MissingFile {
                    what,
                    path: p.clone(),
                });
            }
        }
        if let Some(fw) = &q.firmware
            && !fw.is_file()
        {
            return Err(SandboxError::MissingFile {
                what: "firmware",
                path: fw.clone(),
            });
        }
        let accel = resolve_accel(cfg, kvm_usable)?;
        let hybrid = match cfg.agent.channel {
            AgentChannel::HybridVsock => true,
            AgentChannel::VhostVsock => false,
            AgentChannel::Auto => !Path::new("/dev/vhost-vsock").exists(),
        };
        if hybrid && !cfg.agent.vhost_user_vsock_backend.is_file() {
            return Err(SandboxError::MissingFile {
                what: "vhost-user vsock backend (vhost-device-vsock)",
                path: cfg.agent.vhost_user_vsock_backend.clone(),
            });
        }

        let state_dir = opts
            .state_dir
            .clone()
            .unwrap_or_else(|| cfg.runtime.state_dir.clone());
        std::fs::create_dir_all(&state_dir).map_err(|source| SandboxError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let dir = state_dir.join(state_dir_name(&id));
        std::fs::create_dir(&dir).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => SandboxError::State {
                id: id.clone(),
                reason: format!(
                    "state directory {} already exists (sandbox id in use?)",
                    dir.display()
                ),
            },
            _ => SandboxError::Io {
                path: dir.clone(),
                source,
            },
        })?;
        // From here on, a guard removes the directory and kills children on any error.
        let mut guard = BootGuard {
            dir: dir.clone(),
            procs: Vec::new(),
            armed: true,
        };

        let (agent_dev, endpoint, backend) = if hybrid {
            let ctl = dir.join("vhost-user-vsock.sock");
            let uds = dir.join("vsock.sock");
            let log = dir.join("vhost-device-vsock.log");
            let mut cmd = Command::new(&cfg.agent.vhost_user_vsock_backend);
            cmd.arg("--guest-cid")
                .arg("3")
                .arg("--socket")
                .arg(&ctl)
                .arg("--uds-path")
                .arg(&uds);
            let f = log_file(&log)?;
            let f2 = f.try_clone().map_err(|source| SandboxError::Io {
                path: log.clone(),
                source,
            })?;
            cmd.stdout(f).stderr(f2);
            let backend = process::spawn("vhost-device-vsock", cmd)?;
            guard.procs.push(backend.clone());
            wait_for_path(&ctl, &backend, "vsock backend start", &log).await?;
            (
                AgentDevice::HybridVsock {
                    backend_socket: ctl,
                },
                AgentEndpoint::Hybrid {
                    uds,
                    port: cfg.agent.port,
                },
                Some(backend),
            )
        } else {
            let cid = guest_cid_for(&id);
            (
                AgentDevice::VhostVsock { guest_cid: cid },
                AgentEndpoint::Vsock {
                    cid,
                    port: cfg.agent.port,
                },
                None,
            )
        };

        if let Some(image) = &opts.initdata_image {
            write_initdata_image(&dir.join(INITDATA_IMAGE_FILE), image)?;
        }
        let spec = vm_spec(cfg, opts, &dir, accel, agent_dev);
        let argv = build_argv(&spec)?;
        let qemu_log = dir.join("qemu.log");
        let mut cmd = Command::new(&spec.qemu);
        cmd.args(&argv);
        let f = log_file(&qemu_log)?;
        let f2 = f.try_clone().map_err(|source| SandboxError::Io {
            path: qemu_log.clone(),
            source,
        })?;
        cmd.stdout(f).stderr(f2);
        let qemu_started = Instant::now();
        let qemu = process::spawn("qemu", cmd)?;
        guard.procs.push(qemu.clone());
        tracing::info!(id, pid = qemu.pid(), ?accel, hybrid, "QEMU started");

        wait_for_path(&spec.qmp_socket, &qemu, "QEMU start", &qemu_log).await?;
        let mut qmp = connect_qmp(&spec.qmp_socket, &qemu, &qemu_log).await?;
        let status = qmp.query_status().await?;
        if !status.running {
            return Err(SandboxError::State {
                id,
                reason: format!("QEMU is {} after start", status.status),
            });
        }
        drop(qmp);
        let qemu_start = qemu_started.elapsed();

        let deadline = Duration::from_secs(u64::from(cfg.agent.dial_timeout_secs));
        let client = wait_agent(&endpoint, deadline, &qemu, backend.as_deref(), &dir).await?;
        let agent_ready = qemu_started.elapsed();
        let console = std::fs::read_to_string(&spec.console_log).unwrap_or_default();
        guard.armed = false;
        Ok(Sandbox {
            id,
            dir,
            qemu,
            backend,
            endpoint,
            client,
            timings: BootTimings {
                qemu_start,
                guest_kernel: agent_start_uptime(&console),
                agent_ready,
                total: started.elapsed(),
            },
            accel,
            removed: false,
        })
    }

    /// Sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// State directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Boot timings.
    pub fn timings(&self) -> BootTimings {
        self.timings
    }
    /// Accelerator in use.
    pub fn accel(&self) -> AccelKind {
        self.accel
    }
    /// A future that resolves when QEMU exits for any reason (crash, kill, guest power-off).
    /// It holds no handle on the sandbox, so dropping the sandbox still stops everything.
    pub fn qemu_exited(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.qemu.exit_receiver();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }

    /// The agent client.
    pub fn agent(&self) -> &AgentClient {
        &self.client
    }
    /// How the agent is reached (to open more connections).
    pub fn endpoint(&self) -> &AgentEndpoint {
        &self.endpoint
    }
    /// QEMU's pid.
    pub fn qemu_pid(&self) -> u32 {
        self.qemu.pid()
    }
    /// The vsock backend's pid, for hybrid vsock.
    pub fn backend_pid(&self) -> Option<u32> {
        self.backend.as_ref().map(|b| b.pid())
    }
    /// The guest console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Asks the agent to power the VM off (DestroySandbox), falls back to QMP `quit` and
    /// then SIGKILL, stops the backend and removes the state directory.
    pub async fn shutdown(mut self) -> Result<ShutdownReport, SandboxError> {
        let started = Instant::now();
        let mut how = ShutdownPath::Agent;
        let client = self.client.with_timeout(Some(Duration::from_secs(5)));
        if let Err(e) = client
            .destroy_sandbox(DestroySandboxRequest::default())
            .await
        {
            tracing::warn!(id = self.id, error = %e, "DestroySandbox failed");
        }
        if self
            .qemu
            .wait_timeout(Duration::from_secs(10))
            .await
            .is_none()
        {
            how = ShutdownPath::Qmp;
            if let Ok(mut qmp) =
                QmpClient::connect(&self.dir.join("qmp.sock"), Duration::from_secs(2)).await
            {
                let _ = qmp.quit().await;
            }
            if self
                .qemu
                .wait_timeout(Duration::from_secs(5))
                .await
                .is_none()
            {
                how = ShutdownPath::Kill;
            }
        }
        let exit = self.qemu.exited();
        self.cleanup();
        Ok(ShutdownReport {
            path: how,
            qemu_exit: exit.map(|e| e.to_string()),
            took: started.elapsed(),
        })
    }

    fn cleanup(&mut self) {
        self.qemu.kill_and_reap();
        if let Some(b) = &self.backend {
            b.kill_and_reap();
        }
        if !self.removed {
            let _ = std::fs::remove_dir_all(&self.dir);
            self.removed = true;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// How the VM was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPath {
    /// The agent powered the guest off.
    Agent,
    /// QMP `quit`.
    Qmp,
    /// SIGKILL.
    Kill,
}

/// Result of [`Sandbox::shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// Which path stopped the VM.
    pub path: ShutdownPath,
    /// QEMU's exit status.
    pub qemu_exit: Option<String>,
    /// Time taken.
    pub took: Duration,
}

struct BootGuard {
    dir: PathBuf,
    procs: Vec<Arc<Supervised>>,
    armed: bool,
}

impl Drop for BootGuard {
    fn drop(&mut self) {
        if self.armed {
            for p in self.procs.iter().rev() {
                p.kill_and_reap();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The VM a sandbox of `cfg` runs: one function for booting, benchmarks and measurement.
pub fn vm_spec(
    cfg: &RuntimeClassConfig,
    opts: &BootOptions,
    dir: &Path,
    accel: AccelKind,
    agent: AgentDevice,
) -> VmSpec {
    let q = &cfg.hypervisor.qemu;
    VmSpec {
        qemu: q.path.clone(),
        name: format!("cocoon-{}", opts.id),
        machine: q.machine_type,
        accel,
        tee: tee_launch(cfg, opts.initdata_digest.as_deref()),
        vcpus: q.default_vcpus,
        memory_mib: q.default_memory,
        firmware: q.firmware.clone(),
        kernel: q.kernel.clone(),
        initrd: q.initrd.clone(),
        cmdline: kernel_cmdline(cfg, accel, host_tsc_khz()),
        agent,
        qmp_socket: dir.join("qmp.sock"),
        console_log: dir.join("console.log"),
        pidfile: dir.join("qemu.pid"),
        // The boot option wins; otherwise the class's `[network]` section.
        network: opts
            .network
            .clone()
            .or_else(|| cfg.network.as_ref().map(UserNetwork::from_config)),
        initdata_disk: match &opts.initdata_image {
            Some(_) => Some(dir.join(INITDATA_IMAGE_FILE)),
            None => opts.initdata_disk.clone(),
        },
    }
}

/// Writes the initdata image into the (fresh) state directory: a new file, owner-only.
fn write_initdata_image(path: &Path, image: &[u8]) -> Result<(), SandboxError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(image))
        .map_err(|source| SandboxError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The TEE launch parameters of `cfg`. HOST_DATA / MRCONFIGID are the initdata digest
/// fitted to the field by `measured_boot::initdata::fit`, the function the reference
/// values (`snp_host_data()`, `tdx_mrconfigid()`) use, so the two cannot diverge.
fn tee_launch(cfg: &RuntimeClassConfig, digest: Option<&[u8]>) -> TeeLaunch {
    let q = &cfg.hypervisor.qemu;
    match (q.tee, &q.snp, &q.tdx) {
        (Tee::Snp, Some(s), _) => TeeLaunch::Snp {
            cbitpos: s.cbitpos,
            reduced_phys_bits: s.reduced_phys_bits,
            policy: s.policy,
            kernel_hashes: s.kernel_hashes,
            host_data: digest.map(measured_boot::initdata::fit::<32>),
            cpu_model: s.cpu_model.clone(),
        },
        (Tee::Tdx, _, Some(t)) => TeeLaunch::Tdx {
            mrconfigid: digest.map(measured_boot::initdata::fit::<48>),
            quote_generation_socket: t.quote_generation_socket.clone(),
        },
        _ => TeeLaunch::None,
    }
}

async fn wait_agent(
    endpoint: &AgentEndpoint,
    deadline: Duration,
    qemu: &Supervised,
    backend: Option<&Supervised>,
    dir: &Path,
) -> Result<AgentClient, SandboxError> {
    let start = Instant::now();
    let died = || {
        if let Some(e) = qemu.exited() {
            return Some(format!("qemu {e}"));
        }
        backend
            .and_then(|b| b.exited())
            .map(|e| format!("vhost-device-vsock {e}"))
    };
    let exited_error = |reason: String| SandboxError::Exited {
        name: if reason.starts_with("qemu") {
            "qemu".into()
        } else {
            "vhost-device-vsock".into()
        },
        stage: "agent connection",
        exit: reason,
        output: format!(
            "--- qemu.log ---\n{}\n--- console ---\n{}",
            tail(&dir.join("qemu.log"), 1500),
            tail(&dir.join("console.log"), 3000)
        ),
    };
    loop {
        let remaining = deadline.saturating_sub(start.elapsed());
        let client = match endpoint {
            AgentEndpoint::Hybrid { uds, port } => {
                match connect_with_retry(uds, *port, remaining, died).await {
                    Ok(s) => AgentClient::from_tokio_unix_stream(s),
                    Err(e) => {
                        return Err(match died() {
                            Some(reason) => exited_error(reason),
                            None => SandboxError::Agent(e.to_string()),
                        });
                    }
                }
            }
            AgentEndpoint::Vsock { cid, port } => {
                AgentClient::connect(&format!("vsock://{cid}:{port}")).await
            }
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                if let Some(reason) = died() {
                    return Err(exited_error(reason));
                }
                if start.elapsed() >= deadline {
                    return Err(SandboxError::Agent(e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let probe = client.with_timeout(Some(Duration::from_secs(5)));
        match probe.check(CheckRequest::default()).await {
            Ok(r) if r.status == ServingStatus::Serving => return Ok(client),
            Ok(r) => tracing::debug!(status = ?r.status, "agent not serving yet"),
            Err(e) => tracing::debug!(error = %e, "Health.Check failed; retrying"),
        }
        if let Some(reason) = died() {
            return Err(exited_error(reason));
        }
        if start.elapsed() >= deadline {
            return Err(SandboxError::Agent(format!(
                "no healthy answer within {deadline:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests;
