//! Translation of the host's OCI runtime spec (`config.json` in the bundle) into the spec the
//! agent receives.
//!
//! What is dropped, and why (the guest is a separate machine; nothing host-side means
//! anything there, and host paths must never steer the guest):
//! - `hooks`: host programs; the guest cannot run them.
//! - namespace `path`s: host namespace files. The type is kept; the agent puts the container
//!   into the pod's namespaces inside the guest.
//! - `root.path`: replaced by the guest mount point of the guest-pulled image.
//! - bind mounts of host paths (volumes, `/etc/hosts`, `/etc/resolv.conf`, ...): no
//!   filesystem is shared with the host (Kata's `shared_fs = "none"`). Kernel filesystems
//!   (proc, sysfs, tmpfs, devpts, mqueue, cgroup, ...) are kept.
//! - `linux.devices`: host device nodes.
//! - `linux.seccomp`: not applied in the guest (Kata's default `disable_guest_seccomp`).
//! - `process.apparmorProfile`, `process.selinuxLabel`, `linux.mountLabel`: host LSM labels.

use std::collections::BTreeMap;

use agent_protocol::types;
use serde::Deserialize;

use crate::CoreError;

/// The parts of a host OCI runtime spec that can reach the guest (camelCase JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostSpec {
    /// `ociVersion`.
    pub oci_version: String,
    /// `process`.
    pub process: Option<HostProcess>,
    /// `root`.
    pub root: Option<HostRoot>,
    /// `hostname`.
    pub hostname: String,
    /// `mounts`.
    pub mounts: Vec<HostMount>,
    /// `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `linux`.
    pub linux: Option<HostLinux>,
}

/// `process`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostProcess {
    /// `terminal`.
    pub terminal: bool,
    /// `consoleSize`.
    pub console_size: Option<HostConsoleSize>,
    /// `user`.
    pub user: HostUser,
    /// `args`.
    pub args: Vec<String>,
    /// `env`.
    pub env: Vec<String>,
    /// `cwd`.
    pub cwd: String,
    /// `capabilities`.
    pub capabilities: Option<HostCapabilities>,
    /// `rlimits`.
    pub rlimits: Vec<HostRlimit>,
    /// `noNewPrivileges`.
    pub no_new_privileges: bool,
    /// `oomScoreAdj`.
    pub oom_score_adj: Option<i64>,
}

/// `process.consoleSize`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostConsoleSize {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// `process.user`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// User name.
    pub username: String,
}

/// `process.capabilities`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostCapabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// `process.rlimits[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostRlimit {
    /// `RLIMIT_*` name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostRoot {
    /// Host path of the rootfs (never sent).
    pub path: String,
    /// Read-only rootfs.
    pub readonly: bool,
}

/// `mounts[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostMount {
    /// Destination in the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options.
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostLinux {
    /// `uidMappings`.
    pub uid_mappings: Vec<HostIdMapping>,
    /// `gidMappings`.
    pub gid_mappings: Vec<HostIdMapping>,
    /// `sysctl`.
    pub sysctl: BTreeMap<String, String>,
    /// `resources`.
    pub resources: Option<HostResources>,
    /// `cgroupsPath`.
    pub cgroups_path: String,
    /// `namespaces`.
    pub namespaces: Vec<HostNamespace>,
    /// `rootfsPropagation`.
    pub rootfs_propagation: String,
    /// `maskedPaths`.
    pub masked_paths: Vec<String>,
    /// `readonlyPaths`.
    pub readonly_paths: Vec<String>,
}

/// `linux.uidMappings[]` / `gidMappings[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostIdMapping {
    /// `containerID`.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// `hostID`.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// `size`.
    pub size: u32,
}

/// `linux.namespaces[]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HostNamespace {
    /// Namespace type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Host path (never sent).
    pub path: String,
}

/// `linux.resources` (the cgroup knobs the agent applies).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct HostResources {
    /// `memory`.
    pub memory: Option<HostMemory>,
    /// `cpu`.
    pub cpu: Option<HostCpu>,
    /// `pids`.
    pub pids: Option<HostPids>,
}

/// `linux.resources.memory`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct HostMemory {
    /// Limit in bytes.
    pub limit: Option<i64>,
    /// Soft limit in bytes.
    pub reservation: Option<i64>,
    /// Memory + swap limit.
    pub swap: Option<i64>,
    /// Swappiness.
    pub swappiness: Option<u64>,
}

/// `linux.resources.cpu`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct HostCpu {
    /// Shares.
    pub shares: Option<u64>,
    /// Quota in µs per period.
    pub quota: Option<i64>,
    /// Period in µs.
    pub period: Option<u64>,
    /// CPU list.
    pub cpus: Option<String>,
    /// Memory node list.
    pub mems: Option<String>,
}

/// `linux.resources.pids`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(default)]
pub struct HostPids {
    /// Max processes.
    pub limit: i64,
}

/// Kernel filesystems that exist in the guest on their own (not host paths).
const GUEST_LOCAL_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm",
];

