//! Agent addresses: `unix:///path`, `unix://@abstract`, `vsock://CID:PORT` (CID `-1` = any, for
//! listening).

use std::fmt;

/// `VMADDR_CID_ANY`.
pub const VSOCK_CID_ANY: u32 = u32::MAX;

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const UNIX_PATH_MAX: usize = 107;

/// A parsed agent address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAddress {
    /// A Unix socket path (a leading `@` selects the abstract namespace).
    Unix(String),
    /// A vsock address.
    Vsock {
        /// Context id; [`VSOCK_CID_ANY`] for `-1`.
        cid: u32,
        /// Port.
        port: u32,
    },
}

impl AgentAddress {
    /// Parses and validates an address. The error names what is wrong.
    pub fn parse(address: &str) -> Result<AgentAddress, String> {
        if let Some(path) = address.strip_prefix("unix://") {
            if path.is_empty() || path == "@" {
                return Err("the unix socket path is empty".to_owned());
            }
            if path.contains('\0') {
                return Err("the unix socket path contains a NUL byte".to_owned());
            }
            if path.len() > UNIX_PATH_MAX {
                return Err(format!(
                    "the unix socket path is {} bytes long, the limit is {UNIX_PATH_MAX}",
                    path.len()
                ));
            }
            return Ok(AgentAddress::Unix(path.to_owned()));
        }
        if let Some(rest) = address.strip_prefix("vsock://") {
            let Some((cid, port)) = rest.split_once(':') else {
                return Err("expected vsock://CID:PORT".to_owned());
            };
            let cid = if cid == "-1" {
                VSOCK_CID_ANY
            } else {
                cid.parse::<u32>()
                    .map_err(|_| format!("vsock CID {cid:?} is not a number (use -1 for any)"))?
            };
            let port = port
                .parse::<u32>()
                .map_err(|_| format!("vsock port {port:?} is not a number"))?;
            return Ok(AgentAddress::Vsock { cid, port });
        }
        match address.split_once("://") {
            Some((scheme, _)) => Err(format!(
                "unsupported scheme {scheme:?} (expected unix:// or vsock://)"
            )),
            None => Err("missing scheme (expected unix:///path or vsock://CID:PORT)".to_owned()),
        }
    }
}

impl fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentAddress::Unix(path) => write!(f, "unix://{path}"),
            AgentAddress::Vsock { cid, port } if *cid == VSOCK_CID_ANY => {
                write!(f, "vsock://-1:{port}")
            }
            AgentAddress::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_addresses() {
        assert_eq!(
            AgentAddress::parse("vsock://-1:1024"),
            Ok(AgentAddress::Vsock {
                cid: VSOCK_CID_ANY,
                port: 1024
            })
        );
        assert_eq!(
            AgentAddress::parse("vsock://3:1024"),
            Ok(AgentAddress::Vsock { cid: 3, port: 1024 })
        );
        assert_eq!(
            AgentAddress::parse("unix:///run/agent.sock"),
            Ok(AgentAddress::Unix("/run/agent.sock".into()))
        );
        assert_eq!(
            AgentAddress::parse("vsock://-1:1024").map(|a| a.to_string()),
            Ok("vsock://-1:1024".to_owned())
        );
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        let cases = [
            ("tcp://127.0.0.1:80", "unsupported scheme"),
            ("/run/agent.sock", "missing scheme"),
            ("unix://", "empty"),
            ("vsock://1024", "CID:PORT"),
            ("vsock://x:1024", "CID"),
            ("vsock://3:port", "port"),
            ("vsock://3:99999999999", "port"),
        ];
        for (address, needle) in cases {
            let err = AgentAddress::parse(address).expect_err(address);
            assert!(err.contains(needle), "{address}: {err}");
        }
        let long = format!("unix:///{}", "a".repeat(200));
        assert!(AgentAddress::parse(&long).is_err());
    }
}
