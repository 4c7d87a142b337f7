//! The container-init helper's instructions, computed from the OCI spec in the agent (pure)
//! and sent to the helper as JSON over its control socket.

use oci_spec::runtime::{Capability, LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

/// Default `PATH` when the spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the helper does before exec'ing the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Setup {
    /// A new container: mounts, pivot_root, then wait for StartContainer.
    Create(ContainerSetup),
    /// Enter the namespaces of the running container whose init has this pid.
    Exec {
        /// Init pid (agent's pid namespace).
        init_pid: i32,
    },
}

/// Filesystem and namespace setup of a new container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSetup {
    /// Prepared rootfs.
    pub rootfs: String,
    /// Namespaces to join: (kind, `/proc/PID/ns/KIND`).
    pub join: Vec<(String, String)>,
    /// Create a cgroup namespace (after the agent moved us into the container cgroup).
    pub new_cgroup_ns: bool,
    /// Hostname to set (only with a new UTS namespace).
    pub hostname: Option<String>,
    /// Mounts, in order.
    pub mounts: Vec<MountPlan>,
    /// Device nodes to create (path, type char, major, minor, mode, uid, gid).
    pub devices: Vec<DevicePlan>,
    /// Remount the root read-only.
    pub readonly_root: bool,
    /// Paths hidden from the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    pub readonly_paths: Vec<String>,
    /// sysctl settings.
    pub sysctl: Vec<(String, String)>,
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Source (path for binds, name otherwise).
    pub source: String,
    /// Destination inside the rootfs (absolute, container view).
    pub destination: String,
    /// Filesystem type (`bind` for bind mounts).
    pub fstype: String,
    /// `MS_*` flags except propagation.
    pub flags: u64,
    /// Propagation flags (`MS_PRIVATE`, `MS_SLAVE`, ... with `MS_REC`), applied after.
    pub propagation: u64,
    /// Filesystem data (unknown options).
    pub data: String,
}

/// A device node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// Path in the container.
    pub path: String,
    /// `c`, `b`, `u` or `p`.
    pub kind: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Capability sets by number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: Vec<u8>,
    /// Effective set.
    pub effective: Vec<u8>,
    /// Inheritable set.
    pub inheritable: Vec<u8>,
    /// Permitted set.
    pub permitted: Vec<u8>,
    /// Ambient set.
    pub ambient: Vec<u8>,
}

/// The process to exec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv.
    pub args: Vec<String>,
    /// Environment (`KEY=value`).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// umask.
    pub umask: Option<u32>,
    /// (resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    /// Capabilities; `None` keeps the helper's (root's) set.
    pub caps: Option<CapsPlan>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
    /// The stdio fds are a terminal slave to make the controlling terminal.
    pub terminal: bool,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// Initial terminal size (rows, columns) for a terminal process.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Compiled seccomp filters of the container (empty: none).
    #[serde(default)]
    pub seccomp: super::seccomp::Filters,
}

/// Everything the helper needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperPlan {
    /// Namespace/filesystem setup.
    pub setup: Setup,
    /// The program.
    pub process: ProcessPlan,
}

/// Which namespaces the spec asks for, as the agent applies them in a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceChoice {
    /// Own pid namespace.
    pub pid: bool,
    /// Own (or pod-shared) IPC namespace.
    pub ipc: bool,
    /// Own (or pod-shared) UTS namespace.
    pub uts: bool,
    /// Own cgroup namespace.
    pub cgroup: bool,
}

/// Reads the spec's namespace list. The network namespace is always the guest's (the
/// pod's); mount namespaces are always new.
pub fn namespaces(spec: &Spec) -> NamespaceChoice {
    let mut c = NamespaceChoice::default();
    let list = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in list {
        match ns.typ() {
            LinuxNamespaceType::Pid => c.pid = true,
            LinuxNamespaceType::Ipc => c.ipc = true,
            LinuxNamespaceType::Uts => c.uts = true,
            LinuxNamespaceType::Cgroup => c.cgroup = true,
            _ => {}
        }
    }
    c
}

const MOUNT_FLAGS: &[(&str, bool, u64)] = &[
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("nosuid", false, libc::MS_NOSUID),
    ("suid", true, libc::MS_NOSUID),
    ("nodev", false, libc::MS_NODEV),
    ("dev", true, libc::MS_NODEV),
    ("noexec", false, libc::MS_NOEXEC),
    ("exec", true, libc::MS_NOEXEC),
    ("sync", false, libc::MS_SYNCHRONOUS),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("remount", false, libc::MS_REMOUNT),
    ("mand", false, libc::MS_MANDLOCK),
    ("nomand", true, libc::MS_MANDLOCK),
    ("noatime", false, libc::MS_NOATIME),
    ("atime", true, libc::MS_NOATIME),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("diratime", true, libc::MS_NODIRATIME),
    ("relatime", false, libc::MS_RELATIME),
    ("norelatime", true, libc::MS_RELATIME),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("bind", false, libc::MS_BIND),
    ("rbind", false, libc::MS_BIND | libc::MS_REC),
];

