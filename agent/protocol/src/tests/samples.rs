//! Fully populated domain values: every field (recursively) has a non-default value, which
//! `wire_tests::assert_fully_populated` verifies through protobuf reflection, so a round trip of
//! these values exercises every field of every message.

use std::collections::BTreeMap;

use crate::types::*;

fn s(text: &str) -> String {
    text.to_owned()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

pub(crate) fn storage() -> Storage {
    Storage {
        driver: s("image_guest_pull"),
        driver_options: strings(&["image_guest_pull={\"metadata\":{}}"]),
        source: s("quay.io/prometheus/busybox:latest"),
        fstype: s("overlay"),
        options: strings(&["ro"]),
        mount_point: s("/run/kata-containers/c1/rootfs"),
        fs_group: Some(FSGroup {
            group_id: 1000,
            group_change_policy: FSGroupChangePolicy::OnRootMismatch,
        }),
        shared: true,
    }
}

pub(crate) fn device() -> Device {
    Device {
        id: s("0000:00:02.0"),
        kind: s("blk"),
        vm_path: s("/dev/vda"),
        container_path: s("/dev/xvda"),
        options: strings(&["opt"]),
    }
}

pub(crate) fn string_user() -> StringUser {
    StringUser {
        uid: s("nobody"),
        gid: s("nogroup"),
        additional_gids: strings(&["wheel"]),
    }
}

pub(crate) fn process() -> Process {
    Process {
        terminal: true,
        console_size: Some(ConsoleBox {
            height: 24,
            width: 80,
        }),
        user: Some(User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10, 20],
            username: s("user"),
        }),
        args: strings(&["/bin/sh", "-c", "echo hi"]),
        env: strings(&["PATH=/bin:/usr/bin", "TERM=xterm"]),
        cwd: s("/work"),
        capabilities: Some(LinuxCapabilities {
            bounding: strings(&["CAP_CHOWN"]),
            effective: strings(&["CAP_CHOWN"]),
            inheritable: strings(&["CAP_KILL"]),
            permitted: strings(&["CAP_CHOWN"]),
            ambient: strings(&["CAP_NET_BIND_SERVICE"]),
        }),
        rlimits: vec![POSIXRlimit {
            kind: s("RLIMIT_NOFILE"),
            hard: 1024,
            soft: 512,
        }],
        no_new_privileges: true,
        apparmor_profile: s("unconfined"),
        oom_score_adj: -500,
        selinux_label: s("system_u:system_r:container_t:s0"),
    }
}

fn hook(path: &str) -> Hook {
    Hook {
        path: s(path),
        args: strings(&[path, "arg"]),
        env: strings(&["A=1"]),
        timeout: 5,
    }
}

fn throttle(rate: u64) -> LinuxThrottleDevice {
    LinuxThrottleDevice {
        major: 8,
        minor: 1,
        rate,
    }
}

pub(crate) fn resources() -> LinuxResources {
    LinuxResources {
        devices: vec![LinuxDeviceCgroup {
            allow: true,
            kind: s("c"),
            major: 1,
            minor: 3,
            access: s("rwm"),
        }],
        memory: Some(LinuxMemory {
            limit: 256 << 20,
            reservation: 128 << 20,
            swap: 512 << 20,
            kernel: 64 << 20,
            kernel_tcp: 16 << 20,
            swappiness: 60,
            disable_oom_killer: true,
        }),
        cpu: Some(LinuxCPU {
            shares: 1024,
            quota: 50_000,
            period: 100_000,
            realtime_runtime: 950,
            realtime_period: 1000,
            cpus: s("0-1"),
            mems: s("0"),
        }),
        pids: Some(LinuxPids { limit: 100 }),
        block_io: Some(LinuxBlockIO {
            weight: 500,
            leaf_weight: 300,
            weight_device: vec![LinuxWeightDevice {
                major: 8,
                minor: 2,
                weight: 200,
                leaf_weight: 100,
            }],
            throttle_read_bps_device: vec![throttle(1)],
            throttle_write_bps_device: vec![throttle(2)],
            throttle_read_iops_device: vec![throttle(3)],
            throttle_write_iops_device: vec![throttle(4)],
        }),
        hugepage_limits: vec![LinuxHugepageLimit {
            pagesize: s("2MB"),
            limit: 1 << 21,
        }],
        network: Some(LinuxNetwork {
            class_id: 7,
            priorities: vec![LinuxInterfacePriority {
                name: s("eth0"),
                priority: 3,
            }],
        }),
    }
}

