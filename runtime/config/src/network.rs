//! `[network]`: restricted guest networking (QEMU user networking with `restrict=on`).
//!
//! The guest reaches nothing but the listed forwards, each a guest address and port inside
//! QEMU's user network that leads to a port on the host's **loopback** (`127.0.0.1`). The
//! host side is never anything else: a forward to another host address is refused, so the
//! configuration cannot open a path from the guest to the host's other networks. This is
//! node-administrator configuration only; no annotation can add or change a forward.
//!
//! ```toml
//! [network]
//! relay_busybox = "/bin/busybox"          # optional; its `nc` applet relays each connection
//! forwards = [
//!   { guest = "10.0.2.100:5000", host = "127.0.0.1:5055" },   # e.g. an image registry
//! ]
//! ```
//! With a `[network]` section the shim configures the guest's `eth0` as
//! [`GUEST_ADDRESS`]/[`GUEST_PREFIX_LEN`] with a default route via [`GUEST_GATEWAY`].

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The guest's address in QEMU's user network.
pub const GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// Prefix length of QEMU's user network (10.0.2.0/24).
pub const GUEST_PREFIX_LEN: u8 = 24;
/// QEMU's user-network gateway (the guest's default route).
pub const GUEST_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// QEMU's user-network DNS address (not forwarded: `restrict=on`).
pub const GUEST_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// Name of the guest interface the shim configures.
pub const GUEST_INTERFACE: &str = "eth0";
/// The only host address a forward may reach.
pub const HOST_LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Most forwards one class may declare.
pub const MAX_FORWARDS: usize = 16;

/// `[network]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// busybox binary whose `nc` applet relays each forwarded connection on the host.
    #[serde(default = "default_relay_busybox")]
    pub relay_busybox: PathBuf,
    /// Guest → host-loopback forwards (at least one).
    pub forwards: Vec<ForwardConfig>,
}

/// One forward: `guest` (address:port inside the user network) → `host` (127.0.0.1:port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Address and port the guest connects to, e.g. `10.0.2.100:5000`.
    pub guest: SocketAddrV4,
    /// Host endpoint it reaches; must be `127.0.0.1:<port>`.
    pub host: SocketAddrV4,
}

fn default_relay_busybox() -> PathBuf {
    PathBuf::from("/bin/busybox")
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// True for an address a forward may use inside 10.0.2.0/24: not the network, broadcast,
/// gateway, DNS or the guest's own address.
fn usable_guest_address(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[..3] == [10, 0, 2]
        && o[3] != 0
        && o[3] != 255
        && a != GUEST_GATEWAY
        && a != GUEST_DNS
        && a != GUEST_ADDRESS
}

impl NetworkSection {
    /// Checks every forward; called by [`crate::RuntimeClassConfig::validate`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.relay_busybox.is_absolute() {
            return Err(invalid(
                "network.relay_busybox",
                format!("{} must be an absolute path", self.relay_busybox.display()),
            ));
        }
        if self.forwards.is_empty() {
            return Err(invalid(
                "network.forwards",
                "a [network] section needs at least one forward (remove the section for no network)",
            ));
        }
        if self.forwards.len() > MAX_FORWARDS {
            return Err(invalid(
                "network.forwards",
                format!(
                    "at most {MAX_FORWARDS} forwards, found {}",
                    self.forwards.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for f in &self.forwards {
            if *f.host.ip() != HOST_LOOPBACK {
                return Err(invalid(
                    "network.forwards.host",
                    format!(
                        "{} is not on host loopback: a forward may only reach {HOST_LOOPBACK}:<port>",
                        f.host
                    ),
                ));
            }
            if f.host.port() == 0 || f.guest.port() == 0 {
                return Err(invalid(
                    "network.forwards",
                    format!("port 0 in forward {} -> {}", f.guest, f.host),
                ));
            }
            if !usable_guest_address(*f.guest.ip()) {
                return Err(invalid(
                    "network.forwards.guest",
                    format!(
                        "{} must be inside 10.0.2.0/24 and not the network, broadcast, gateway ({GUEST_GATEWAY}), DNS ({GUEST_DNS}) or guest ({GUEST_ADDRESS}) address",
                        f.guest.ip()
                    ),
                ));
            }
            if !seen.insert(f.guest) {
                return Err(invalid(
                    "network.forwards.guest",
                    format!("{} is forwarded twice", f.guest),
                ));
            }
        }
        Ok(())
    }
}
