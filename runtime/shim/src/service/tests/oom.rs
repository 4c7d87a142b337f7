//! OOM events around Delete: published before /tasks/delete, and the bounded drain.

use super::*;

/// Runs `c1` to its exit, has RemoveContainer find an OOM kill, deletes it; returns how
/// long the delete took.
async fn delete_after_oom_at_removal(f: &Fixture, oom: bool) -> Duration {
    let b = bundle(f, "c1", serde_json::json!({"io.cocoon.image": "x"}));
    f.service
        .create(params("c1", b, Path::new("/dev/null")))
        .await
        .unwrap();
    f.service.start("c1", "").await.unwrap();
    f.service.wait("c1", "").await.unwrap();
    if oom {
        *f.agent.oom_at_remove.lock().unwrap() = Some("c1".into());
    }
    // The watcher's long poll is outstanding (as in production) before the delete.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !f
        .agent
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(r, AgentRequest::GetOOMEvent(_)))
    {
        assert!(std::time::Instant::now() < deadline, "no OOM watcher");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = std::time::Instant::now();
    f.service.delete("c1", "").await.unwrap();
    let took = t.elapsed();
    assert_eq!(*f.vmm.stopped.lock().unwrap(), 1);
    took
}

#[tokio::test]
async fn oom_found_at_removal_is_published_before_delete_and_vm_stop() {
    // `false`: only a new GetOOMEvent sees the queued kill (Delete's own poll takes it);
    // `true`: the watcher's outstanding poll takes it (Delete waits for its publish).
    for wake_polls in [false, true] {
        // The OOM killer's SIGKILL: exit status 137.
        let f = fixture_full(137, None, true, wake_polls);
        let took = delete_after_oom_at_removal(&f, true).await;
        assert_eq!(
            topics(&f),
            [
                "/tasks/create",
                "/tasks/start",
                "/tasks/exit",
                "/tasks/oom",
                "/tasks/delete"
            ],
            "wake_polls {wake_polls}"
        );
        assert!(
            took < OOM_DRAIN,
            "wake_polls {wake_polls}: a delivered event ends the wait at once ({took:?})"
        );
    }
}

/// An init that exited by SIGKILL without an OOM: Delete waits at most the drain bound.
#[tokio::test]
async fn delete_without_an_oom_waits_at_most_the_drain_bound() {
    let f = fixture_full(137, None, true, true);
    let took = delete_after_oom_at_removal(&f, false).await;
    assert!(
        took < OOM_DRAIN + Duration::from_millis(400),
        "delete took {took:?}"
    );
    eprintln!("delete without an OOM: {took:?}");
    assert_eq!(
        topics(&f),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

/// An init that exited normally cannot have been OOM-killed: Delete does not wait.
#[tokio::test]
async fn delete_after_a_normal_exit_does_not_wait_for_oom_events() {
    let f = fixture_full(0, None, true, true);
    let took = delete_after_oom_at_removal(&f, false).await;
    assert!(took < OOM_DRAIN, "delete took {took:?}");
    assert!(
        f.agent
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, AgentRequest::GetOOMEvent(_)))
            .nth(1)
            .is_none(),
        "Delete polled GetOOMEvent after a normal exit"
    );
}

#[tokio::test]
async fn workload_delete_in_a_pod_does_not_wait_for_oom_events() {
    let f = fixture_full(0, None, true, true);
    let sb = bundle(
        &f,
        "pod1",
        serde_json::json!({"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "pod1"}),
    );
    f.service
        .create(params("pod1", sb, Path::new("/dev/null")))
        .await
        .unwrap();
    let wb = bundle(
        &f,
        "w1",
        serde_json::json!({"io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.image-name": "docker.io/x/y:1"}),
    );
    f.service
        .create(params("w1", wb, Path::new("/dev/null")))
        .await
        .unwrap();
    f.service.kill("w1", "", 9).await.unwrap();
    let t = std::time::Instant::now();
    f.service.delete("w1", "").await.unwrap();
    assert!(t.elapsed() < OOM_DRAIN, "{:?}", t.elapsed());
    let polls = f
        .agent
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, AgentRequest::GetOOMEvent(_)))
        .count();
    assert_eq!(polls, 1, "only the watcher polls");
}