pub(crate) fn spec() -> Spec {
    let mapping = LinuxIDMapping {
        host_id: 100_000,
        container_id: 0,
        size: 65536,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert(s("io.kubernetes.cri.container-type"), s("container"));
    let mut sysctl = BTreeMap::new();
    sysctl.insert(s("net.ipv4.ip_forward"), s("1"));
    Spec {
        version: s("1.1.0"),
        process: Some(process()),
        root: Some(Root {
            path: s("/run/kata-containers/c1/rootfs"),
            readonly: true,
        }),
        hostname: s("pod"),
        mounts: vec![Mount {
            destination: s("/proc"),
            source: s("proc"),
            kind: s("proc"),
            options: strings(&["nosuid", "noexec", "nodev"]),
        }],
        hooks: Some(Hooks {
            prestart: vec![hook("/bin/prestart")],
            poststart: vec![hook("/bin/poststart")],
            poststop: vec![hook("/bin/poststop")],
            create_runtime: vec![hook("/bin/create-runtime")],
            create_container: vec![hook("/bin/create-container")],
            start_container: vec![hook("/bin/start-container")],
        }),
        annotations,
        linux: Some(Linux {
            uid_mappings: vec![LinuxIDMapping {
                container_id: 1,
                ..mapping.clone()
            }],
            gid_mappings: vec![LinuxIDMapping {
                container_id: 2,
                ..mapping
            }],
            sysctl,
            resources: Some(resources()),
            cgroups_path: s("/kubepods/pod1/c1"),
            // The first element of each list is fully populated; later ones may not be.
            namespaces: vec![
                LinuxNamespace {
                    kind: s("network"),
                    path: s("/var/run/netns/cni-1"),
                },
                LinuxNamespace {
                    kind: s("pid"),
                    path: s(""),
                },
            ],
            devices: vec![LinuxDevice {
                path: s("/dev/fuse"),
                kind: s("c"),
                major: 10,
                minor: 229,
                file_mode: 0o666,
                uid: 1,
                gid: 2,
            }],
            seccomp: Some(LinuxSeccomp {
                default_action: s("SCMP_ACT_ERRNO"),
                architectures: strings(&["SCMP_ARCH_X86_64"]),
                flags: strings(&["SECCOMP_FILTER_FLAG_LOG"]),
                syscalls: vec![LinuxSyscall {
                    names: strings(&["personality"]),
                    action: s("SCMP_ACT_ALLOW"),
                    errno_ret: Some(SyscallErrnoRet::Errnoret(1)),
                    args: vec![LinuxSeccompArg {
                        index: 1,
                        value: 8,
                        value_two: 9,
                        op: s("SCMP_CMP_EQ"),
                    }],
                }],
            }),
            rootfs_propagation: s("rslave"),
            masked_paths: strings(&["/proc/kcore"]),
            readonly_paths: strings(&["/proc/sys"]),
            mount_label: s("system_u:object_r:container_file_t:s0"),
            intel_rdt: Some(LinuxIntelRdt {
                l3_cache_schema: s("L3:0=ff"),
            }),
        }),
        solaris: Some(Solaris { dummy: s("x") }),
        windows: Some(Windows { dummy: s("y") }),
    }
}

pub(crate) fn create_container() -> CreateContainerRequest {
    CreateContainerRequest {
        container_id: s("c1"),
        exec_id: s("c1"),
        string_user: Some(string_user()),
        devices: vec![device()],
        storages: vec![storage()],
        oci: Some(spec()),
        sandbox_pidns: true,
        shared_mounts: vec![SharedMount {
            name: s("m"),
            src_ctr: s("a"),
            src_path: s("/a"),
            dst_ctr: s("b"),
            dst_path: s("/b"),
        }],
        stdin_port: 1,
        stdout_port: 2,
        stderr_port: 3,
    }
}

pub(crate) fn create_sandbox() -> CreateSandboxRequest {
    CreateSandboxRequest {
        hostname: s("pod"),
        dns: strings(&["nameserver 10.0.0.10"]),
        storages: vec![storage()],
        sandbox_pidns: true,
        sandbox_id: s("sb1"),
        guest_hook_path: s("/usr/share/oci/hooks"),
        kernel_modules: vec![KernelModule {
            name: s("overlay"),
            parameters: strings(&["a=1"]),
        }],
    }
}

pub(crate) fn exec_process() -> ExecProcessRequest {
    ExecProcessRequest {
        container_id: s("c1"),
        exec_id: s("e1"),
        string_user: Some(string_user()),
        process: Some(process()),
        stdin_port: 4,
        stdout_port: 5,
        stderr_port: 6,
    }
}

pub(crate) fn ip(address: &str) -> IPAddress {
    IPAddress {
        family: IPFamily::V6,
        address: s(address),
        mask: s("64"),
    }
}

pub(crate) fn interface() -> Interface {
    Interface {
        device: s("eth0"),
        name: s("eth0"),
        ip_addresses: vec![ip("fd00::2")],
        mtu: 1500,
        hw_addr: s("02:00:00:00:00:01"),
        device_path: s("/devices/pci0000:00/0000:00:03.0"),
        kind: s("veth"),
        raw_flags: 0x1003,
    }
}

pub(crate) fn routes() -> Routes {
    Routes {
        routes: vec![Route {
            dest: s("default"),
            gateway: s("fd00::1"),
            device: s("eth0"),
            source: s("fd00::2"),
            scope: 200,
            family: IPFamily::V6,
            flags: 4,
            mtu: 1400,
        }],
    }
}

pub(crate) fn arp_neighbors() -> ARPNeighbors {
    ARPNeighbors {
        neighbors: vec![ARPNeighbor {
            to_ip_address: Some(ip("fd00::9")),
            device: s("eth0"),
            lladdr: s("02:00:00:00:00:09"),
            state: 128,
            flags: 1,
        }],
    }
}

fn memory_data(base: u64) -> MemoryData {
    MemoryData {
        usage: base,
        max_usage: base + 1,
        failcnt: base + 2,
        limit: base + 3,
    }
}

fn blkio_entry(value: u64) -> Vec<BlkioStatsEntry> {
    vec![BlkioStatsEntry {
        major: 8,
        minor: 16,
        op: s("Read"),
        value,
    }]
}

pub(crate) fn stats_response() -> StatsContainerResponse {
    let mut stats = BTreeMap::new();
    stats.insert(s("anon"), 4096);
    let mut hugetlb = BTreeMap::new();
    hugetlb.insert(
        s("2MB"),
        HugetlbStats {
            usage: 1,
            max_usage: 2,
            failcnt: 3,
        },
    );
    StatsContainerResponse {
        cgroup_stats: Some(CgroupStats {
            cpu_stats: Some(CpuStats {
                cpu_usage: Some(CpuUsage {
                    total_usage: 1_000_000,
                    percpu_usage: vec![600_000, 400_000],
                    usage_in_kernelmode: 300_000,
                    usage_in_usermode: 700_000,
                }),
                throttling_data: Some(ThrottlingData {
                    periods: 10,
                    throttled_periods: 2,
                    throttled_time: 5000,
                }),
            }),
            memory_stats: Some(MemoryStats {
                cache: 8192,
                usage: Some(memory_data(100)),
                swap_usage: Some(memory_data(200)),
                kernel_usage: Some(memory_data(300)),
                use_hierarchy: true,
                stats,
            }),
            pids_stats: Some(PidsStats {
                current: 3,
                limit: 100,
            }),
            blkio_stats: Some(BlkioStats {
                io_service_bytes_recursive: blkio_entry(1),
                io_serviced_recursive: blkio_entry(2),
                io_queued_recursive: blkio_entry(3),
                io_service_time_recursive: blkio_entry(4),
                io_wait_time_recursive: blkio_entry(5),
                io_merged_recursive: blkio_entry(6),
                io_time_recursive: blkio_entry(7),
                sectors_recursive: blkio_entry(8),
            }),
            hugetlb_stats: hugetlb,
        }),
        network_stats: vec![NetworkStats {
            name: s("eth0"),
            rx_bytes: 1,
            rx_packets: 2,
            rx_errors: 3,
            rx_dropped: 4,
            tx_bytes: 5,
            tx_packets: 6,
            tx_errors: 7,
            tx_dropped: 8,
        }],
    }
}

pub(crate) fn guest_details_response() -> GuestDetailsResponse {
    GuestDetailsResponse {
        mem_block_size_bytes: 128 << 20,
        agent_details: Some(AgentDetails {
            version: s("0.1.0"),
            init_daemon: true,
            device_handlers: strings(&["blk"]),
            storage_handlers: strings(&["image_guest_pull"]),
            supports_seccomp: true,
            extra_features: strings(&["agent-policy"]),
        }),
        support_mem_hotplug_probe: true,
    }
}

pub(crate) fn copy_file() -> CopyFileRequest {
    CopyFileRequest {
        path: s("/run/kata-containers/shared/containers/c1-hostname"),
        file_size: 4,
        file_mode: 0o100_644,
        dir_mode: 0o40_755,
        uid: 1,
        gid: 2,
        offset: 3,
        data: b"pod\n".to_vec(),
    }
}

pub(crate) fn volume_stats_response() -> VolumeStatsResponse {
    VolumeStatsResponse {
        usage: vec![VolumeUsage {
            available: 1,
            total: 3,
            used: 2,
            unit: VolumeUsageUnit::Bytes,
        }],
        volume_condition: Some(VolumeCondition {
            abnormal: true,
            message: s("degraded"),
        }),
    }
}
