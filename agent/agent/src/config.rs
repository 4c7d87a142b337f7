//! Agent configuration from the kernel command line (`agent.*` keys, as Kata's agent reads
//! them), or — outside a VM — from the same `agent.key=value` words given as program
//! arguments, or from `COCOON_AGENT_SERVER_ADDR`.

/// Default listen address: any CID, port 1024 (Kata's `DEFAULT_AGENT_VSOCK_PORT`).
pub const DEFAULT_SERVER_ADDR: &str = "vsock://-1:1024";

/// Default cgroup directory for containers.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup/cocoon";

/// Log level names accepted by `agent.log=`.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Parsed agent settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// ttRPC listen address (`vsock://CID:PORT` or `unix:///path`).
    pub server_addr: String,
    /// Log level.
    pub log_level: String,
    /// Whether to run the PID 1 duties (mounts, modules, poweroff). Off outside a VM.
    pub init_duties: bool,
    /// cgroup v2 directory the agent puts containers under (`agent.cgroup_root=`).
    pub cgroup_root: String,
    /// Directory of baked rootfs trees (`agent.baked_rootfs=`).
    pub baked_rootfs: String,
    /// In-guest image pull (`agent.guest_pull`, `agent.aa_kbc_params`, `agent.tee_class`,
    /// `agent.insecure_registries`, `agent.image_policy`, `agent.image_registry_auth`,
    /// `agent.image_max_unpacked_bytes`).
    pub guest_pull: crate::pulled_images::GuestPullConfig,
    /// Unknown `agent.*` keys, kept for diagnostics.
    pub unknown: Vec<String>,
}

/// A command-line word the agent cannot accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `agent.server_addr` is not a supported address.
    #[error("agent.server_addr={0:?}: expected vsock://CID:PORT or unix:///absolute/path")]
    ServerAddr(String),
    /// A path setting is not an absolute path.
    #[error("agent.{0}={1:?}: expected an absolute path")]
    Path(&'static str, String),
    /// `agent.log` is not a level name.
    #[error("agent.log={0:?}: expected one of error, warn, info, debug, trace")]
    LogLevel(String),
    /// An in-guest image pull key has a bad value.
    #[error("agent.{0}={1:?}: {2}")]
    GuestPull(String, String, String),
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server_addr: DEFAULT_SERVER_ADDR.to_string(),
            log_level: "info".to_string(),
            init_duties: false,
            cgroup_root: DEFAULT_CGROUP_ROOT.to_string(),
            baked_rootfs: crate::images::DEFAULT_BAKED_ROOTFS.to_string(),
            guest_pull: Default::default(),
            unknown: Vec::new(),
        }
    }
}

/// Validates a listen address.
pub fn validate_server_addr(addr: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::ServerAddr(addr.to_string());
    if let Some(rest) = addr.strip_prefix("vsock://") {
        let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
        let cid_ok = cid == "-1" || cid.parse::<u32>().is_ok();
        let port_ok = port.parse::<u32>().is_ok_and(|p| p > 0);
        return if cid_ok && port_ok {
            Ok(())
        } else {
            Err(bad())
        };
    }
    if let Some(path) = addr.strip_prefix("unix://") {
        return if path.starts_with('/') && path.len() > 1 {
            Ok(())
        } else {
            Err(bad())
        };
    }
    Err(bad())
}

