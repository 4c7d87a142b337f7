//! State machines of one pod: its containers and their processes (init + execs).
//!
//! ```text
//! process:   Created --start--> Running --exit--> Stopped
//!                                  |  ^
//!                            pause |  | resume
//!                                  v  |
//!                                 Paused --exit--> Stopped
//! Created --exit(kill before start)--> Stopped
//! ```
//! A container is its init process; it can be deleted when Created or Stopped. An exec can
//! only be added to a Running container. Exit status is shell style (code, or 128 + signal).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use agent_protocol::types;

use crate::CoreError;
use crate::pod::ContainerRole;

/// Status of a process (containerd's task status names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Frozen.
    Paused,
    /// Exited.
    Stopped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Shell-style exit status.
    pub status: u32,
    /// When the shim learned of the exit.
    pub at: SystemTime,
}

/// containerd's stdio paths of a process (fifos or files; empty = none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// stdin path.
    pub stdin: String,
    /// stdout path.
    pub stdout: String,
    /// stderr path.
    pub stderr: String,
    /// A terminal was requested (stderr is merged into stdout).
    pub terminal: bool,
}

/// One process: a container's init (empty exec id) or an exec.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessState {
    /// Exec id; empty for the init process.
    pub exec_id: String,
    /// Status.
    pub status: Status,
    /// Exit, once Stopped.
    pub exit: Option<ExitInfo>,
    /// Stdio paths.
    pub stdio: Stdio,
    /// The exec's process spec (execs only; sent on start).
    pub spec: Option<types::Process>,
}

impl ProcessState {
    /// A new process in Created.
    pub fn new(exec_id: &str, stdio: Stdio, spec: Option<types::Process>) -> Self {
        ProcessState {
            exec_id: exec_id.to_string(),
            status: Status::Created,
            exit: None,
            stdio,
            spec,
        }
    }

    fn invalid(&self, op: &'static str) -> CoreError {
        CoreError::InvalidState {
            what: if self.exec_id.is_empty() {
                "container"
            } else {
                "exec"
            },
            id: self.exec_id.clone(),
            status: self.status,
            op,
        }
    }

    /// Created → Running.
    pub fn start(&mut self) -> Result<(), CoreError> {
        match self.status {
            Status::Created => {
                self.status = Status::Running;
                Ok(())
            }
            _ => Err(self.invalid("start")),
        }
    }

    /// Records the exit; returns false if it was already recorded (first exit wins).
    pub fn exited(&mut self, status: u32, at: SystemTime) -> bool {
        if self.status == Status::Stopped {
            return false;
        }
        self.status = Status::Stopped;
        self.exit = Some(ExitInfo { status, at });
        true
    }

    /// Running → Paused.
    pub fn pause(&mut self) -> Result<(), CoreError> {
        match self.status {
            Status::Running => {
                self.status = Status::Paused;
                Ok(())
            }
            _ => Err(self.invalid("pause")),
        }
    }

    /// Paused → Running.
    pub fn resume(&mut self) -> Result<(), CoreError> {
        match self.status {
            Status::Paused => {
                self.status = Status::Running;
                Ok(())
            }
            _ => Err(self.invalid("resume")),
        }
    }

    /// Whether a signal can be delivered (the process exists in the guest and has not exited).
    pub fn signalable(&self) -> bool {
        matches!(
            self.status,
            Status::Running | Status::Paused | Status::Created
        )
    }
}

/// One container of the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Bundle directory on the host.
    pub bundle: String,
    /// Role in the pod.
    pub role: ContainerRole,
    /// Init process.
    pub init: ProcessState,
    /// Exec processes by exec id.
    pub execs: BTreeMap<String, ProcessState>,
}

impl ContainerState {
    /// A new container whose init process is Created.
    pub fn new(id: &str, bundle: &str, role: ContainerRole, stdio: Stdio) -> Self {
        ContainerState {
            id: id.to_string(),
            bundle: bundle.to_string(),
            role,
            init: ProcessState::new("", stdio, None),
            execs: BTreeMap::new(),
        }
    }

    /// Adds an exec (container must be Running).
    pub fn add_exec(
        &mut self,
        exec_id: &str,
        stdio: Stdio,
        spec: types::Process,
    ) -> Result<(), CoreError> {
        if exec_id.is_empty() {
            return Err(CoreError::Spec("exec id is empty".into()));
        }
        if self.execs.contains_key(exec_id) {
            return Err(CoreError::AlreadyExists {
                what: "exec",
                id: exec_id.to_string(),
            });
        }
        if self.init.status != Status::Running {
            return Err(CoreError::InvalidState {
                what: "container",
                id: self.id.clone(),
                status: self.init.status,
                op: "exec",
            });
        }
        self.execs.insert(
            exec_id.to_string(),
            ProcessState::new(exec_id, stdio, Some(spec)),
        );
        Ok(())
    }

