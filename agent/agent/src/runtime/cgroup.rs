//! cgroup v2: one directory per container below the agent's cgroup root.
//!
//! In the guest the root is `/sys/fs/cgroup/cocoon` on the cgroup2 mount; on a cgroup v1
//! hybrid host (tests) it is a directory of the `unified` hierarchy, which has the core
//! files (`cgroup.procs`, `cgroup.freeze`, `cgroup.kill`, `cpu.stat`) but no memory, pids or
//! io controllers: statistics and limits of a missing controller are left out (creation) or
//! refused (UpdateContainer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_core::HostError;
use agent_protocol::types::{
    BlkioStats, BlkioStatsEntry, CgroupStats, CpuStats, CpuUsage, MemoryData, MemoryStats,
    PidsStats, ThrottlingData,
};
use oci_spec::runtime::LinuxResources;

/// The agent's cgroup root.
#[derive(Debug, Clone)]
pub struct CgroupRoot {
    path: PathBuf,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn limit(text: Option<String>) -> u64 {
    match text.as_deref().map(str::trim) {
        Some("max") | None => 0,
        Some(v) => v.parse().unwrap_or(0),
    }
}

impl CgroupRoot {
    /// Creates `path` if needed and enables every controller it has for its children.
    pub fn open(path: impl Into<PathBuf>) -> Result<CgroupRoot, HostError> {
        let path = path.into();
        std::fs::create_dir_all(&path)
            .map_err(|e| HostError::io(format!("create cgroup {}", path.display()), e))?;
        if let Some(ctrls) = read(&path.join("cgroup.controllers")) {
            for c in ctrls.split_whitespace() {
                if let Err(e) = std::fs::write(path.join("cgroup.subtree_control"), format!("+{c}"))
                {
                    tracing::debug!(controller = c, error = %e, "controller not enabled");
                }
            }
        }
        Ok(CgroupRoot { path })
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container's cgroup directory.
    pub fn dir(&self, cid: &str) -> PathBuf {
        self.path.join(cid)
    }

    /// Creates the container's cgroup and applies `resources` (missing controllers skipped).
    pub fn create(
        &self,
        cid: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<PathBuf, HostError> {
        let dir = self.dir(cid);
        std::fs::create_dir(&dir).map_err(|e| HostError::io("create container cgroup", e))?;
        if let Some(r) = resources
            && let Err(e) = apply(&dir, r, false)
        {
            let _ = std::fs::remove_dir(&dir);
            return Err(e);
        }
        Ok(dir)
    }

    /// Moves `pid` into the container's cgroup.
    pub fn add(&self, cid: &str, pid: i32) -> Result<(), HostError> {
        std::fs::write(self.dir(cid).join("cgroup.procs"), pid.to_string())
            .map_err(|e| HostError::io("move process into container cgroup", e))
    }

    /// Pids in the container's cgroup.
    pub fn pids(&self, cid: &str) -> Vec<i32> {
        read(&self.dir(cid).join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `sig` to every process (SIGKILL through `cgroup.kill` when available).
    pub fn signal_all(&self, cid: &str, sig: i32) -> Result<(), HostError> {
        let dir = self.dir(cid);
        if sig == libc::SIGKILL && std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return Ok(());
        }
        for pid in self.pids(cid) {
            // SAFETY: kill(2) with integer arguments.
            unsafe {
                libc::kill(pid, sig);
            }
        }
        Ok(())
    }

    /// Freezes or thaws, waiting up to 5 s for `cgroup.events` to agree.
    pub async fn set_frozen(&self, cid: &str, frozen: bool) -> Result<(), HostError> {
        let dir = self.dir(cid);
        std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            .map_err(|e| HostError::io("write cgroup.freeze", e))?;
        let want = if frozen { 1 } else { 0 };
        for _ in 0..500 {
            if read(&dir.join("cgroup.events")).and_then(|t| keyed(&t, "frozen")) == Some(want) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(HostError::Timeout(format!(
            "container {cid:?} did not {} within 5 s",
            if frozen { "freeze" } else { "thaw" }
        )))
    }

    /// Applies new limits; a missing controller is an error here.
    pub fn update(&self, cid: &str, r: &LinuxResources) -> Result<(), HostError> {
        apply(&self.dir(cid), r, true)
    }

    /// `memory.events` `oom_kill`.
    pub fn oom_kills(&self, cid: &str) -> u64 {
        read(&self.dir(cid).join("memory.events"))
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// SIGKILLs every process still in the container's cgroup (`cgroup.kill`, or each pid
    /// of `cgroup.procs` where the kernel lacks it) and waits up to 2 s for it to empty.
    /// A container without its own pid namespace can leave processes behind its exited
    /// init; the cgroup, not a pid, names them without a pid-reuse race.
    pub async fn kill_remaining(&self, cid: &str) {
        let dir = self.dir(cid);
        let procs = |dir: &std::path::Path| {
            read(&dir.join("cgroup.procs"))
                .map(|t| {
                    t.lines()
                        .filter_map(|l| l.trim().parse::<i32>().ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        if procs(&dir).is_empty() {
            return;
        }
        if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for pid in procs(&dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for _ in 0..200 {
            if procs(&dir).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(
            container = cid,
            "processes left in the cgroup after SIGKILL"
        );
    }

    /// Removes the container's cgroup (retrying while the last processes are released).
    pub async fn remove(&self, cid: &str) -> Result<(), HostError> {
        let dir = self.dir(cid);
        for _ in 0..200 {
            match std::fs::remove_dir(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        std::fs::remove_dir(&dir).map_err(|e| HostError::io("remove container cgroup", e))
    }

    /// Statistics from the v2 files present.
    pub fn stats(&self, cid: &str) -> Result<CgroupStats, HostError> {
        let dir = self.dir(cid);
        let cpu = read(&dir.join("cpu.stat"))
            .ok_or_else(|| HostError::NotFound(format!("cgroup of container {cid:?} is gone")))?;
        let usec = |k: &str| keyed(&cpu, k).unwrap_or(0);
        let mut stats = CgroupStats {
            cpu_stats: Some(CpuStats {
                cpu_usage: Some(CpuUsage {
                    total_usage: usec("usage_usec") * 1000,
                    percpu_usage: Vec::new(),
                    usage_in_kernelmode: usec("system_usec") * 1000,
                    usage_in_usermode: usec("user_usec") * 1000,
                }),
                throttling_data: Some(ThrottlingData {
                    periods: usec("nr_periods"),
                    throttled_periods: usec("nr_throttled"),
                    throttled_time: usec("throttled_usec") * 1000,
                }),
            }),
            ..Default::default()
        };
        if let Some(current) = read(&dir.join("memory.current")) {
            let stat = read(&dir.join("memory.stat")).unwrap_or_default();
            let stats_map = stat
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect();
            let events = read(&dir.join("memory.events")).unwrap_or_default();
            stats.memory_stats = Some(MemoryStats {
                cache: keyed(&stat, "file").unwrap_or(0),
                usage: Some(MemoryData {
                    usage: current.trim().parse().unwrap_or(0),
                    max_usage: limit(read(&dir.join("memory.peak"))),
                    failcnt: keyed(&events, "max").unwrap_or(0),
                    limit: limit(read(&dir.join("memory.max"))),
                }),
                swap_usage: read(&dir.join("memory.swap.current")).map(|s| MemoryData {
                    usage: s.trim().parse().unwrap_or(0),
                    limit: limit(read(&dir.join("memory.swap.max"))),
                    ..Default::default()
                }),
                kernel_usage: None,
                use_hierarchy: true,
                stats: stats_map,
            });
        }
        if let Some(cur) = read(&dir.join("pids.current")) {
            stats.pids_stats = Some(PidsStats {
                current: cur.trim().parse().unwrap_or(0),
                limit: limit(read(&dir.join("pids.max"))),
            });
        }
        if let Some(io) = read(&dir.join("io.stat")) {
            stats.blkio_stats = Some(io_stats(&io));
        }
        Ok(stats)
    }
}

fn io_stats(text: &str) -> BlkioStats {
    let mut out = BlkioStats::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((major, minor)) = words.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for kv in words {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let entry = |op: &str| BlkioStatsEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            };
            match k {
                "rbytes" => out.io_service_bytes_recursive.push(entry("Read")),
                "wbytes" => out.io_service_bytes_recursive.push(entry("Write")),
                "rios" => out.io_serviced_recursive.push(entry("Read")),
                "wios" => out.io_serviced_recursive.push(entry("Write")),
                _ => {}
            }
        }
    }
    out
}

fn write_limit(dir: &Path, file: &str, value: String, strict: bool) -> Result<(), HostError> {
    let path = dir.join(file);
    if !path.exists() {
        if strict {
            return Err(HostError::Unavailable(format!(
                "cgroup file {file} is not available in this guest (controller not enabled)"
            )));
        }
        tracing::warn!(file, "cgroup controller missing; limit not applied");
        return Ok(());
    }
    std::fs::write(&path, &value).map_err(|e| HostError::io(format!("write {file}={value}"), e))
}

fn max_or(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// Writes OCI resources as cgroup v2 files.
fn apply(dir: &Path, r: &LinuxResources, strict: bool) -> Result<(), HostError> {
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            write_limit(dir, "memory.max", max_or(l), strict)?;
            if let Some(swap) = m.swap() {
                let swap_only = if swap < 0 || l < 0 {
                    -1
                } else {
                    (swap - l).max(0)
                };
                write_limit(dir, "memory.swap.max", max_or(swap_only), strict)?;
            }
        }
        if let Some(res) = m.reservation() {
            write_limit(dir, "memory.low", max_or(res), strict)?;
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(shares) = c.shares() {
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write_limit(dir, "cpu.weight", weight.to_string(), strict)?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let quota = c.quota().filter(|q| *q > 0).map(|q| q.to_string());
            let period = c.period().unwrap_or(100_000);
            write_limit(
                dir,
                "cpu.max",
                format!("{} {period}", quota.unwrap_or_else(|| "max".into())),
                strict,
            )?;
        }
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            write_limit(dir, "cpuset.cpus", cpus.clone(), strict)?;
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            write_limit(dir, "cpuset.mems", mems.clone(), strict)?;
        }
    }
    if let Some(p) = r.pids() {
        write_limit(dir, "pids.max", max_or(p.limit()), strict)?;
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        write_limit(dir, "io.weight", format!("default {w}"), strict)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_and_keyed_parsing() {
        let s = io_stats("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(s.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.io_service_bytes_recursive[1].value, 8192);
        assert_eq!(s.io_serviced_recursive[0].op, "Read");
        assert_eq!(keyed("usage_usec 12\nuser_usec 3\n", "user_usec"), Some(3));
        assert_eq!(limit(Some("max\n".into())), 0);
        assert_eq!(limit(Some("1048576\n".into())), 1 << 20);
    }

    #[test]
    fn resources_become_v2_files_and_missing_controllers_are_named() {
        let t = tempfile::tempdir().unwrap();
        for f in ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight"] {
            std::fs::write(t.path().join(f), "").unwrap();
        }
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        }))
        .unwrap();
        apply(t.path(), &r, true).unwrap();
        let rd = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!(rd("memory.max"), "67108864");
        assert_eq!(rd("memory.swap.max"), "67108864");
        assert_eq!(rd("cpu.max"), "50000 100000");
        assert_eq!(rd("cpu.weight"), "39");
        let pids: LinuxResources =
            serde_json::from_value(serde_json::json!({"pids": {"limit": 10}})).unwrap();
        let err = apply(t.path(), &pids, true).unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
        apply(t.path(), &pids, false).unwrap();
    }
}
