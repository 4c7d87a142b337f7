use super::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

#[test]
fn process_transitions() {
    // (operations, expected final status or the failing op)
    let mut p = ProcessState::new("", Stdio::default(), None);
    assert_eq!(p.status, Status::Created);
    assert!(p.pause().is_err());
    assert!(p.resume().is_err());
    p.start().unwrap();
    let e = p.start().unwrap_err();
    assert!(e.to_string().contains("is running; cannot start"), "{e}");
    p.pause().unwrap();
    assert_eq!(p.status, Status::Paused);
    assert!(p.signalable());
    p.resume().unwrap();
    assert!(p.exited(137, now()));
    assert!(!p.exited(0, now()), "first exit wins");
    assert_eq!(p.exit.unwrap().status, 137);
    assert!(!p.signalable());
    assert!(p.start().is_err());

    let mut killed_before_start = ProcessState::new("e", Stdio::default(), None);
    assert!(killed_before_start.exited(143, now()));
    assert_eq!(killed_before_start.status, Status::Stopped);
}

#[test]
fn execs_need_a_running_container() {
    let mut c = ContainerState::new("c1", "/b", ContainerRole::Standalone, Stdio::default());
    let e = c
        .add_exec("e1", Stdio::default(), types::Process::default())
        .unwrap_err();
    assert!(e.to_string().contains("cannot exec"), "{e}");
    c.init.start().unwrap();
    c.add_exec("e1", Stdio::default(), types::Process::default())
        .unwrap();
    let e = c
        .add_exec("e1", Stdio::default(), types::Process::default())
        .unwrap_err();
    assert!(matches!(e, CoreError::AlreadyExists { .. }));
    assert!(
        c.add_exec("", Stdio::default(), types::Process::default())
            .is_err()
    );
    assert!(matches!(c.process("nope"), Err(CoreError::NotFound { .. })));
    c.process_mut("e1").unwrap().start().unwrap();
    assert!(
        c.remove_exec("e1").is_err(),
        "running exec cannot be deleted"
    );
    assert!(
        c.check_deletable().is_err(),
        "running container cannot be deleted"
    );
    let hit = c.all_exited(255, now());
    assert_eq!(hit, vec![String::new(), "e1".to_string()]);
    c.remove_exec("e1").unwrap();
    c.check_deletable().unwrap();
}

#[test]
fn pod_admission_and_removal() {
    let mut pod = Pod::default();
    let workload = ContainerState::new("c1", "/b1", ContainerRole::Workload, Stdio::default());
    let e = pod.admit("p1", workload.clone()).unwrap_err();
    assert!(e.to_string().contains("sandbox \"p1\" not found"), "{e}");
    pod.admit(
        "p1",
        ContainerState::new("p1", "/b0", ContainerRole::Sandbox, Stdio::default()),
    )
    .unwrap();
    pod.admit("p1", workload.clone()).unwrap();
    assert!(matches!(
        pod.admit("p1", workload),
        Err(CoreError::AlreadyExists { .. })
    ));
    let other = ContainerState::new("c9", "/b9", ContainerRole::Workload, Stdio::default());
    let e = pod.admit("p2", other).unwrap_err();
    assert!(e.to_string().contains("serves sandbox \"p1\""), "{e}");
    let second_vm = ContainerState::new("p3", "/b3", ContainerRole::Sandbox, Stdio::default());
    assert!(pod.admit("p3", second_vm).is_err());

    pod.container_mut("c1").unwrap().init.start().unwrap();
    assert!(pod.remove("c1").is_err());
    pod.container_mut("c1").unwrap().init.exited(0, now());
    let r = pod.remove("c1").unwrap();
    assert!(!r.stop_vm);
    let r = pod.remove("p1").unwrap();
    assert!(r.stop_vm);
    assert!(pod.containers.is_empty());
    assert!(matches!(pod.remove("p1"), Err(CoreError::NotFound { .. })));
}
