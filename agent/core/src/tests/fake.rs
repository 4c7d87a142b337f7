//! Recording fakes of the host ports.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use agent_protocol::types::*;
use tokio::sync::oneshot;

use crate::host::*;

/// A fake process: after start, copies stdin to stdout (like `cat`) and exits 0 at stdin EOF;
/// a signal ends it with 128 + signal.
pub(super) struct FakeProc {
    start: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<i32>>,
}

#[derive(Default)]
pub(super) struct FakeHost {
    pub(super) calls: Mutex<Vec<String>>,
    procs: Mutex<HashMap<i32, FakeProc>>,
    inits: Mutex<HashMap<String, i32>>,
    next_pid: Mutex<i32>,
    pub(super) oom: Mutex<HashMap<String, u64>>,
    plans: Mutex<Vec<ContainerPlan>>,
    /// Containers whose init ignores SignalProcess-to-all (as a process stuck in D state).
    pub(super) stubborn: Mutex<HashSet<String>>,
}

impl FakeHost {
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn spawn(&self, started: bool) -> SpawnedProcess {
        let pid = {
            let mut n = self.next_pid.lock().unwrap();
            *n += 1;
            100 + *n
        };
        let (stdin_w, mut stdin_r) = tokio::io::duplex(64 * 1024);
        let (mut stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
        let (start_tx, start_rx) = oneshot::channel::<()>();
        let (kill_tx, kill_rx) = oneshot::channel::<i32>();
        let (exit_tx, exit_rx) = oneshot::channel();
        tokio::spawn(async move {
            let run = async {
                if !started {
                    let _ = start_rx.await;
                }
                let _ = tokio::io::copy(&mut stdin_r, &mut stdout_w).await;
                0
            };
            let code = tokio::select! {
                c = run => c,
                Ok(sig) = kill_rx => 128 + sig,
            };
            let _ = exit_tx.send(code);
        });
        self.procs.lock().unwrap().insert(
            pid,
            FakeProc {
                start: if started { None } else { Some(start_tx) },
                kill: Some(kill_tx),
            },
        );
        SpawnedProcess {
            pid,
            io: ProcessIo {
                stdin: Some(Box::new(stdin_w)),
                stdout: Some(Box::new(stdout_r)),
                stderr: Some(Box::new(tokio::io::empty())),
                tty: None,
            },
            exit: exit_rx,
        }
    }
    fn kill(&self, pid: i32, sig: i32) {
        if let Some(p) = self.procs.lock().unwrap().get_mut(&pid)
            && let Some(k) = p.kill.take()
        {
            let _ = k.send(sig);
        }
    }
}

#[async_trait::async_trait]
impl ContainerHost for FakeHost {
    async fn create_container(&self, plan: ContainerPlan) -> Result<SpawnedProcess, HostError> {
        self.record(format!(
            "create {} sandbox={:?} sandbox_pid={:?}{}",
            plan.container_id,
            plan.sandbox_container.as_deref().unwrap_or("-"),
            plan.sandbox_init_pid,
            if plan.join_sandbox_pid_ns {
                " join_pidns"
            } else {
                ""
            }
        ));
        if plan.container_id.starts_with("io-fail") {
            // As the real host reports a failed system call (ENOENT).
            return Err(HostError::io(
                "create container cgroup",
                std::io::Error::from_raw_os_error(2),
            ));
        }
        let p = self.spawn(false);
        self.inits
            .lock()
            .unwrap()
            .insert(plan.container_id.clone(), p.pid);
        self.plans.lock().unwrap().push(plan);
        Ok(p)
    }
    async fn start_container(&self, cid: &str) -> Result<(), HostError> {
        self.record(format!("start {cid}"));
        let pid = self.inits.lock().unwrap()[cid];
        if let Some(s) = self
            .procs
            .lock()
            .unwrap()
            .get_mut(&pid)
            .unwrap()
            .start
            .take()
        {
            let _ = s.send(());
        }
        Ok(())
    }
    async fn exec_process(
        &self,
        cid: &str,
        process: &oci_spec::runtime::Process,
    ) -> Result<SpawnedProcess, HostError> {
        self.record(format!("exec {cid} {:?}", process.args()));
        Ok(self.spawn(true))
    }
    fn signal_process(&self, pid: i32, signal: i32) -> Result<(), HostError> {
        self.record(format!("signal {pid} {signal}"));
        self.kill(pid, signal);
        Ok(())
    }
    fn signal_container(&self, cid: &str, signal: i32) -> Result<(), HostError> {
        self.record(format!("signal-all {cid} {signal}"));
        if self.stubborn.lock().unwrap().contains(cid) {
            return Ok(());
        }
        let pid = self.inits.lock().unwrap()[cid];
        self.kill(pid, signal);
        Ok(())
    }
    async fn stats(&self, cid: &str) -> Result<CgroupStats, HostError> {
        self.record(format!("stats {cid}"));
        Ok(CgroupStats {
            pids_stats: Some(PidsStats {
                current: 1,
                limit: 0,
            }),
            ..Default::default()
        })
    }
    async fn set_frozen(&self, cid: &str, frozen: bool) -> Result<(), HostError> {
        self.record(format!("frozen {cid} {frozen}"));
        Ok(())
    }
    async fn update_resources(
        &self,
        cid: &str,
        r: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), HostError> {
        let limit = r.memory().as_ref().and_then(|m| m.limit());
        self.record(format!("update {cid} memory={limit:?}"));
        Ok(())
    }
    async fn remove_container(&self, cid: &str) -> Result<(), HostError> {
        self.record(format!("remove {cid}"));
        Ok(())
    }
    fn oom_kill_count(&self, cid: &str) -> u64 {
        self.oom.lock().unwrap().get(cid).copied().unwrap_or(0)
    }
    fn set_time(&self, sec: i64, usec: i64) -> Result<(), HostError> {
        self.record(format!("time {sec}.{usec}"));
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct FakeImages {
    pub(super) calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ImageService for FakeImages {
    async fn pull(&self, image: &str, cid: &str, dest: &Path) -> Result<(), ImageError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("pull {image} {cid} {}", dest.display()));
        if image.ends_with("busybox") {
            Ok(())
        } else if image.contains("encrypted") {
            // What the guest-pull adapter reports when a layer key is not released.
            Err(ImageError::Failed(format!(
                "pull {image}: layer 1 of 2: decryption key kbs:///default/key/k1 \
                 was not released by the KBS"
            )))
        } else {
            Err(ImageError::NotAvailable(format!(
                "image pull is not available yet: cannot provide {image}"
            )))
        }
    }
    async fn release(&self, cid: &str, _dest: &Path) -> Result<(), ImageError> {
        self.calls.lock().unwrap().push(format!("release {cid}"));
        Ok(())
    }
}

/// A recording network port: answers with what it was given.
#[derive(Default)]
pub(super) struct FakeNetwork {
    pub(super) calls: Mutex<Vec<String>>,
}

impl FakeNetwork {
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

#[async_trait::async_trait]
impl NetworkHost for FakeNetwork {
    async fn list_interfaces(&self) -> Result<Vec<Interface>, HostError> {
        self.record("list_interfaces".into());
        Ok(vec![Interface {
            name: "lo".into(),
            ..Default::default()
        }])
    }
    async fn update_interface(&self, iface: &Interface) -> Result<Interface, HostError> {
        self.record(format!("update_interface {} {}", iface.hw_addr, iface.name));
        if iface.hw_addr == "02:00:00:00:00:99" {
            return Err(HostError::NotFound(format!(
                "no interface with hardware address {}",
                iface.hw_addr
            )));
        }
        Ok(iface.clone())
    }
    async fn list_routes(&self) -> Result<Vec<Route>, HostError> {
        self.record("list_routes".into());
        Ok(Vec::new())
    }
    async fn update_routes(&self, routes: &[Route]) -> Result<Vec<Route>, HostError> {
        self.record(format!("update_routes {}", routes.len()));
        Ok(routes.to_vec())
    }
    async fn add_arp_neighbors(&self, neighbors: &[ARPNeighbor]) -> Result<(), HostError> {
        self.record(format!("add_arp_neighbors {}", neighbors.len()));
        Ok(())
    }
}
