//! Guest networking: interfaces, routes, ARP neighbours, iptables.

use serde::{Deserialize, Serialize};

use super::proto_enum;

proto_enum! {
    /// `types.IPFamily`.
    IPFamily {
        /// 0: IPv4.
        V4 = 0,
        /// 1: IPv6.
        V6 = 1,
    }
}

/// `types.IPAddress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IPAddress {
    /// Address family (field 1).
    pub family: IPFamily,
    /// Address text (field 2).
    pub address: String,
    /// Prefix length as text (field 3).
    pub mask: String,
}

/// `types.Interface`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// Device name in the guest (field 1).
    pub device: String,
    /// Interface name (field 2).
    pub name: String,
    /// Addresses (field 3).
    #[serde(rename = "IPAddresses")]
    pub ip_addresses: Vec<IPAddress>,
    /// MTU (field 4).
    pub mtu: u64,
    /// MAC address (field 5).
    #[serde(rename = "hwAddr")]
    pub hw_addr: String,
    /// PCI/CCW path of the device (field 6).
    #[serde(rename = "devicePath")]
    pub device_path: String,
    /// Link kind, e.g. `veth`, `tap` (field 7; JSON key `type_` as in Kata).
    #[serde(rename = "type_")]
    pub kind: String,
    /// Raw link flags (field 8).
    pub raw_flags: u32,
}

/// `types.Route`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Route {
    /// Destination prefix (field 1).
    pub dest: String,
    /// Gateway (field 2).
    pub gateway: String,
    /// Device (field 3).
    pub device: String,
    /// Preferred source (field 4).
    pub source: String,
    /// Scope (field 5).
    pub scope: u32,
    /// Family (field 6).
    pub family: IPFamily,
    /// Flags (field 7).
    pub flags: u32,
    /// MTU (field 8).
    pub mtu: u32,
}

/// `types.ARPNeighbor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ARPNeighbor {
    /// Neighbour IP (field 1).
    #[serde(rename = "toIPAddress")]
    pub to_ip_address: Option<IPAddress>,
    /// Device (field 2).
    pub device: String,
    /// Link-layer address (field 3).
    pub lladdr: String,
    /// NUD state (field 4).
    pub state: i32,
    /// Flags (field 5).
    pub flags: i32,
}

/// `Interfaces`: ListInterfaces response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interfaces {
    /// Interfaces (field 1).
    #[serde(rename = "Interfaces")]
    pub interfaces: Vec<Interface>,
}

/// `Routes`: UpdateRoutes argument and ListRoutes/UpdateRoutes response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Routes {
    /// Routes (field 1).
    #[serde(rename = "Routes")]
    pub routes: Vec<Route>,
}

/// `ARPNeighbors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ARPNeighbors {
    /// Neighbours (field 1).
    #[serde(rename = "ARPNeighbors")]
    pub neighbors: Vec<ARPNeighbor>,
}

/// `UpdateInterfaceRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateInterfaceRequest {
    /// Interface to configure (field 1).
    pub interface: Option<Interface>,
}

/// `UpdateRoutesRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateRoutesRequest {
    /// Full route table to install (field 1).
    pub routes: Option<Routes>,
}

/// `ListInterfacesRequest` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListInterfacesRequest {}

/// `ListRoutesRequest` (no fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRoutesRequest {}

/// `AddARPNeighborsRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddARPNeighborsRequest {
    /// Neighbours to add (field 1).
    pub neighbors: Option<ARPNeighbors>,
}

/// `GetIPTablesRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetIPTablesRequest {
    /// ip6tables instead of iptables (field 1).
    pub is_ipv6: bool,
}

/// `GetIPTablesResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetIPTablesResponse {
    /// iptables-save output (field 1).
    pub data: Vec<u8>,
}

/// `SetIPTablesRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetIPTablesRequest {
    /// ip6tables instead of iptables (field 1).
    pub is_ipv6: bool,
    /// iptables-restore input (field 2).
    pub data: Vec<u8>,
}

/// `SetIPTablesResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetIPTablesResponse {
    /// iptables-restore output (field 1).
    pub data: Vec<u8>,
}