impl HostSpec {
    /// Parses `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, CoreError> {
        serde_json::from_str(text).map_err(|e| CoreError::Spec(e.to_string()))
    }
}

/// The agent's view of host resources (shared by CreateContainer and UpdateContainer).
pub fn resources_to_agent(r: &HostResources) -> types::LinuxResources {
    types::LinuxResources {
        memory: r.memory.as_ref().map(|m| types::LinuxMemory {
            limit: m.limit.unwrap_or(0),
            reservation: m.reservation.unwrap_or(0),
            swap: m.swap.unwrap_or(0),
            swappiness: m.swappiness.unwrap_or(0),
            ..Default::default()
        }),
        cpu: r.cpu.as_ref().map(|c| types::LinuxCPU {
            shares: c.shares.unwrap_or(0),
            quota: c.quota.unwrap_or(0),
            period: c.period.unwrap_or(0),
            cpus: c.cpus.clone().unwrap_or_default(),
            mems: c.mems.clone().unwrap_or_default(),
            ..Default::default()
        }),
        pids: r.pids.as_ref().map(|p| types::LinuxPids { limit: p.limit }),
        ..Default::default()
    }
}

/// Translates a process (container init or exec) for the agent.
pub fn process_to_agent(p: &HostProcess) -> types::Process {
    types::Process {
        terminal: p.terminal,
        console_size: p.console_size.as_ref().map(|c| types::ConsoleBox {
            height: c.height,
            width: c.width,
        }),
        user: Some(types::User {
            uid: p.user.uid,
            gid: p.user.gid,
            additional_gids: p.user.additional_gids.clone(),
            username: p.user.username.clone(),
        }),
        args: p.args.clone(),
        env: p.env.clone(),
        cwd: if p.cwd.is_empty() {
            "/".into()
        } else {
            p.cwd.clone()
        },
        capabilities: p.capabilities.as_ref().map(|c| types::LinuxCapabilities {
            bounding: c.bounding.clone(),
            effective: c.effective.clone(),
            inheritable: c.inheritable.clone(),
            permitted: c.permitted.clone(),
            ambient: c.ambient.clone(),
        }),
        rlimits: p
            .rlimits
            .iter()
            .map(|r| types::POSIXRlimit {
                kind: r.kind.clone(),
                hard: r.hard,
                soft: r.soft,
            })
            .collect(),
        no_new_privileges: p.no_new_privileges,
        apparmor_profile: String::new(),
        oom_score_adj: p.oom_score_adj.unwrap_or(0),
        selinux_label: String::new(),
    }
}

/// Translates the container spec for the agent; `guest_root` is the guest rootfs path.
pub fn spec_to_agent(host: &HostSpec, guest_root: &str) -> Result<types::Spec, CoreError> {
    let process = host
        .process
        .as_ref()
        .ok_or_else(|| CoreError::Spec("config.json has no process".into()))?;
    if process.args.is_empty() {
        return Err(CoreError::Spec("process.args is empty".into()));
    }
    let mounts = host
        .mounts
        .iter()
        .filter(|m| {
            let keep = GUEST_LOCAL_FS.contains(&m.kind.as_str());
            if !keep {
                tracing::debug!(
                    destination = m.destination,
                    kind = m.kind,
                    "host mount not shared with the guest"
                );
            }
            keep
        })
        .map(|m| types::Mount {
            destination: m.destination.clone(),
            source: m.source.clone(),
            kind: m.kind.clone(),
            options: m.options.clone(),
        })
        .collect();
    let linux = host.linux.as_ref().map(|l| types::Linux {
        uid_mappings: l.uid_mappings.iter().map(id_map).collect(),
        gid_mappings: l.gid_mappings.iter().map(id_map).collect(),
        sysctl: l.sysctl.clone(),
        resources: l.resources.as_ref().map(resources_to_agent),
        cgroups_path: l.cgroups_path.clone(),
        namespaces: l
            .namespaces
            .iter()
            .map(|n| types::LinuxNamespace {
                kind: n.kind.clone(),
                path: String::new(),
            })
            .collect(),
        devices: Vec::new(),
        seccomp: None,
        rootfs_propagation: l.rootfs_propagation.clone(),
        masked_paths: l.masked_paths.clone(),
        readonly_paths: l.readonly_paths.clone(),
        mount_label: String::new(),
        intel_rdt: None,
    });
    Ok(types::Spec {
        version: host.oci_version.clone(),
        process: Some(process_to_agent(process)),
        root: Some(types::Root {
            path: guest_root.to_string(),
            readonly: host.root.as_ref().is_some_and(|r| r.readonly),
        }),
        hostname: host.hostname.clone(),
        mounts,
        hooks: None,
        annotations: host.annotations.clone(),
        linux,
        solaris: None,
        windows: None,
    })
}

fn id_map(m: &HostIdMapping) -> types::LinuxIDMapping {
    types::LinuxIDMapping {
        host_id: m.host_id,
        container_id: m.container_id,
        size: m.size,
    }
}

#[cfg(test)]
mod tests;
