//! `containerd-shim-cocoon-v2` driven by Debian's real containerd (1.6) through `ctr`.
//!
//! The harness starts containerd with its own root, state and socket (CRI disabled), puts the
//! shim on containerd's PATH, imports a busybox image built offline (umoci + skopeo), and runs
//! the scenarios one after another (two TCG VMs at once would use the whole machine), booting
//! as few VMs as possible: runs with a terminal, with stdin, and killed by the guest's OOM
//! killer (the `/tasks/oom` event); one long-lived container serves exec, tty exec, ps, metrics,
//! pause/resume, a containerd restart and kill. Faults: QEMU killed under a running task, the
//! shim killed with SIGKILL. After every scenario: no QEMU, vsock backend or shim process, no
//! mount, no VM state and no shim socket left. The containerd harness is shared
//! (`harness/containerd.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "harness/containerd.rs"]
mod containerd;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cocoon_tests::{guest_dir, run_ok as run};
use containerd::{Containerd, IMAGE, RUNTIME, ctr_run, text};

/// Shell: waits (up to 10 s) for the terminal to get a size from ResizePty, then prints it.
const WAIT_FOR_SIZE: &str = r#"i=0; while [ "$(stty size)" = "0 0" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; echo "size=$(stty size)""#;

/// `ctr events`, read line by line on a thread.
struct Events {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    seen: Vec<String>,
}

