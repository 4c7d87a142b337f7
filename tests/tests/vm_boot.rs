//! The foundation's end-to-end path: boot a coco-dev guest under QEMU (TCG here), reach the
//! agent over hybrid vsock, call Health and GetGuestDetails, shut down, leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agent_protocol::types::{CheckRequest, GuestDetailsRequest, ServingStatus};
use cocoon_tests::{coco_dev_config, guest_dir, process_alive, processes_mentioning};
use runtime_qemu::sandbox::{BootOptions, Sandbox, SandboxError};

fn opts(id: &str) -> BootOptions {
    BootOptions {
        id: id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_answers_health_and_details_then_leaves_nothing() {
    let Some(guest) = guest_dir() else { return };
    let state = tempfile::tempdir().unwrap();
    let cfg = coco_dev_config(&guest, state.path());
    let kvm = runtime_qemu::host::kvm_usable();
    let sb = Sandbox::boot(&cfg, &opts("e2e-health"), kvm).await.unwrap();
    let agent = sb.agent().with_timeout(Some(Duration::from_secs(10)));
    let health = agent.check(CheckRequest::default()).await.unwrap();
    assert_eq!(
        health.status,
        ServingStatus::Serving,
        "Health.Check must be SERVING"
    );
    let version = agent.version(CheckRequest::default()).await.unwrap();
    assert!(!version.agent_version.is_empty(), "{version:?}");
    let details = agent
        .guest_details(GuestDetailsRequest::default())
        .await
        .unwrap();
    let ad = details.agent_details.expect("agent_details");
    assert_eq!(ad.version, version.agent_version);
    assert!(
        sb.console().contains("cocoon-agent: started"),
        "console:\n{}",
        sb.console()
    );
    let timings = sb.timings();
    assert!(timings.guest_kernel.is_some());

    let (qemu, backend, dir) = (sb.qemu_pid(), sb.backend_pid(), sb.dir().to_path_buf());
    let report = sb.shutdown().await.unwrap();
    assert_eq!(
        report.path,
        runtime_qemu::sandbox::ShutdownPath::Agent,
        "{report:?}"
    );
    assert!(!process_alive(qemu), "QEMU still running");
    if let Some(b) = backend {
        assert!(!process_alive(b), "vhost-device-vsock still running");
    }
    assert!(!dir.exists(), "state dir left behind");
    assert!(processes_mentioning(&state.path().display().to_string()).is_empty());
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "state root not empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_qemu_while_connecting_gives_a_clear_error_and_no_leak() {
    let Some(guest) = guest_dir() else { return };
    let state = tempfile::tempdir().unwrap();
    let cfg = coco_dev_config(&guest, state.path());
    let dir = state.path().join("e2e-kill");
    let killer = tokio::spawn({
        let pidfile = dir.join("qemu.pid");
        async move {
            for _ in 0..2000 {
                if let Ok(s) = std::fs::read_to_string(&pidfile)
                    && let Ok(pid) = s.trim().parse::<i32>()
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                    return pid;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("QEMU pidfile never appeared");
        }
    });
    let err = Sandbox::boot(&cfg, &opts("e2e-kill"), false)
        .await
        .err()
        .expect("boot must fail");
    let pid = killer.await.unwrap();
    let msg = err.to_string();
    assert!(matches!(err, SandboxError::Exited { .. }), "{msg}");
    assert!(msg.contains("qemu") && msg.contains("signal 9"), "{msg}");
    assert!(!process_alive(pid as u32));
    assert!(!dir.exists(), "state dir left behind");
    assert!(
        processes_mentioning(&state.path().display().to_string()).is_empty(),
        "backend leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_kernel_and_corrupted_initrd_are_reported() {
    let Some(guest) = guest_dir() else { return };
    let state = tempfile::tempdir().unwrap();

    let mut cfg = coco_dev_config(&guest, state.path());
    cfg.hypervisor.qemu.kernel = state.path().join("no-such-vmlinux");
    let err = Sandbox::boot(&cfg, &opts("e2e-nokernel"), false)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            SandboxError::MissingFile {
                what: "guest kernel",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-vmlinux"));

    // An initrd with garbage in the middle: the kernel cannot unpack it, panics, and
    // QEMU (-no-reboot, panic=-1) exits; the error carries the console tail.
    let bad = state.path().join("bad-initrd.img");
    let mut bytes = std::fs::read(cocoon_tests::guest_initrd(&guest)).unwrap();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 4096] {
        *b ^= 0x5a;
    }
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&bad, &bytes).unwrap();
    let mut cfg = coco_dev_config(&guest, state.path());
    cfg.hypervisor.qemu.initrd = bad.clone();
    cfg.agent.dial_timeout_secs = 60;
    let err = Sandbox::boot(&cfg, &opts("e2e-badinitrd"), false)
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, SandboxError::Exited { .. }), "{msg}");
    assert!(
        msg.to_lowercase().contains("panic") || msg.contains("initramfs") || msg.contains("init"),
        "{msg}"
    );
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "leftovers in state dir"
    );
}
