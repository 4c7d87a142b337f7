//! Wire conversions for `types.proto` and the networking messages of `agent.proto`.

use super::wire_message;
use crate::types::*;
use crate::wire::{agent as a, types as t};

wire_message!(IPAddress => t::IPAddress { family: family, address: address, mask: mask });
wire_message!(Interface => t::Interface {
    device: device, name: name, ip_addresses: IPAddresses, mtu: mtu, hw_addr: hwAddr,
    device_path: devicePath, kind: type_, raw_flags: raw_flags,
});
wire_message!(Route => t::Route {
    dest: dest, gateway: gateway, device: device, source: source, scope: scope, family: family,
    flags: flags, mtu: mtu,
});
wire_message!(ARPNeighbor => t::ARPNeighbor {
    to_ip_address: toIPAddress, device: device, lladdr: lladdr, state: state, flags: flags,
});
wire_message!(Interfaces => a::Interfaces { interfaces: Interfaces });
wire_message!(Routes => a::Routes { routes: Routes });
wire_message!(ARPNeighbors => a::ARPNeighbors { neighbors: ARPNeighbors });
wire_message!(UpdateInterfaceRequest => a::UpdateInterfaceRequest { interface: interface });
wire_message!(UpdateRoutesRequest => a::UpdateRoutesRequest { routes: routes });
wire_message!(ListInterfacesRequest => a::ListInterfacesRequest {});
wire_message!(ListRoutesRequest => a::ListRoutesRequest {});
wire_message!(AddARPNeighborsRequest => a::AddARPNeighborsRequest { neighbors: neighbors });
wire_message!(GetIPTablesRequest => a::GetIPTablesRequest { is_ipv6: is_ipv6 });
wire_message!(GetIPTablesResponse => a::GetIPTablesResponse { data: data });
wire_message!(SetIPTablesRequest => a::SetIPTablesRequest { is_ipv6: is_ipv6, data: data });
wire_message!(SetIPTablesResponse => a::SetIPTablesResponse { data: data });
