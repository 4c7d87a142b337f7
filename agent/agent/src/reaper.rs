//! The one place that reaps children. As PID 1 the agent inherits every orphan, so a
//! `waitpid(-1)` loop is required; anyone who spawns a process registers interest in its pid
//! with [`Reaper::watch`] instead of calling `wait` itself, so reaping never races a waiter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Exits nobody asked for yet are kept (bounded) so a watcher registering late still sees it.
const MAX_UNCLAIMED: usize = 4096;

#[derive(Default)]
struct State {
    waiters: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, i32>,
    unclaimed_order: VecDeque<i32>,
}

/// Handle to the reaper task.
#[derive(Clone, Default)]
pub struct Reaper {
    state: Arc<Mutex<State>>,
}

/// Shell-style status: the exit code, or 128 + signal number.
pub fn status_code(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Reaper {
    /// Starts reaping on SIGCHLD. Must be called inside a tokio runtime.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let mut sigchld = signal(SignalKind::child())?;
        let r = reaper.clone();
        tokio::spawn(async move {
            loop {
                r.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Reaps every exited child now.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    if let Some((pid, code)) = status_code(ws) {
                        self.record(pid, code);
                    }
                }
            }
        }
    }

    fn record(&self, pid: i32, code: i32) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(tx) = st.waiters.remove(&pid) {
            let _ = tx.send(code);
            return;
        }
        tracing::debug!(pid, code, "reaped unwatched process");
        st.unclaimed.insert(pid, code);
        st.unclaimed_order.push_back(pid);
        while st.unclaimed_order.len() > MAX_UNCLAIMED {
            if let Some(old) = st.unclaimed_order.pop_front() {
                st.unclaimed.remove(&old);
            }
        }
    }

    /// Returns a receiver that yields `pid`'s status once it exits (immediately if it
    /// already did).
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut st) = self.state.lock() {
            if let Some(code) = st.unclaimed.remove(&pid) {
                st.unclaimed_order.retain(|p| *p != pid);
                let _ = tx.send(code);
            } else {
                st.waiters.insert(pid, tx);
            }
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // the reaper under test does the waiting
    async fn watch_before_and_after_exit() {
        let reaper = Reaper::start().unwrap();
        // Registered before exit.
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let rx = reaper.watch(child.id() as i32);
        assert_eq!(rx.await.unwrap(), 7);
        // Exit recorded before anyone watches.
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        for _ in 0..200 {
            reaper.reap_all();
            if reaper.state.lock().unwrap().unclaimed.contains_key(&pid) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(reaper.watch(pid).await.unwrap(), 137);
    }
}
