//! The pod's IPC and UTS namespaces outlive its sandbox container's init.

use agent_protocol::AgentClient;
use agent_protocol::types::{RemoveContainerRequest, StartContainerRequest};

use super::{create_req, read_until, start_collect_remove, wait};

/// Prints the container's IPC and UTS namespace and its hostname.
const SHOW_NAMESPACES: &str = "readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname";

/// The pod's first (sandbox) container gets IPC and UTS namespaces of its own and the spec's
/// hostname, and exits; a container created after that still joins those namespaces (as a
/// Kubernetes pod's containers share them) instead of getting new ones. Once the sandbox
/// container is removed, the next container is a new pod's sandbox. `outside` is the IPC
/// namespace (`readlink` form) the agent itself is in.
pub async fn pod_namespaces_outlive_the_sandbox_init(c: &AgentClient, image: &str, outside: &str) {
    c.create_container(create_req("sbx", image, &["sh", "-c", SHOW_NAMESPACES]))
        .await
        .unwrap();
    c.start_container(StartContainerRequest {
        container_id: "sbx".into(),
    })
    .await
    .unwrap();
    let first = read_until(c, "sbx", "", false, "\u{0}never").await;
    assert_eq!(wait(c, "sbx", "").await, 0, "{first:?}");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first:?}");
    assert!(lines[0].starts_with("ipc:["), "{first:?}");
    assert!(lines[1].starts_with("uts:["), "{first:?}");
    assert_ne!(
        lines[0], outside,
        "the sandbox has no IPC namespace of its own"
    );
    assert_eq!(lines[2], "pod");

    // The sandbox's init is gone (not removed): a later container joins its namespaces.
    let mut late = create_req("late", image, &["sh", "-c", SHOW_NAMESPACES]);
    late.oci.as_mut().unwrap().hostname = "other".into();
    c.create_container(late).await.unwrap();
    let (second, status) = start_collect_remove(c, "late").await;
    assert_eq!(status, 0, "{second:?}");
    assert_eq!(second, first, "a later container left the pod's namespaces");

    c.remove_container(RemoveContainerRequest {
        container_id: "sbx".into(),
        timeout: 10,
    })
    .await
    .unwrap();
    // No sandbox any more: the next container starts a pod of its own.
    c.create_container(create_req("next", image, &["sh", "-c", SHOW_NAMESPACES]))
        .await
        .unwrap();
    let (third, status) = start_collect_remove(c, "next").await;
    assert_eq!(status, 0, "{third:?}");
    assert_ne!(third.lines().next(), Some(lines[0]), "{third:?}");
}