impl Events {
    fn start(c: &Containerd) -> Events {
        let mut child = c
            .ctr()
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // ctr subscribes asynchronously: give it a moment before the events of interest.
        std::thread::sleep(Duration::from_millis(300));
        Events {
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits (up to `timeout`) for a line with every one of `needles`; every line read is
    /// kept in `seen`.
    fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> Option<String> {
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Position in `seen` of the first line with every one of `needles`.
    fn position(&self, needles: &[&str]) -> Option<usize> {
        self.seen
            .iter()
            .position(|l| needles.iter().all(|n| l.contains(n)))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The numeric value of `metric` in `ctr task metrics` output (`NAME  VALUE` rows).
fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(1).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no numeric {name} in:\n{metrics}"))
}

fn image_ann() -> String {
    format!("io.cocoon.image={IMAGE}")
}

/// Starts a detached long-running task `id` (`sleep 600`) and waits until it runs.
fn run_detached(c: &Containerd, id: &str) {
    let ann = image_ann();
    let out = c
        .ctr()
        .args([
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--annotation",
            &ann,
            IMAGE,
            id,
        ])
        .args(["sleep", "600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    c.wait_status(id, Some("RUNNING"));
}

/// `ctr task delete` then `ctr container rm`; returns the delete's output.
fn delete_task_and_container(c: &Containerd, id: &str) -> Output {
    let t = Instant::now();
    let out = c.ctr().args(["task", "delete", id]).output().unwrap();
    eprintln!("ctr task delete {id}: {:?}", t.elapsed());
    run(c.ctr().args(["container", "rm", id]));
    out
}

fn exec(c: &Containerd, id: &str, exec_id: &str, args: &[&str]) -> Output {
    c.ctr()
        .args(["task", "exec", "--exec-id", exec_id, id])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn shim_under_real_containerd() {
    let Some(guest) = guest_dir() else { return };
    let mut c = Containerd::start(&guest);
    let ann = image_ann();
    let test_start = Instant::now();

    // 1. A forbidden annotation is refused before any VM boots.
    let out = ctr_run(
        &c,
        "forbidden",
        &[
            "--annotation",
            "io.katacontainers.config.hypervisor.path=/tmp/evil-qemu",
            "--annotation",
            &ann,
        ],
        &["true"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "forbidden annotation accepted");
    assert!(
        err.contains("io.katacontainers.config.hypervisor.path") && err.contains("not allowed"),
        "{err}"
    );
    c.assert_clean("forbidden annotation");

    // 2. No image reference: clear error.
    let out = ctr_run(&c, "noimage", &[], &["true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("io.cocoon.image"), "{err}");
    c.assert_clean("missing image reference");

    // 3. echo hi prints hi.
    let t = Instant::now();
    let out = ctr_run(&c, "hello", &["--annotation", &ann], &["echo", "hi"]);
    eprintln!("ctr run echo hi: {:?} in {:?}", out.status, t.elapsed());
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    c.assert_clean("echo hi");

    // 4. A tty run (-t): the process has a terminal; its exit code propagates.
    let out = c.ctr_tty(&format!(
        "run --rm -t --runtime {RUNTIME} --annotation {ann} {IMAGE} tty1 sh -c '[ -t 0 ] && [ -t 1 ] && echo is-a-tty; {WAIT_FOR_SIZE}; exit 3'"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{}\n{}", text(&out), c.log());
    // `[ -t 0 ] && [ -t 1 ]`: stdin and stdout of the process are a terminal.
    assert!(stdout.contains("is-a-tty"), "{stdout:?}");
    // ctr's ResizePty reached the agent's TtyWinResize: the container's terminal has the size.
    assert!(stdout.contains("size=33 77"), "{stdout:?}");
    c.assert_clean("tty run");

    // 4b. Without a terminal: stdin reaches the process, its EOF (CloseIO) ends `cat`, and
    //     a plain exit code propagates.
    let mut child = c
        .ctr()
        .args([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--annotation",
            &ann,
            IMAGE,
            "stdin1",
        ])
        .args(["sh", "-c", "cat; echo got-eof; exit 7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\nline two\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}\n{}", text(&out), c.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line one\nline two\ngot-eof\n"
    );
    c.assert_clean("stdin run");

    // 4c. An OOM kill in the guest (memory limit 32 MiB, dd with a 64 MiB buffer): dd dies
    //     with 137 and containerd receives /tasks/oom for the task, before /tasks/delete.
    //     The task exits right after the kill, usually before the agent's 250 ms sample of
    //     memory.events: the kill is then found at RemoveContainer, and Delete lets it reach
    //     containerd before it stops the VM.
    let mut events = Events::start(&c);
    let t = Instant::now();
    let out = ctr_run(
        &c,
        "oom1",
        &["--annotation", &ann, "--memory-limit", "33554432"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?",
        ],
    );
    eprintln!("ctr run --rm oom1: {:?}", t.elapsed());
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dd=137"),
        "{}",
        text(&out)
    );
    let delete = events.wait_for(
        &["/tasks/delete", r#""container_id":"oom1""#],
        Duration::from_secs(20),
    );
    assert!(
        delete.is_some(),
        "no /tasks/delete for oom1: {:#?}",
        events.seen
    );
    let oom = events.position(&["/tasks/oom", r#""container_id":"oom1""#]);
    let delete = events.position(&["/tasks/delete", r#""container_id":"oom1""#]);
    assert!(
        oom.is_some() && oom < delete,
        "no /tasks/oom event for oom1 before its /tasks/delete; events seen: {:#?}\n{}",
        events.seen,
        c.log()
    );
    drop(events);
    c.assert_clean("OOM run");

    // 5. One long-lived container: exec, tty exec, ps, metrics, pause/resume, containerd
    //    restart, kill.
    run_detached(&c, "long");
    let mut events = Events::start(&c);
    let out = exec(&c, "long", "e1", &["echo", "from-exec"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-exec\n");
    let out = exec(&c, "long", "e2", &["sh", "-c", "echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out =
        c.ctr_tty(&format!("task exec -t --exec-id t1 long sh -c '[ -t 0 ] && [ -t 1 ] && echo is-a-tty; {WAIT_FOR_SIZE}'"));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("is-a-tty"), "{}", text(&out));
    // The exec's terminal was resized too (ResizePty with the exec id).
    assert!(stdout.contains("size=33 77"), "{}", text(&out));

    let qemu = c.our_processes("qemu-system");
    assert_eq!(qemu.len(), 1, "one QEMU for the task");
    let out = run(c.ctr().args(["task", "ps", "long"]));
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&qemu[0].to_string())),
        "ctr task ps lists the task's host pid (QEMU {}):\n{ps}",
        qemu[0]
    );
    let out = run(c.ctr().args(["task", "metrics", "long"]));
    let metrics = String::from_utf8_lossy(&out.stdout);
    // The guest's cgroup of the container: `sleep 600` uses some memory (well under the
    // VM's) and CPU, and is at least one process.
    let usage = metric(&metrics, "memory.usage_in_bytes");
    assert!(
        usage > 0 && usage < 1 << 30,
        "memory usage {usage}:\n{metrics}"
    );
    let pids = metric(&metrics, "pids.current");
    assert!((1..=16).contains(&pids), "pids.current {pids}:\n{metrics}");
    let cpu = metric(&metrics, "cpuacct.usage");
    assert!(cpu > 0, "cpuacct.usage {cpu}:\n{metrics}");

    run(c.ctr().args(["task", "pause", "long"]));
    c.wait_status("long", Some("PAUSED"));
    run(c.ctr().args(["task", "resume", "long"]));
    c.wait_status("long", Some("RUNNING"));
    // Every exec was announced (added, then started) and so were the pause and the resume.
    let long = r#""container_id":"long""#;
    let mut order = Vec::new();
    for (topic, extra) in [
        ("/tasks/exec-added", r#""exec_id":"e1""#),
        ("/tasks/exec-started", r#""exec_id":"e1""#),
        ("/tasks/exec-added", r#""exec_id":"e2""#),
        ("/tasks/exec-started", r#""exec_id":"e2""#),
        ("/tasks/exec-added", r#""exec_id":"t1""#),
        ("/tasks/exec-started", r#""exec_id":"t1""#),
        ("/tasks/paused", long),
        ("/tasks/resumed", long),
    ] {
        let needles = [topic, long, extra];
        assert!(
            events.wait_for(&needles, Duration::from_secs(10)).is_some(),
            "no {topic} {extra}; events seen: {:#?}",
            events.seen
        );
        order.push(events.position(&needles).unwrap());
    }
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "exec/pause events out of order ({order:?}): {:#?}",
        events.seen
    );
    let started_pid = events
        .seen
        .iter()
        .find(|l| l.contains("/tasks/exec-started"))
        .unwrap();
    assert!(
        started_pid.contains(&format!(r#""pid":{}"#, qemu[0])),
        "exec-started reports the task's host pid (QEMU {}): {started_pid}",
        qemu[0]
    );
    drop(events);

    let shims = c.our_processes("containerd-shim-cocoon-v2");
    assert_eq!(shims.len(), 1, "one shim");
    c.restart();
    c.wait_status("long", Some("RUNNING"));
    assert_eq!(
        c.our_processes("containerd-shim-cocoon-v2"),
        shims,
        "the same shim survived the restart"
    );
    let out = exec(&c, "long", "e3", &["echo", "after-restart"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "after-restart\n",
        "{}",
        text(&out)
    );

    run(c.ctr().args(["task", "kill", "-s", "SIGKILL", "long"]));
    c.wait_status("long", Some("STOPPED"));
    // ctr task delete reports a non-zero exit status as a warning.
    let out = delete_task_and_container(&c, "long");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exit code 137"),
        "{}",
        text(&out)
    );
    c.assert_clean("long-lived container");

    // 6. Fault: QEMU killed under a running task -> the task exits with an error status.
    run_detached(&c, "vmkill");
    let qemu = c.our_processes("qemu-system");
    assert_eq!(qemu.len(), 1);
    run(Command::new("kill").args(["-9", &qemu[0].to_string()]));
    c.wait_status("vmkill", Some("STOPPED"));
    let out = delete_task_and_container(&c, "vmkill");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exit code 255"),
        "{}",
        text(&out)
    );
    c.assert_clean("QEMU killed");

    // 7. Fault: the shim killed with SIGKILL -> containerd's `shim delete` cleans up; task
    //    delete and container rm still work.
    run_detached(&c, "shimkill");
    let shim = c.our_processes("containerd-shim-cocoon-v2");
    assert_eq!(shim.len(), 1);
    run(Command::new("kill").args(["-9", &shim[0].to_string()]));
    let start = Instant::now();
    while c.task_status("shimkill").as_deref() == Some("RUNNING") {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = c
        .ctr()
        .args(["task", "delete", "shimkill"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // containerd already ran `shim delete` and removed the task when the shim died.
    assert!(
        err.contains("exit code 137") || err.contains("not found"),
        "{}",
        text(&out)
    );
    run(c.ctr().args(["container", "rm", "shimkill"]));
    c.assert_clean("shim killed");
    eprintln!("all scenarios: {:?}", test_start.elapsed());
}
