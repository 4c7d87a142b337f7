//! A supervised child (QEMU, the vsock backend) dies with its supervisor process, even when
//! the supervisor is killed with SIGKILL (the shim dying during boot must not leak QEMU):
//! `process::spawn` sets PR_SET_PDEATHSIG. The supervisor here is this test binary re-run
//! as a helper that spawns `sleep` through `process::spawn` from a short-lived thread (as a
//! tokio blocking thread would) and then waits to be killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "COCOON_PDEATHSIG_HELPER";
const PID_PREFIX: &str = "CHILD_PID=";

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X") | None
        ),
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            eprintln!("{what}: not within {timeout:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs the helper (`mode`: "supervised" or "plain") and returns it with its child's pid.
fn start_helper(mode: &str) -> (Child, u32) {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_parent",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(helper.stdout.take().unwrap());
    let pid = out
        .lines()
        .map_while(Result::ok)
        // libtest's "test helper_parent ... " may precede it on the line.
        .find_map(|l| {
            l.split_once(PID_PREFIX)
                .map(|(_, p)| p.trim().parse().unwrap())
        })
        .expect("the helper printed its child's pid");
    (helper, pid)
}

/// Not a test of its own: the helper parent when re-run with [`HELPER_ENV`] set.
#[test]
fn helper_parent() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut cmd = Command::new("sleep");
    cmd.arg("600").stdout(Stdio::null()).stderr(Stdio::null());
    let pid = std::thread::spawn(move || match mode.as_str() {
        "supervised" => {
            let child = runtime_qemu::process::spawn("sleeper", cmd).unwrap();
            let pid = child.pid();
            // Keep the handle (dropping it would kill the child on purpose).
            std::mem::forget(child);
            pid
        }
        _ => cmd.spawn().unwrap().id(),
    })
    .join()
    .unwrap();
    println!("{PID_PREFIX}{pid}");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn kill9(helper: &mut Child) {
    helper.kill().unwrap();
    helper.wait().unwrap();
}

#[test]
fn supervised_child_dies_when_its_parent_is_sigkilled() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let (mut helper, pid) = start_helper("supervised");
    // The thread that called spawn has exited: the child lives on (its supervisor thread
    // does), as long as the parent process does.
    std::thread::sleep(Duration::from_millis(500));
    if !running(pid) {
        kill9(&mut helper);
        panic!("the child died with the thread that spawned it");
    }
    kill9(&mut helper);
    let died = wait_until("supervised child exit", Duration::from_secs(5), || {
        !running(pid)
    });
    if !died {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(died, "supervised child {pid} outlived its SIGKILLed parent");
}

/// Control: without the supervisor an orphan survives, so the test above can tell.
#[test]
fn plain_child_outlives_its_parent() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let (mut helper, pid) = start_helper("plain");
    kill9(&mut helper);
    std::thread::sleep(Duration::from_millis(500));
    let alive = running(pid);
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(alive, "an unsupervised orphan {pid} died too");
}
