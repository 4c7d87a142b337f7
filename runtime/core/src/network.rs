//! The guest's network configuration when the runtime class has a `[network]` section:
//! `eth0` up with [`GUEST_ADDRESS`]/[`GUEST_PREFIX_LEN`] and a default route via
//! [`GUEST_GATEWAY`] (QEMU's restricted user network; the guest reaches only the class's
//! forwards to host loopback).

use agent_protocol::types::{
    IPAddress, IPFamily, Interface, Route, Routes, UpdateInterfaceRequest, UpdateRoutesRequest,
};
use runtime_config::{GUEST_ADDRESS, GUEST_GATEWAY, GUEST_INTERFACE, GUEST_PREFIX_LEN};

/// `IFF_UP` (link flag; the agent brings the link up on UpdateInterface).
pub const IFF_UP: u32 = 0x1;
/// MTU of QEMU's user network device.
pub const GUEST_MTU: u64 = 1500;

/// UpdateInterface: `eth0` (found by name) with the guest address, up.
pub fn interface_request() -> UpdateInterfaceRequest {
    UpdateInterfaceRequest {
        interface: Some(Interface {
            device: GUEST_INTERFACE.to_string(),
            name: GUEST_INTERFACE.to_string(),
            ip_addresses: vec![IPAddress {
                family: IPFamily::V4,
                address: GUEST_ADDRESS.to_string(),
                mask: GUEST_PREFIX_LEN.to_string(),
            }],
            mtu: GUEST_MTU,
            raw_flags: IFF_UP,
            ..Default::default()
        }),
    }
}

/// UpdateRoutes: the default route via the user network's gateway on `eth0`.
pub fn routes_request() -> UpdateRoutesRequest {
    UpdateRoutesRequest {
        routes: Some(Routes {
            routes: vec![Route {
                dest: String::new(),
                gateway: GUEST_GATEWAY.to_string(),
                device: GUEST_INTERFACE.to_string(),
                family: IPFamily::V4,
                ..Default::default()
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_describe_qemu_user_network() {
        let i = interface_request().interface.unwrap();
        assert_eq!((i.name.as_str(), i.device.as_str()), ("eth0", "eth0"));
        assert_eq!(i.ip_addresses.len(), 1);
        assert_eq!(i.ip_addresses[0].address, "10.0.2.15");
        assert_eq!(i.ip_addresses[0].mask, "24");
        assert_eq!(i.ip_addresses[0].family, IPFamily::V4);
        assert!(i.hw_addr.is_empty(), "found by name, not by MAC");
        let r = routes_request().routes.unwrap().routes;
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].gateway.as_str(), r[0].device.as_str()),
            ("10.0.2.2", "eth0")
        );
        assert!(r[0].dest.is_empty(), "default route");
    }
}