    /// The init process (empty exec id) or an exec.
    pub fn process(&self, exec_id: &str) -> Result<&ProcessState, CoreError> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| CoreError::NotFound {
            what: "exec",
            id: exec_id.to_string(),
        })
    }

    /// Mutable access to a process.
    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut ProcessState, CoreError> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| CoreError::NotFound {
                what: "exec",
                id: exec_id.to_string(),
            })
    }

    /// Removes an exec that is not running; returns it.
    pub fn remove_exec(&mut self, exec_id: &str) -> Result<ProcessState, CoreError> {
        let p = self.process(exec_id)?;
        if matches!(p.status, Status::Running | Status::Paused) {
            return Err(p.invalid("delete"));
        }
        self.execs
            .remove(exec_id)
            .ok_or_else(|| CoreError::NotFound {
                what: "exec",
                id: exec_id.to_string(),
            })
    }

    /// Checks the container can be deleted (init Created or Stopped).
    pub fn check_deletable(&self) -> Result<(), CoreError> {
        match self.init.status {
            Status::Created | Status::Stopped => Ok(()),
            _ => Err(CoreError::InvalidState {
                what: "container",
                id: self.id.clone(),
                status: self.init.status,
                op: "delete",
            }),
        }
    }

    /// Marks every process Stopped with `status` (the VM died); returns the exec ids
    /// (empty = init) whose exit this recorded.
    pub fn all_exited(&mut self, status: u32, at: SystemTime) -> Vec<String> {
        let mut out = Vec::new();
        if self.init.exited(status, at) {
            out.push(String::new());
        }
        for (id, p) in &mut self.execs {
            if p.exited(status, at) {
                out.push(id.clone());
            }
        }
        out
    }
}

/// The containers of one pod (one shim, one VM).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pod {
    /// Sandbox id, fixed by the first container.
    pub sandbox_id: Option<String>,
    /// Containers by id.
    pub containers: BTreeMap<String, ContainerState>,
}

/// What removing a container means for the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Removal {
    /// The removed container.
    pub container: ContainerState,
    /// The VM must be stopped (the sandbox/standalone container went away).
    pub stop_vm: bool,
}

impl Pod {
    /// Admits a new container: the first one must boot the VM; later ones must join it.
    pub fn admit(&mut self, sandbox_id: &str, c: ContainerState) -> Result<(), CoreError> {
        if self.containers.contains_key(&c.id) {
            return Err(CoreError::AlreadyExists {
                what: "container",
                id: c.id,
            });
        }
        match (&self.sandbox_id, c.role.boots_vm()) {
            (None, true) => self.sandbox_id = Some(sandbox_id.to_string()),
            (None, false) => {
                return Err(CoreError::NotFound {
                    what: "sandbox",
                    id: sandbox_id.to_string(),
                });
            }
            (Some(existing), false) if existing == sandbox_id => {}
            (Some(existing), _) => {
                return Err(CoreError::Annotation {
                    key: crate::pod::CRI_SANDBOX_ID,
                    reason: format!(
                        "this shim serves sandbox {existing:?}; container {:?} belongs to {sandbox_id:?}",
                        c.id
                    ),
                });
            }
        }
        self.containers.insert(c.id.clone(), c);
        Ok(())
    }

    /// A container.
    pub fn container(&self, id: &str) -> Result<&ContainerState, CoreError> {
        self.containers.get(id).ok_or_else(|| CoreError::NotFound {
            what: "container",
            id: id.to_string(),
        })
    }

    /// A container, mutably.
    pub fn container_mut(&mut self, id: &str) -> Result<&mut ContainerState, CoreError> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| CoreError::NotFound {
                what: "container",
                id: id.to_string(),
            })
    }

    /// Removes a deletable container.
    pub fn remove(&mut self, id: &str) -> Result<Removal, CoreError> {
        self.container(id)?.check_deletable()?;
        let container = self
            .containers
            .remove(id)
            .ok_or_else(|| CoreError::NotFound {
                what: "container",
                id: id.to_string(),
            })?;
        let stop_vm = container.role.boots_vm() || self.containers.is_empty();
        Ok(Removal { container, stop_vm })
    }
}

#[cfg(test)]
mod tests;
