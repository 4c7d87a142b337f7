//! Leftover checks from inside the sandbox (a probe container sharing the agent's pid
//! namespace) and the scenarios that use them.

use super::*;

/// What a probe container sharing the agent's pid namespace sees of the agent's state.
#[derive(Debug, Default)]
pub struct AgentLeftovers {
    /// Children of the agent other than the probe (pid and comm).
    pub processes: Vec<String>,
    /// Container cgroups below the agent's cgroup root other than the probe's.
    pub cgroups: Vec<String>,
    /// Mounts below /run/kata-containers other than the probe's rootfs.
    pub mounts: Vec<String>,
}

/// Looks at the agent (pid 1 of its pid namespace, as in the guest and in the host test)
/// from a container sharing its pid namespace, with the cgroup2 hierarchy mounted:
/// children of pid 1, cgroup directories below `cgroup_root_rel` (relative to the cgroup2
/// mount) and `/run/kata-containers` mounts in pid 1's mountinfo. The probe's own process,
/// cgroup and rootfs are left out.
pub async fn agent_leftovers(
    c: &AgentClient,
    image: &str,
    cgroup_root_rel: &str,
) -> AgentLeftovers {
    const PROBE: &str = "leftover-probe";
    let script = format!(
        "echo self $$; \
         for p in $(cat /proc/1/task/*/children); do echo child $p $(cat /proc/$p/comm); done; \
         for d in /sys/fs/cgroup/{cgroup_root_rel}/*/; do [ -d \"$d\" ] && echo cgroup $(basename $d); done; \
         grep -o ' /run/kata-containers/[^ ]*' /proc/1/mountinfo | sed 's/^ /mount /'; \
         echo done"
    );
    let mut req = create_req(PROBE, image, &["sh", "-c", &script]);
    let spec = req.oci.as_mut().unwrap();
    spec.mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup2",
        "cgroup2",
        &["nosuid", "noexec", "nodev"],
    ));
    let linux = spec.linux.as_mut().unwrap();
    linux.namespaces.retain(|n| n.kind != "pid");
    c.create_container(req).await.unwrap();
    let (out, status) = start_collect_remove(c, PROBE).await;
    assert_eq!(status, 0, "{out}");
    assert!(out.ends_with("done\n"), "{out}");
    let me = out
        .lines()
        .find_map(|l| l.strip_prefix("self "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    let mut left = AgentLeftovers::default();
    let mut saw_self = false;
    let mut saw_own_cgroup = false;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("child ") {
            if rest.split_whitespace().next() == Some(me.as_str()) {
                saw_self = true;
            } else {
                left.processes.push(rest.to_string());
            }
        } else if let Some(cg) = line.strip_prefix("cgroup ") {
            if cg == PROBE {
                saw_own_cgroup = true;
            } else {
                left.cgroups.push(cg.to_string());
            }
        } else if let Some(m) = line.strip_prefix("mount ")
            && !m.starts_with(&format!("/run/kata-containers/{PROBE}/"))
        {
            left.mounts.push(m.to_string());
        }
    }
    // The probe must see itself, or it looked at the wrong place.
    assert!(saw_self, "probe is not a child of pid 1: {out}");
    assert!(
        saw_own_cgroup,
        "probe's cgroup not under {cgroup_root_rel}: {out}"
    );
    left
}

/// [`agent_leftovers`] finds nothing (waiting a little for exiting processes).
pub async fn assert_no_agent_leftovers(c: &AgentClient, image: &str, cgroup_root_rel: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = agent_leftovers(c, image, cgroup_root_rel).await;
        if left.processes.is_empty() && left.cgroups.is_empty() && left.mounts.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers in the agent: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A container without a pid namespace of its own whose init exits leaving a background
/// process: RemoveContainer kills what is left in its cgroup and succeeds (it used to fail
/// with EBUSY on the cgroup, for ever, leaving the process, cgroup and rootfs mount).
pub async fn orphan_left_by_init_is_killed_on_remove(c: &AgentClient, image: &str) {
    let cid = "orphan";
    let mut req = create_req(
        cid,
        image,
        &[
            "sh",
            "-c",
            "sleep 1000 </dev/null >/dev/null 2>&1 & echo started; exit 0",
        ],
    );
    let linux = req.oci.as_mut().unwrap().linux.as_mut().unwrap();
    linux.namespaces.retain(|n| n.kind != "pid");
    c.create_container(req).await.unwrap();
    let (out, status) = start_collect_remove(c, cid).await;
    assert_eq!((out.trim(), status), ("started", 0));
}
