//! The container scenario shared by the host test (`tests/host_lifecycle.rs`) and the guest
//! test (`tests/tests/agent_guest.rs` of cocoon-tests includes this file by path).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use agent_protocol::types::*;
use agent_protocol::{AgentClient, ClientError, Code};

/// Builds a busybox rootfs (static /usr/bin/busybox + applet symlinks) in `dest`.
pub fn busybox_tree(dest: &Path) {
    let bin = dest.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc", "root", "usr/bin"] {
        std::fs::create_dir_all(dest.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    let list = std::process::Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let link = bin.join(applet);
        if applet != "busybox" && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).unwrap();
        }
    }
    std::fs::write(dest.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dest.join("etc/group"), "root:x:0:\n").unwrap();
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        source: source.into(),
        kind: kind.into(),
        options: options.iter().map(|s| s.to_string()).collect(),
    }
}

/// A busybox process.
pub fn process(args: &[&str], terminal: bool) -> Process {
    Process {
        terminal,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin:/usr/bin".into(), "HOME=/root".into()],
        cwd: "/".into(),
        user: Some(User::default()),
        ..Default::default()
    }
}

/// CreateContainer for a busybox container named `cid` from `image`.
pub fn create_req(cid: &str, image: &str, args: &[&str]) -> CreateContainerRequest {
    let root = format!("/run/kata-containers/{cid}/rootfs");
    let ns = |k: &str| LinuxNamespace {
        kind: k.into(),
        path: String::new(),
    };
    CreateContainerRequest {
        container_id: cid.into(),
        storages: vec![Storage {
            driver: "image_guest_pull".into(),
            source: image.into(),
            mount_point: root.clone(),
            ..Default::default()
        }],
        oci: Some(Spec {
            version: "1.1.0".into(),
            hostname: "pod".into(),
            process: Some(process(args, false)),
            root: Some(Root {
                path: root,
                readonly: false,
            }),
            mounts: vec![
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount(
                    "/dev",
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "strictatime", "mode=755", "size=65536k"],
                ),
                mount(
                    "/dev/pts",
                    "devpts",
                    "devpts",
                    &[
                        "nosuid",
                        "noexec",
                        "newinstance",
                        "ptmxmode=0666",
                        "mode=0620",
                    ],
                ),
                mount(
                    "/dev/shm",
                    "tmpfs",
                    "shm",
                    &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
                ),
                mount(
                    "/sys",
                    "sysfs",
                    "sysfs",
                    &["nosuid", "noexec", "nodev", "ro"],
                ),
            ],
            linux: Some(Linux {
                namespaces: vec![ns("pid"), ns("ipc"), ns("uts"), ns("mount"), ns("network")],
                masked_paths: vec!["/proc/kcore".into()],
                readonly_paths: vec!["/proc/sys".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Reads a stream until `needle` appears (or EOF / timeout); returns everything read.
pub async fn read_until(
    c: &AgentClient,
    cid: &str,
    exec: &str,
    stderr: bool,
    needle: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = c.with_long_poll_timeout(Some(Duration::from_secs(30)));
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; got {:?}",
            String::from_utf8_lossy(&out)
        );
        let req = ReadStreamRequest {
            container_id: cid.into(),
            exec_id: exec.into(),
            len: 32 * 1024,
        };
        let r = if stderr {
            c.read_stderr(req).await
        } else {
            c.read_stdout(req).await
        };
        match r {
            Ok(r) => out.extend(r.data),
            Err(e) if e.code() == Code::OutOfRange => break,
            Err(e) => panic!("read {cid}/{exec}: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for a process.
pub async fn wait(c: &AgentClient, cid: &str, exec: &str) -> i32 {
    c.with_long_poll_timeout(Some(Duration::from_secs(60)))
        .wait_process(WaitProcessRequest {
            container_id: cid.into(),
            exec_id: exec.into(),
        })
        .await
        .unwrap()
        .status
}

/// Starts a created container, reads its stdout to EOF, waits for it and removes it;
/// returns the output and the exit status.
pub async fn start_collect_remove(c: &AgentClient, cid: &str) -> (String, i32) {
    c.start_container(StartContainerRequest {
        container_id: cid.into(),
    })
    .await
    .unwrap();
    let out = read_until(c, cid, "", false, "\u{0}never").await;
    let status = wait(c, cid, "").await;
    c.remove_container(RemoveContainerRequest {
        container_id: cid.into(),
        timeout: 10,
    })
    .await
    .unwrap();
    (out, status)
}

/// Starts an exec'd process.
pub async fn exec(c: &AgentClient, cid: &str, exec_id: &str, args: &[&str], tty: bool) {
    c.exec_process(ExecProcessRequest {
        container_id: cid.into(),
        exec_id: exec_id.into(),
        process: Some(process(args, tty)),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("exec {args:?}: {e}"));
}

/// Writes to stdin.
pub async fn write(c: &AgentClient, cid: &str, exec: &str, data: &[u8]) {
    let r = c
        .write_stdin(WriteStreamRequest {
            container_id: cid.into(),
            exec_id: exec.into(),
            data: data.to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(r.len as usize, data.len());
}

fn code(r: Result<(), ClientError>) -> Code {
    r.err().map(|e| e.code()).unwrap_or(Code::Ok)
}

/// Checks the output of `tty` in a `terminal: true` process: no NUL byte anywhere, and the
/// slave is a `/dev/pts/N` of the container's own devpts (ttyname resolves inside it).
pub fn assert_tty_output(out: &str) {
    assert!(
        !out.contains('\u{0}'),
        "NUL byte in terminal output: {out:?}"
    );
    let name = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/dev/") || l.contains("not a tty"))
        .unwrap_or_else(|| panic!("no `tty` answer in {out:?}"));
    let n = name.strip_prefix("/dev/pts/");
    assert!(
        n.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        "`tty` printed {name:?}; full output {out:?}"
    );
}

/// Which cgroup v2 controllers the agent's containers get. The guest has them all; a cgroup
/// v1 hybrid host's `unified` hierarchy has none of memory, pids, io.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupControllers {
    /// `memory`.
    pub memory: bool,
    /// `pids`.
    pub pids: bool,
}

impl CgroupControllers {
    /// The guest (cgroup v2 with every controller): the stats are asserted unconditionally.
    pub const ALL: CgroupControllers = CgroupControllers {
        memory: true,
        pids: true,
    };

    /// What children of `parent` (the directory the agent's cgroup root is created in) get:
    /// its `cgroup.subtree_control`.
    pub fn below(parent: &Path) -> CgroupControllers {
        let ctl = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
            .unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
        let has = |c: &str| ctl.split_whitespace().any(|w| w == c);
        CgroupControllers {
            memory: has("memory"),
            pids: has("pids"),
        }
    }
}

/// The lifecycle scenario: a busybox pod container (`cat`), a second container joining the
/// pod's UTS namespace, one joining its pid namespace (`sandbox_pidns`), execs with
/// stdout/stderr/exit codes, SIGKILL (137), a tty resize seen by `stty size`, a terminal
/// container init, stats, pause/resume, malformed CopyFile, removal. `image` names the baked
/// busybox rootfs.
pub async fn lifecycle(c: &AgentClient, image: &str, cgroups: CgroupControllers) {
    c.create_sandbox(CreateSandboxRequest {
        sandbox_id: "sb".into(),
        hostname: "pod".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // The pod container: prints its hostname, then echoes stdin.
    c.create_container(create_req(
        "pod",
        image,
        &["sh", "-c", "echo hello from $(hostname); exec cat"],
    ))
    .await
    .unwrap();
    let start = || StartContainerRequest {
        container_id: "pod".into(),
    };
    c.start_container(start()).await.unwrap();
    assert_eq!(
        code(c.start_container(start()).await),
        Code::FailedPrecondition,
        "double start"
    );
    let hello = read_until(c, "pod", "", false, "hello from pod\n").await;
    assert_eq!(hello, "hello from pod\n");
    write(c, "pod", "", b"ping 1\n").await;
    assert_eq!(
        read_until(c, "pod", "", false, "ping 1\n").await,
        "ping 1\n"
    );

    // Exec: stdout, stderr and the exit code.
    exec(
        c,
        "pod",
        "e1",
        &["sh", "-c", "echo out-$((6*7)); echo err-line >&2; exit 3"],
        false,
    )
    .await;
    assert_eq!(
        read_until(c, "pod", "e1", false, "out-42\n").await,
        "out-42\n"
    );
    assert_eq!(
        read_until(c, "pod", "e1", true, "err-line\n").await,
        "err-line\n"
    );
    assert_eq!(wait(c, "pod", "e1").await, 3);
    assert_eq!(wait(c, "pod", "e1").await, 3, "wait after exit");

    // SIGKILL gives 137.
    exec(c, "pod", "sleeper", &["sleep", "1000"], false).await;
    c.signal_process(SignalProcessRequest {
        container_id: "pod".into(),
        exec_id: "sleeper".into(),
        signal: 9,
    })
    .await
    .unwrap();
    assert_eq!(wait(c, "pod", "sleeper").await, 137);
    // Unknown ids.
    let err = c
        .wait_process(WaitProcessRequest {
            container_id: "pod".into(),
            exec_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A terminal: resize, then `stty size` sees it.
    exec(
        c,
        "pod",
        "tty",
        &["sh", "-c", "read x; tty; stty size"],
        true,
    )
    .await;
    c.tty_win_resize(TtyWinResizeRequest {
        container_id: "pod".into(),
        exec_id: "tty".into(),
        row: 33,
        column: 101,
    })
    .await
    .unwrap();
    write(c, "pod", "tty", b"go\n").await;
    let out = read_until(c, "pod", "tty", false, "33 101").await;
    assert!(out.contains("33 101"), "{out:?}");
    assert_tty_output(&out);
    assert_eq!(wait(c, "pod", "tty").await, 0);

    // Stats.
    let stats = c
        .stats_container(StatsContainerRequest {
            container_id: "pod".into(),
        })
        .await
        .unwrap();
    let cpu = stats
        .cgroup_stats
        .as_ref()
        .unwrap()
        .cpu_stats
        .as_ref()
        .unwrap();
    assert!(cpu.cpu_usage.as_ref().unwrap().total_usage > 0, "{stats:?}");
    let cg = stats.cgroup_stats.as_ref().unwrap();
    if cgroups.memory {
        let mem = cg.memory_stats.as_ref().expect("memory stats");
        let usage = mem.usage.as_ref().expect("memory usage").usage;
        assert!(usage > 0, "memory usage {usage}: {stats:?}");
    } else {
        assert!(cg.memory_stats.is_none(), "{stats:?}");
    }
    if cgroups.pids {
        let pids = cg.pids_stats.as_ref().expect("pids stats");
        assert!(
            pids.current >= 1,
            "pids.current {}: {stats:?}",
            pids.current
        );
    } else {
        assert!(cg.pids_stats.is_none(), "{stats:?}");
    }

    // Pause: the echo stops; resume: it arrives.
    c.pause_container(PauseContainerRequest {
        container_id: "pod".into(),
    })
    .await
    .unwrap();
    write(c, "pod", "", b"while paused\n").await;
    let early = c
        .with_long_poll_timeout(Some(Duration::from_millis(700)))
        .read_stdout(ReadStreamRequest {
            container_id: "pod".into(),
            exec_id: String::new(),
            len: 1024,
        })
        .await;
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.code() == Code::DeadlineExceeded),
        "paused container answered: {early:?}"
    );
    // Let the agent's side of that read reach its deadline too (a read still pending in the
    // agent would take the data after resume for a caller who gave up).
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.resume_container(ResumeContainerRequest {
        container_id: "pod".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        read_until(c, "pod", "", false, "while paused\n").await,
        "while paused\n"
    );

    // A second container joins the pod's UTS namespace.
    c.create_container(create_req("c2", image, &["hostname"]))
        .await
        .unwrap();
    c.start_container(StartContainerRequest {
        container_id: "c2".into(),
    })
    .await
    .unwrap();
    assert_eq!(read_until(c, "c2", "", false, "\n").await, "pod\n");
    assert_eq!(wait(c, "c2", "").await, 0);

    // sandbox_pidns on one CreateContainer: the container joins the pod container's pid
    // namespace, so its pid 1 is the pod's `cat` (in a namespace of its own it would be `sh`).
    let mut p2 = create_req("p2", image, &["sh", "-c", "cat /proc/1/comm; echo mine=$$"]);
    p2.sandbox_pidns = true;
    c.create_container(p2).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: "p2".into(),
    })
    .await
    .unwrap();
    let out = read_until(c, "p2", "", false, "\u{0}never").await;
    assert!(
        out.starts_with("cat\n"),
        "pid 1 seen by a sandbox_pidns container: {out:?}"
    );
    assert!(!out.contains("mine=1\n"), "{out:?}");
    assert_eq!(wait(c, "p2", "").await, 0);
    c.remove_container(RemoveContainerRequest {
        container_id: "p2".into(),
        timeout: 10,
    })
    .await
    .unwrap();

    // A terminal container init: its pty comes from its own devpts, sized by consoleSize.
    let mut t1 = create_req("t1", image, &["sh", "-c", "tty; stty size; exit 4"]);
    let p = t1.oci.as_mut().unwrap().process.as_mut().unwrap();
    p.terminal = true;
    p.console_size = Some(ConsoleBox {
        height: 41,
        width: 123,
    });
    c.create_container(t1).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: "t1".into(),
    })
    .await
    .unwrap();
    let out = read_until(c, "t1", "", false, "\u{0}never").await;
    assert!(out.contains("41 123"), "{out:?}");
    assert_tty_output(&out);
    assert_eq!(wait(c, "t1", "").await, 4);
    c.remove_container(RemoveContainerRequest {
        container_id: "t1".into(),
        timeout: 10,
    })
    .await
    .unwrap();

    // Malformed requests: clear errors, the agent keeps serving.
    for path in [
        "/run/../etc/shadow",
        "/etc/shadow",
        "/run/kata-containers/shared/a/../../x",
    ] {
        let err = c
            .copy_file(CopyFileRequest {
                path: path.into(),
                file_mode: 0o100_644,
                file_size: 1,
                data: b"x".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err}");
    }
    let mut shared = create_req("bad", image, &["true"]);
    shared.storages[0].driver = "virtio-fs".into();
    let err = c.create_container(shared).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("virtio-fs"), "{err}");
    let err = c
        .create_container(create_req("bad", "quay.io/org/app:1", &["true"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not available yet"), "{err}");

    // Remove: the running pod container is killed.
    for cid in ["c2", "pod"] {
        c.remove_container(RemoveContainerRequest {
            container_id: cid.into(),
            timeout: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("remove {cid}: {e}"));
    }
    let err = c
        .start_container(StartContainerRequest {
            container_id: "pod".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    c.check(CheckRequest::default()).await.unwrap();
}

/// A seccomp profile allowing everything but `mkdir`/`mkdirat`, which fail with EPERM.
pub fn deny_mkdir_profile(action: &str) -> LinuxSeccomp {
    LinuxSeccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        architectures: vec!["SCMP_ARCH_X86_64".into()],
        syscalls: vec![LinuxSyscall {
            names: vec!["mkdir".into(), "mkdirat".into(), "no_such_syscall".into()],
            action: action.into(),
            errno_ret: Some(SyscallErrnoRet::Errnoret(1)),
            args: Vec::new(),
        }],
        ..Default::default()
    }
}

/// The seccomp scenario: a container whose profile denies mkdir gets "Operation not
/// permitted" from busybox mkdir (other calls work), its exec'd processes get the same
/// filter, and an unsupported action is refused with INVALID_ARGUMENT.
pub async fn seccomp_scenario(c: &AgentClient, image: &str) {
    let script = "mkdir /tmp/denied; echo rc=$?; touch /tmp/ok && echo touched; exec sleep 1000";
    let mut req = create_req("sec", image, &["sh", "-c", script]);
    req.oci.as_mut().unwrap().linux.as_mut().unwrap().seccomp =
        Some(deny_mkdir_profile("SCMP_ACT_ERRNO"));
    c.create_container(req).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: "sec".into(),
    })
    .await
    .unwrap();
    let out = read_until(c, "sec", "", false, "touched\n").await;
    assert!(out.contains("rc=1"), "mkdir was not denied: {out:?}");
    let err = read_until(c, "sec", "", true, "Operation not permitted").await;
    assert!(err.contains("mkdir"), "{err:?}");
    exec(c, "sec", "again", &["mkdir", "/tmp/again"], false).await;
    let err = read_until(c, "sec", "again", true, "Operation not permitted").await;
    assert!(err.contains("/tmp/again"), "{err:?}");
    assert_eq!(wait(c, "sec", "again").await, 1, "exec'd mkdir must fail");
    exec(c, "sec", "ls", &["ls", "/tmp"], false).await;
    let ls = read_until(c, "sec", "ls", false, "\u{0}never").await;
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), vec!["ok"]);
    assert_eq!(wait(c, "sec", "ls").await, 0);
    c.signal_process(SignalProcessRequest {
        container_id: "sec".into(),
        exec_id: String::new(),
        signal: 9,
    })
    .await
    .unwrap();
    assert_eq!(wait(c, "sec", "").await, 137);
    c.remove_container(RemoveContainerRequest {
        container_id: "sec".into(),
        timeout: 10,
    })
    .await
    .unwrap();

    let mut bad = create_req("sec2", image, &["true"]);
    bad.oci.as_mut().unwrap().linux.as_mut().unwrap().seccomp =
        Some(deny_mkdir_profile("SCMP_ACT_NOTIFY"));
    let e = c.create_container(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
}

/// Adds user `web` (1000, primary group `webgrp` 1001, member of `logs` 2000) to a busybox
/// tree made by [`busybox_tree`].
pub fn add_web_user(tree: &Path) {
    std::fs::write(
        tree.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/tmp:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        tree.join("etc/group"),
        "root:x:0:\nwebgrp:x:1001:\nlogs:x:2000:web\n",
    )
    .unwrap();
}

/// Named users: `string_user` and the spec's `username` resolve through the container's
/// /etc/passwd and /etc/group (tree prepared by [`add_web_user`]); unknown names are refused.
pub async fn named_user_scenario(c: &AgentClient, image: &str) {
    let mut req = create_req("who", image, &["sh", "-c", "id; exec sleep 1000"]);
    req.string_user = Some(StringUser {
        uid: "web".into(),
        ..Default::default()
    });
    c.create_container(req).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: "who".into(),
    })
    .await
    .unwrap();
    let id = read_until(c, "who", "", false, "\n").await;
    assert!(id.starts_with("uid=1000(web) gid=1001(webgrp)"), "{id:?}");
    assert!(
        id.contains("2000(logs)"),
        "supplementary group from /etc/group: {id:?}"
    );
    // ExecProcess with a username in the process and a group name in string_user.
    let mut p = process(&["id"], false);
    p.user = Some(User {
        username: "web".into(),
        ..Default::default()
    });
    c.exec_process(ExecProcessRequest {
        container_id: "who".into(),
        exec_id: "id2".into(),
        process: Some(p.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let id2 = read_until(c, "who", "id2", false, "\u{0}never").await;
    assert!(id2.starts_with("uid=1000(web) gid=1001(webgrp)"), "{id2:?}");
    assert_eq!(wait(c, "who", "id2").await, 0);
    let e = c
        .exec_process(ExecProcessRequest {
            container_id: "who".into(),
            exec_id: "id3".into(),
            string_user: Some(StringUser {
                uid: "nobody".into(),
                ..Default::default()
            }),
            process: Some(p),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("nobody"), "{e}");
    c.signal_process(SignalProcessRequest {
        container_id: "who".into(),
        exec_id: String::new(),
        signal: 9,
    })
    .await
    .unwrap();
    assert_eq!(wait(c, "who", "").await, 137);
    c.remove_container(RemoveContainerRequest {
        container_id: "who".into(),
        timeout: 10,
    })
    .await
    .unwrap();
}

/// An OOM kill (needs the cgroup v2 memory controller, as in the guest): 32 MiB memory
/// limit, dd with a 64 MiB buffer. The process dies with SIGKILL (137) and GetOOMEvent (long
/// poll over memory.events) names the container.
pub async fn oom_kill(c: &AgentClient, image: &str) {
    // The long poll is already waiting before the container exists, as a runtime's is.
    let poller = c.with_long_poll_timeout(Some(Duration::from_secs(60)));
    let pending = tokio::spawn(async move { poller.oom_event().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut oom = create_req(
        "oom",
        image,
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    let linux = oom.oci.as_mut().unwrap().linux.as_mut().unwrap();
    linux.resources.get_or_insert_with(Default::default).memory = Some(LinuxMemory {
        limit: 32 << 20,
        ..Default::default()
    });
    c.create_container(oom).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: "oom".into(),
    })
    .await
    .unwrap();
    assert_eq!(wait(c, "oom", "").await, 137, "dd over the memory limit");
    let event = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("GetOOMEvent did not answer within 10 s of the OOM kill")
        .unwrap()
        .unwrap_or_else(|e| panic!("no OOM event: {e}"));
    assert_eq!(event.container_id, "oom");
    c.remove_container(RemoveContainerRequest {
        container_id: "oom".into(),
        timeout: 10,
    })
    .await
    .unwrap();
}

/// SignalProcess with an empty exec id reaches every process of the container: a sibling
/// exec'd `sleep` dies with the init (both 137). With `own_pid_ns` false the container
/// shares the agent's pid namespace, so killing the init alone would not take the sibling.
pub async fn signal_all_kills_execs(c: &AgentClient, image: &str, own_pid_ns: bool) {
    let cid = if own_pid_ns {
        "sigall"
    } else {
        "sigall-shared"
    };
    let mut req = create_req(cid, image, &["sleep", "1000"]);
    if !own_pid_ns {
        let linux = req.oci.as_mut().unwrap().linux.as_mut().unwrap();
        linux.namespaces.retain(|n| n.kind != "pid");
    }
    c.create_container(req).await.unwrap();
    c.start_container(StartContainerRequest {
        container_id: cid.into(),
    })
    .await
    .unwrap();
    exec(c, cid, "sib", &["sleep", "1000"], false).await;
    // The sibling is running (not just created) before the signal.
    exec(c, cid, "probe", &["sh", "-c", "pidof sleep | wc -w"], false).await;
    let n = read_until(c, cid, "probe", false, "\u{0}never").await;
    assert!(n.trim().parse::<u32>().unwrap_or(0) >= 2, "sleeps: {n:?}");
    assert_eq!(wait(c, cid, "probe").await, 0);
    c.signal_process(SignalProcessRequest {
        container_id: cid.into(),
        exec_id: String::new(),
        signal: 9,
    })
    .await
    .unwrap();
    let both = async { tokio::join!(wait(c, cid, ""), wait(c, cid, "sib")) };
    let (init, sib) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .unwrap_or_else(|_| panic!("{cid}: a process survived SignalProcess to all"));
    assert_eq!((init, sib), (137, 137), "{cid}: init, sibling");
    c.remove_container(RemoveContainerRequest {
        container_id: cid.into(),
        timeout: 10,
    })
    .await
    .unwrap();
}

mod leftovers;
mod pod_namespaces;
#[allow(unused_imports)]
pub use leftovers::*;
#[allow(unused_imports)]
pub use pod_namespaces::*;
