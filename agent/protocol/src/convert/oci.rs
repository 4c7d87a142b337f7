//! Wire conversions for `oci.proto`.

use super::{Wire, wire_message};
use crate::types::*;
use crate::wire::oci as w;

wire_message!(Spec => w::Spec {
    version: Version, process: Process, root: Root, hostname: Hostname, mounts: Mounts,
    hooks: Hooks, annotations: Annotations, linux: Linux, solaris: Solaris, windows: Windows,
});
wire_message!(Process => w::Process {
    terminal: Terminal, console_size: ConsoleSize, user: User, args: Args, env: Env, cwd: Cwd,
    capabilities: Capabilities, rlimits: Rlimits, no_new_privileges: NoNewPrivileges,
    apparmor_profile: ApparmorProfile, oom_score_adj: OOMScoreAdj, selinux_label: SelinuxLabel,
});
wire_message!(ConsoleBox => w::Box { height: Height, width: Width });
wire_message!(User => w::User {
    uid: UID, gid: GID, additional_gids: AdditionalGids, username: Username,
});
wire_message!(LinuxCapabilities => w::LinuxCapabilities {
    bounding: Bounding, effective: Effective, inheritable: Inheritable, permitted: Permitted,
    ambient: Ambient,
});
wire_message!(POSIXRlimit => w::POSIXRlimit { kind: Type, hard: Hard, soft: Soft });
wire_message!(Mount => w::Mount {
    destination: destination, source: source, kind: type_, options: options,
});
wire_message!(Root => w::Root { path: Path, readonly: Readonly });
wire_message!(Hooks => w::Hooks {
    prestart: Prestart, poststart: Poststart, poststop: Poststop, create_runtime: CreateRuntime,
    create_container: CreateContainer, start_container: StartContainer,
});
wire_message!(Hook => w::Hook { path: Path, args: Args, env: Env, timeout: Timeout });
wire_message!(Linux => w::Linux {
    uid_mappings: UIDMappings, gid_mappings: GIDMappings, sysctl: Sysctl, resources: Resources,
    cgroups_path: CgroupsPath, namespaces: Namespaces, devices: Devices, seccomp: Seccomp,
    rootfs_propagation: RootfsPropagation, masked_paths: MaskedPaths,
    readonly_paths: ReadonlyPaths, mount_label: MountLabel, intel_rdt: IntelRdt,
});
wire_message!(Windows => w::Windows { dummy: dummy });
wire_message!(Solaris => w::Solaris { dummy: dummy });
wire_message!(LinuxIDMapping => w::LinuxIDMapping {
    host_id: HostID, container_id: ContainerID, size: Size,
});
wire_message!(LinuxNamespace => w::LinuxNamespace { kind: Type, path: Path });
wire_message!(LinuxDevice => w::LinuxDevice {
    path: Path, kind: Type, major: Major, minor: Minor, file_mode: FileMode, uid: UID, gid: GID,
});
wire_message!(LinuxResources => w::LinuxResources {
    devices: Devices, memory: Memory, cpu: CPU, pids: Pids, block_io: BlockIO,
    hugepage_limits: HugepageLimits, network: Network,
});
wire_message!(LinuxMemory => w::LinuxMemory {
    limit: Limit, reservation: Reservation, swap: Swap, kernel: Kernel, kernel_tcp: KernelTCP,
    swappiness: Swappiness, disable_oom_killer: DisableOOMKiller,
});
wire_message!(LinuxCPU => w::LinuxCPU {
    shares: Shares, quota: Quota, period: Period, realtime_runtime: RealtimeRuntime,
    realtime_period: RealtimePeriod, cpus: Cpus, mems: Mems,
});
wire_message!(LinuxWeightDevice => w::LinuxWeightDevice {
    major: Major, minor: Minor, weight: Weight, leaf_weight: LeafWeight,
});
wire_message!(LinuxThrottleDevice => w::LinuxThrottleDevice {
    major: Major, minor: Minor, rate: Rate,
});
wire_message!(LinuxBlockIO => w::LinuxBlockIO {
    weight: Weight, leaf_weight: LeafWeight, weight_device: WeightDevice,
    throttle_read_bps_device: ThrottleReadBpsDevice,
    throttle_write_bps_device: ThrottleWriteBpsDevice,
    throttle_read_iops_device: ThrottleReadIOPSDevice,
    throttle_write_iops_device: ThrottleWriteIOPSDevice,
});
wire_message!(LinuxPids => w::LinuxPids { limit: Limit });
wire_message!(LinuxDeviceCgroup => w::LinuxDeviceCgroup {
    allow: Allow, kind: Type, major: Major, minor: Minor, access: Access,
});
wire_message!(LinuxNetwork => w::LinuxNetwork { class_id: ClassID, priorities: Priorities });
wire_message!(LinuxHugepageLimit => w::LinuxHugepageLimit { pagesize: Pagesize, limit: Limit });
wire_message!(LinuxInterfacePriority => w::LinuxInterfacePriority {
    name: Name, priority: Priority,
});
wire_message!(LinuxSeccomp => w::LinuxSeccomp {
    default_action: DefaultAction, architectures: Architectures, flags: Flags,
    syscalls: Syscalls,
});
wire_message!(LinuxSeccompArg => w::LinuxSeccompArg {
    index: Index, value: Value, value_two: ValueTwo, op: Op,
});
wire_message!(LinuxSyscall => w::LinuxSyscall {
    names: Names, action: Action, errno_ret: ErrnoRet, args: Args,
});
wire_message!(LinuxIntelRdt => w::LinuxIntelRdt { l3_cache_schema: L3CacheSchema });

impl Wire<w::linux_syscall::ErrnoRet> for SyscallErrnoRet {
    fn from_wire(wire: w::linux_syscall::ErrnoRet) -> Self {
        match wire {
            w::linux_syscall::ErrnoRet::Errnoret(errno) => Self::Errnoret(errno),
        }
    }
    fn into_wire(self) -> w::linux_syscall::ErrnoRet {
        match self {
            Self::Errnoret(errno) => w::linux_syscall::ErrnoRet::Errnoret(errno),
        }
    }
}
