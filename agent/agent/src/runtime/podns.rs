//! The pod's IPC and UTS namespaces, held open for as long as the pod's sandbox container
//! exists: later containers of the pod join them even after the sandbox container's init has
//! exited (a namespace lives while something refers to it), and never join the namespaces of
//! an unrelated process that reused the init's pid.

use std::fs::File;
use std::os::fd::AsRawFd;

use agent_core::HostError;

use super::plan::PodNamespacePaths;

/// Open handles on a pod's IPC and UTS namespaces.
#[derive(Debug)]
pub struct PodNamespaces {
    ipc: File,
    uts: File,
}

impl PodNamespaces {
    /// Opens the namespaces process `pid` is in (the freshly spawned sandbox container init,
    /// still waiting for StartContainer, so it cannot have exited).
    pub fn of_process(pid: i32) -> Result<Self, HostError> {
        let open = |kind: &str| {
            File::open(format!("/proc/{pid}/ns/{kind}"))
                .map_err(|e| HostError::io(format!("keep the pod's {kind} namespace"), e))
        };
        Ok(PodNamespaces {
            ipc: open("ipc")?,
            uts: open("uts")?,
        })
    }

    /// Second handles on the same namespaces (kept by a container being created, so the
    /// namespaces stay open while its helper joins them even if the sandbox is removed).
    pub fn try_clone(&self) -> Result<Self, HostError> {
        let dup = |f: &File| f.try_clone().map_err(|e| HostError::io("dup namespace", e));
        Ok(PodNamespaces {
            ipc: dup(&self.ipc)?,
            uts: dup(&self.uts)?,
        })
    }

    /// Where a helper opens them: through this process's descriptor table, since the
    /// helper's exec closed its inherited (close-on-exec) copies.
    pub fn paths(&self) -> PodNamespacePaths {
        let me = std::process::id();
        PodNamespacePaths {
            ipc: format!("/proc/{me}/fd/{}", self.ipc.as_raw_fd()),
            uts: format!("/proc/{me}/fd/{}", self.uts.as_raw_fd()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_open_the_same_namespaces() {
        let me = i32::try_from(std::process::id()).unwrap();
        let pinned = PodNamespaces::of_process(me).unwrap();
        let copy = pinned.try_clone().unwrap();
        drop(pinned);
        let paths = copy.paths();
        for (kind, path) in [("ipc", &paths.ipc), ("uts", &paths.uts)] {
            let through_fd = std::fs::read_link(path).unwrap();
            let own = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
            assert_eq!(through_fd, own, "{kind}");
        }
        assert!(PodNamespaces::of_process(i32::MAX).is_err());
    }
}