/// Splits a kernel command line into words, honouring double quotes as the kernel does.
pub fn split_cmdline(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Builds the configuration from command-line words (kernel or program arguments).
/// Later words override earlier ones, like the kernel's own parameters.
pub fn parse_words<I, S>(words: I) -> Result<AgentConfig, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut cfg = AgentConfig::default();
    for w in words {
        let w = w.as_ref();
        let Some(kv) = w.strip_prefix("agent.") else {
            continue;
        };
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        match key {
            "server_addr" => {
                validate_server_addr(value)?;
                cfg.server_addr = value.to_string();
            }
            "log" => {
                if !LOG_LEVELS.contains(&value) {
                    return Err(ConfigError::LogLevel(value.to_string()));
                }
                cfg.log_level = value.to_string();
            }
            "cgroup_root" | "baked_rootfs" => {
                let name = if key == "cgroup_root" {
                    "cgroup_root"
                } else {
                    "baked_rootfs"
                };
                if !value.starts_with('/') || value.split('/').any(|c| c == "..") {
                    return Err(ConfigError::Path(name, value.to_string()));
                }
                if key == "cgroup_root" {
                    cfg.cgroup_root = value.to_string();
                } else {
                    cfg.baked_rootfs = value.to_string();
                }
            }
            k if crate::pulled_images::GuestPullConfig::KEYS.contains(&k) => cfg
                .guest_pull
                .set(k, value)
                .map_err(|e| ConfigError::GuestPull(k.to_string(), value.to_string(), e))?,
            _ => cfg.unknown.push(w.to_string()),
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_agent_keys() {
        let cfg = parse_words(split_cmdline("console=ttyS0 quiet panic=-1")).unwrap();
        assert_eq!(cfg, AgentConfig::default());
    }

    #[test]
    fn reads_kata_keys() {
        let cfg = parse_words(split_cmdline(
            "console=ttyS0 agent.server_addr=vsock://-1:2048 agent.log=debug agent.debug_console",
        ))
        .unwrap();
        assert_eq!(cfg.server_addr, "vsock://-1:2048");
        assert_eq!(cfg.log_level, "debug");
        assert_eq!(cfg.unknown, vec!["agent.debug_console".to_string()]);
    }

    #[test]
    fn later_word_wins_and_quotes_group() {
        let w = split_cmdline(
            r#"agent.server_addr=vsock://-1:1 x="a b" agent.server_addr=unix:///run/a.sock"#,
        );
        assert_eq!(w[1], "x=a b");
        assert_eq!(parse_words(w).unwrap().server_addr, "unix:///run/a.sock");
    }

    #[test]
    fn rejects_bad_values_naming_them() {
        for bad in [
            "agent.server_addr=tcp://1.2.3.4:1",
            "agent.server_addr=vsock://x:1",
            "agent.server_addr=vsock://-1:0",
            "agent.server_addr=unix://relative",
        ] {
            let err = parse_words([bad]).unwrap_err();
            assert!(matches!(err, ConfigError::ServerAddr(_)), "{bad}");
            assert!(err.to_string().contains("agent.server_addr"));
        }
        assert_eq!(
            parse_words(["agent.cgroup_root=rel"]).unwrap_err(),
            ConfigError::Path("cgroup_root", "rel".into())
        );
        let cfg = parse_words([
            "agent.cgroup_root=/sys/fs/cgroup/x",
            "agent.baked_rootfs=/b",
        ])
        .unwrap();
        assert_eq!(
            (cfg.cgroup_root.as_str(), cfg.baked_rootfs.as_str()),
            ("/sys/fs/cgroup/x", "/b")
        );
        assert_eq!(
            parse_words(["agent.log=loud"]).unwrap_err(),
            ConfigError::LogLevel("loud".into())
        );
    }

    #[test]
    fn image_pull_keys_are_guest_pull_settings_not_unknown() {
        let cfg = parse_words([
            "agent.image_policy=kbs:///default/policy/p",
            "agent.image_registry_auth=kbs:///default/auth/a",
            "agent.image_max_unpacked_bytes=1G",
        ])
        .unwrap();
        assert!(cfg.unknown.is_empty(), "{:?}", cfg.unknown);
        assert_eq!(cfg.guest_pull.max_unpacked_bytes, Some(1 << 30));
        assert!(
            cfg.guest_pull.image_policy.is_some() && cfg.guest_pull.image_registry_auth.is_some()
        );
        assert!(matches!(
            parse_words(["agent.image_policy=file:///etc/policy.json"]),
            Err(ConfigError::GuestPull(k, v, _)) if k == "image_policy" && v == "file:///etc/policy.json"
        ));
    }
}