const PROPAGATION: &[(&str, u64)] = &[
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// Parses mount options into (flags, propagation, data).
pub fn parse_mount_options(options: &[String]) -> (u64, u64, String) {
    let (mut flags, mut prop) = (0u64, 0u64);
    let mut data = Vec::new();
    for o in options {
        if let Some((_, clear, f)) = MOUNT_FLAGS.iter().find(|(n, _, _)| n == o) {
            if *clear {
                flags &= !f;
            } else {
                flags |= f;
            }
        } else if let Some((_, p)) = PROPAGATION.iter().find(|(n, _)| n == o) {
            prop |= p;
        } else {
            data.push(o.as_str());
        }
    }
    (flags, prop, data.join(","))
}

const RLIMITS: &[(&str, u32)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn cap_number(c: &Capability) -> Option<u8> {
    // oci-spec serialises capabilities as "CAP_NAME"; the kernel numbers are fixed.
    const NAMES: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    let name = serde_json::to_value(c).ok()?;
    let name = name.as_str()?;
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

fn cap_set(set: &Option<std::collections::HashSet<Capability>>) -> Vec<u8> {
    let mut v: Vec<u8> = set.iter().flatten().filter_map(cap_number).collect();
    v.sort_unstable();
    v
}

fn clamp_u16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The process part of the plan.
pub fn process_plan(p: &oci_spec::runtime::Process) -> Result<ProcessPlan, String> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err("process has no args".into());
    }
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ()).map_err(|e| e.to_string())?;
        let name = name.as_str().unwrap_or_default().to_string();
        let res = RLIMITS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown rlimit {name}"))?;
        rlimits.push((res, r.soft(), r.hard()));
    }
    let caps = p.capabilities().as_ref().map(|c| CapsPlan {
        bounding: cap_set(c.bounding()),
        effective: cap_set(c.effective()),
        inheritable: cap_set(c.inheritable()),
        permitted: cap_set(c.permitted()),
        ambient: cap_set(c.ambient()),
    });
    let cwd = p.cwd().display().to_string();
    Ok(ProcessPlan {
        args,
        env,
        cwd: if cwd.is_empty() { "/".into() } else { cwd },
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        umask: p.user().umask(),
        rlimits,
        caps,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        console_size: p
            .console_size()
            .as_ref()
            .map(|b| (clamp_u16(b.height()), clamp_u16(b.width()))),
        // The proto has no presence: 0 means unset.
        oom_score_adj: p.oom_score_adj().filter(|v| *v != 0),
        // Filled in by the host from the container's profile.
        seccomp: Vec::new(),
    })
}

/// Paths from which a container's helper opens the pod's IPC and UTS namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespacePaths {
    /// The IPC namespace.
    pub ipc: String,
    /// The UTS namespace.
    pub uts: String,
}

/// The setup part for a new container.
///
/// `pod` is `None` for the pod's sandbox container (new IPC and UTS namespaces, and the
/// spec's hostname), else where the helper opens the pod's namespaces to join them.
pub fn container_setup(
    spec: &Spec,
    rootfs: &str,
    ns: NamespaceChoice,
    pod: Option<&PodNamespacePaths>,
) -> Result<ContainerSetup, String> {
    let mut join = Vec::new();
    if let Some(pod) = pod {
        for (kind, wanted, path) in [("ipc", ns.ipc, &pod.ipc), ("uts", ns.uts, &pod.uts)] {
            if wanted {
                join.push((kind.to_string(), path.clone()));
            }
        }
    }
    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().display().to_string();
        if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
            return Err(format!(
                "mount destination {dest:?} must be absolute without .."
            ));
        }
        let (flags, propagation, data) = parse_mount_options(m.options().as_deref().unwrap_or(&[]));
        let mut fstype = m.typ().clone().unwrap_or_default();
        if flags & libc::MS_BIND != 0 {
            fstype = "bind".into();
        }
        if fstype.is_empty() {
            return Err(format!("mount at {dest}: no type"));
        }
        mounts.push(MountPlan {
            source: m
                .source()
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_default(),
            destination: dest,
            fstype,
            flags,
            propagation,
            data,
        });
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let devices = linux
        .devices()
        .iter()
        .flatten()
        .map(|d| DevicePlan {
            path: d.path().display().to_string(),
            kind: serde_json::to_value(d.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
        .collect();
    let hostname = spec
        .hostname()
        .clone()
        .filter(|h| !h.is_empty() && ns.uts && pod.is_none());
    Ok(ContainerSetup {
        rootfs: rootfs.to_string(),
        join,
        new_cgroup_ns: ns.cgroup,
        hostname,
        mounts,
        devices,
        readonly_root: spec
            .root()
            .as_ref()
            .is_some_and(|r| r.readonly().unwrap_or(false)),
        masked_paths: linux.masked_paths().clone().unwrap_or_default(),
        readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
        sysctl: linux
            .sysctl()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_propagation_and_data() {
        let o: Vec<String> = [
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "rprivate",
            "ro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (f, p, d) = parse_mount_options(&o);
        assert_eq!(f, libc::MS_NOSUID | libc::MS_STRICTATIME | libc::MS_RDONLY);
        assert_eq!(p, libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(d, "mode=755,size=65536k");
        let (f, _, _) = parse_mount_options(&["ro".into(), "rw".into(), "rbind".into()]);
        assert_eq!(f, libc::MS_BIND | libc::MS_REC);
    }

    #[test]
    fn plan_from_a_wire_spec() {
        use agent_protocol::types as w;
        let wire = w::Spec {
            version: "1.1.0".into(),
            hostname: "pod".into(),
            process: Some(w::Process {
                args: vec!["sh".into()],
                env: vec!["A=1".into()],
                cwd: "/tmp".into(),
                user: Some(w::User {
                    uid: 1000,
                    gid: 100,
                    additional_gids: vec![5],
                    ..Default::default()
                }),
                capabilities: Some(w::LinuxCapabilities {
                    bounding: vec!["CAP_KILL".into(), "CAP_CHOWN".into()],
                    effective: vec!["CAP_KILL".into()],
                    ..Default::default()
                }),
                rlimits: vec![w::POSIXRlimit {
                    kind: "RLIMIT_NOFILE".into(),
                    hard: 1024,
                    soft: 512,
                }],
                no_new_privileges: true,
                terminal: true,
                ..Default::default()
            }),
            mounts: vec![w::Mount {
                destination: "/proc".into(),
                source: "proc".into(),
                kind: "proc".into(),
                options: vec!["nosuid".into()],
            }],
            linux: Some(w::Linux {
                namespaces: vec![
                    w::LinuxNamespace {
                        kind: "pid".into(),
                        path: String::new(),
                    },
                    w::LinuxNamespace {
                        kind: "uts".into(),
                        path: String::new(),
                    },
                    w::LinuxNamespace {
                        kind: "network".into(),
                        path: String::new(),
                    },
                ],
                masked_paths: vec!["/proc/kcore".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = wire.to_oci().unwrap();
        let ns = namespaces(&spec);
        assert_eq!(
            ns,
            NamespaceChoice {
                pid: true,
                uts: true,
                ..Default::default()
            }
        );
        let p = process_plan(spec.process().as_ref().unwrap()).unwrap();
        assert_eq!(p.args, ["sh"]);
        assert_eq!(p.env, ["A=1".to_string(), format!("PATH={DEFAULT_PATH}")]);
        assert_eq!(
            (p.uid, p.gid, p.additional_gids.clone()),
            (1000, 100, vec![5])
        );
        assert_eq!(p.rlimits, [(libc::RLIMIT_NOFILE, 512, 1024)]);
        let caps = p.caps.unwrap();
        assert_eq!(caps.bounding, [0, 5]);
        assert_eq!(caps.effective, [5]);
        assert!(p.no_new_privileges && p.terminal);
        let s = container_setup(&spec, "/r", ns, None).unwrap();
        assert_eq!(s.hostname.as_deref(), Some("pod"));
        assert_eq!(s.mounts[0].fstype, "proc");
        assert_eq!(s.masked_paths, ["/proc/kcore"]);
        // A later container joins the sandbox's UTS namespace and keeps its hostname.
        let pod = PodNamespacePaths {
            ipc: "/proc/1/fd/7".into(),
            uts: "/proc/1/fd/8".into(),
        };
        let s2 = container_setup(&spec, "/r", ns, Some(&pod)).unwrap();
        // Only the namespaces the spec asks for (UTS here, not IPC) are joined.
        assert_eq!(s2.join, [("uts".to_string(), "/proc/1/fd/8".to_string())]);
        assert_eq!(s2.hostname, None);
    }
}
