//! Pure translations between the agent API's network types (`Interface`, `IPAddress`,
//! `Route`, `ARPNeighbor`) and rtnetlink messages. No system calls here, so every rule is
//! unit-tested without privileges.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use agent_core::HostError;
use agent_protocol::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};

/// `NUD_PERMANENT`: the state used for a neighbour whose request leaves the state at 0.
const NUD_PERMANENT: u16 = 0x80;

fn invalid(msg: String) -> HostError {
    HostError::InvalidArgument(msg)
}

/// Parses `aa:bb:cc:dd:ee:ff` (any number of hex octets separated by `:`).
pub fn parse_mac(text: &str) -> Result<Vec<u8>, HostError> {
    let bad = || {
        invalid(format!(
            "hardware address {text:?} is not colon-separated hex octets"
        ))
    };
    if text.is_empty() {
        return Err(bad());
    }
    text.split(':')
        .map(|octet| {
            if octet.is_empty() || octet.len() > 2 {
                return Err(bad());
            }
            u8::from_str_radix(octet, 16).map_err(|_| bad())
        })
        .collect()
}

/// Formats a hardware address as lower-case `aa:bb:...`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_ip(text: &str, what: &str) -> Result<IpAddr, HostError> {
    text.parse()
        .map_err(|_| invalid(format!("{what} {text:?} is not an IP address")))
}

fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// Parses a prefix length given as a number (`24`) or as an IPv4 dotted mask
/// (`255.255.255.0`).
fn parse_mask(mask: &str, ip: &IpAddr) -> Result<u8, HostError> {
    let bad = || invalid(format!("mask {mask:?} of {ip} is not a prefix length"));
    let len = if mask.contains('.') {
        let m: Ipv4Addr = mask.parse().map_err(|_| bad())?;
        let bits = u32::from(m);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(bad());
        }
        u8::try_from(bits.leading_ones()).map_err(|_| bad())?
    } else {
        mask.parse::<u8>().map_err(|_| bad())?
    };
    if len > max_prefix(ip) {
        return Err(bad());
    }
    Ok(len)
}

/// An address with its prefix length, from `IPAddress` (`address` may carry `/len` when
/// `mask` is empty; no mask at all means a host address).
pub fn ip_with_prefix(a: &IPAddress) -> Result<(IpAddr, u8), HostError> {
    let (addr, inline_mask) = match a.address.split_once('/') {
        Some((addr, m)) => (addr, Some(m)),
        None => (a.address.as_str(), None),
    };
    let ip = parse_ip(addr, "address")?;
    let want_v6 = a.family == IPFamily::V6;
    if ip.is_ipv6() != want_v6 {
        return Err(invalid(format!(
            "address {ip} does not match its family {:?}",
            a.family
        )));
    }
    let len = match (a.mask.as_str(), inline_mask) {
        ("", None) => max_prefix(&ip),
        ("", Some(m)) | (m, None) => parse_mask(m, &ip)?,
        (_, Some(_)) => {
            return Err(invalid(format!(
                "address {:?} has a prefix and a mask",
                a.address
            )));
        }
    };
    Ok((ip, len))
}

/// A destination or source prefix of a route: `None` for the default route (`""`,
/// `default`, or a zero-length prefix).
pub fn parse_route_prefix(text: &str, what: &str) -> Result<Option<(IpAddr, u8)>, HostError> {
    if text.is_empty() || text == "default" {
        return Ok(None);
    }
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let ip = parse_ip(addr, what)?;
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max_prefix(&ip))
            .ok_or_else(|| invalid(format!("{what} {text:?} has a bad prefix length")))?,
        None => max_prefix(&ip),
    };
    Ok(if len == 0 { None } else { Some((ip, len)) })
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    family_of_v4(ip.is_ipv4())
}

fn ip_family(ip: &IpAddr) -> IPFamily {
    if ip.is_ipv4() {
        IPFamily::V4
    } else {
        IPFamily::V6
    }
}

/// `RTM_NEWADDR` payload adding `ip/len` to link `index`.
pub fn address_message(index: u32, ip: IpAddr, len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family_of(&ip);
    m.header.prefix_len = len;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(ip));
    m.attributes.push(AddressAttribute::Address(ip));
    if let IpAddr::V4(v4) = ip
        && len < 31
    {
        let host_bits = u32::MAX >> len;
        let brd = Ipv4Addr::from(u32::from(v4) | host_bits);
        m.attributes.push(AddressAttribute::Broadcast(brd));
    }
    m
}

/// The address an `RTM_NEWADDR` message carries (`IFA_LOCAL`, else `IFA_ADDRESS`).
pub fn address_of(m: &AddressMessage) -> Option<(IpAddr, u8)> {
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some((*ip, m.header.prefix_len)),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address.map(|ip| (ip, m.header.prefix_len))
}

/// The API form of an address.
pub fn ip_address(ip: IpAddr, len: u8) -> IPAddress {
    IPAddress {
        family: ip_family(&ip),
        address: ip.to_string(),
        mask: len.to_string(),
    }
}

/// Whether the kernel manages this address itself (IPv6 link-local), so UpdateInterface
/// leaves it alone.
pub fn kernel_managed(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Name of a link.
pub fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Hardware address of a link.
pub fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// The API form of a link and its addresses.
pub fn interface(link: &LinkMessage, addresses: &[AddressMessage]) -> Interface {
    let mut iface = Interface {
        raw_flags: link.header.flags.bits(),
        ..Default::default()
    };
    for a in &link.attributes {
        match a {
            LinkAttribute::IfName(n) => {
                iface.name = n.clone();
                iface.device = n.clone();
            }
            LinkAttribute::Mtu(m) => iface.mtu = u64::from(*m),
            LinkAttribute::Address(mac) => iface.hw_addr = format_mac(mac),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        iface.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    iface.ip_addresses = addresses
        .iter()
        .filter(|m| m.header.index == link.header.index)
        .filter_map(address_of)
        .map(|(ip, len)| ip_address(ip, len))
        .collect();
    iface
}

/// `RTM_NEWLINK` payload for UpdateInterface: MTU (when non-zero), a new name (when given),
/// link up, and ARP on or off as `raw_flags`' `IFF_NOARP` says.
pub fn link_update_message(index: u32, iface: &Interface, rename: Option<&str>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    let noarp = iface.raw_flags & LinkFlags::Noarp.bits() != 0;
    m.header.flags = LinkFlags::Up;
    if noarp {
        m.header.flags |= LinkFlags::Noarp;
    }
    m.header.change_mask = LinkFlags::Up | LinkFlags::Noarp;
    if let Ok(mtu) = u32::try_from(iface.mtu)
        && mtu > 0
    {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(name) = rename {
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
    }
    m
}

/// `RTM_NEWLINK` payload that only sets the link's state (and optionally its name).
pub fn link_state_message(index: u32, up: bool, rename: Option<&str>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    m.header.change_mask = LinkFlags::Up;
    if let Some(name) = rename {
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
    }
    m
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The family a route is for: from its addresses (which must agree), else from its `family`
/// field. A declared V4 is also the proto3 default, so only a declared V6 contradicting an
/// IPv4 address is an error.
fn route_family(
    r: &Route,
    dest: Option<(IpAddr, u8)>,
    gateway: Option<IpAddr>,
) -> Result<AddressFamily, HostError> {
    let mixed = || {
        invalid(format!(
            "route to {:?} via {:?} mixes address families",
            r.dest, r.gateway
        ))
    };
    let v4 = match (
        dest.map(|(ip, _)| ip.is_ipv4()),
        gateway.map(|g| g.is_ipv4()),
    ) {
        (Some(d), Some(g)) if d != g => return Err(mixed()),
        (Some(v4), _) | (None, Some(v4)) => {
            if v4 && r.family == IPFamily::V6 {
                return Err(mixed());
            }
            v4
        }
        (None, None) => r.family == IPFamily::V4,
    };
    Ok(family_of_v4(v4))
}

fn family_of_v4(v4: bool) -> AddressFamily {
    if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// `RTM_NEWROUTE` payload for a route of the main table, protocol `boot` (as Kata's agent
/// adds them), through link `oif` when the route names a device.
pub fn route_message(r: &Route, oif: Option<u32>) -> Result<RouteMessage, HostError> {
    let dest = parse_route_prefix(&r.dest, "route destination")?;
    let gateway = if r.gateway.is_empty() {
        None
    } else {
        Some(parse_ip(&r.gateway, "route gateway")?)
    };
    let family = route_family(r, dest, gateway)?;
    let scope = u8::try_from(r.scope)
        .map_err(|_| invalid(format!("route scope {} is out of range", r.scope)))?;
    let mut m = RouteMessage::default();
    m.header.address_family = family;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = RouteScope::from(scope);
    m.header.kind = RouteType::Unicast;
    m.header.flags = RouteFlags::from_bits_retain(r.flags);
    if let Some((ip, len)) = dest {
        m.header.destination_prefix_length = len;
        m.attributes
            .push(RouteAttribute::Destination(route_address(ip)));
    }
    if let Some(gw) = gateway {
        m.attributes
            .push(RouteAttribute::Gateway(route_address(gw)));
    }
    if !r.source.is_empty() {
        match parse_route_prefix(&r.source, "route source")? {
            Some((ip, len)) if r.source.contains('/') => {
                m.header.source_prefix_length = len;
                m.attributes.push(RouteAttribute::Source(route_address(ip)));
            }
            Some((ip, _)) => m
                .attributes
                .push(RouteAttribute::PrefSource(route_address(ip))),
            None => {}
        }
    }
    if let Some(index) = oif {
        m.attributes.push(RouteAttribute::Oif(index));
    }
    if r.mtu > 0 {
        m.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(r.mtu)]));
    }
    Ok(m)
}

/// The main-table table id of a route (the `RTA_TABLE` attribute wins over the header).
fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

/// Whether a dumped route belongs to the main table.
pub fn in_main_table(m: &RouteMessage) -> bool {
    route_table(m) == u32::from(RouteHeader::RT_TABLE_MAIN)
        && matches!(
            m.header.address_family,
            AddressFamily::Inet | AddressFamily::Inet6
        )
}

/// Whether the kernel derived the route from an address (kept by UpdateRoutes).
pub fn is_kernel_route(m: &RouteMessage) -> bool {
    m.header.protocol == RouteProtocol::Kernel
}

/// The API form of a dumped route; `names` maps link indexes to names.
pub fn route(m: &RouteMessage, names: &HashMap<u32, String>) -> Route {
    let mut r = Route {
        scope: u32::from(u8::from(m.header.scope)),
        family: if m.header.address_family == AddressFamily::Inet6 {
            IPFamily::V6
        } else {
            IPFamily::V4
        },
        flags: m.header.flags.bits(),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => {
                if let Some(ip) = route_ip(d) {
                    r.dest = format!("{ip}/{}", m.header.destination_prefix_length);
                }
            }
            RouteAttribute::Gateway(g) => {
                if let Some(ip) = route_ip(g) {
                    r.gateway = ip.to_string();
                }
            }
            RouteAttribute::PrefSource(s) => {
                if let Some(ip) = route_ip(s) {
                    r.source = ip.to_string();
                }
            }
            RouteAttribute::Source(s) => {
                if let Some(ip) = route_ip(s) {
                    r.source = format!("{ip}/{}", m.header.source_prefix_length);
                }
            }
            RouteAttribute::Oif(i) => r.device = names.get(i).cloned().unwrap_or_default(),
            RouteAttribute::Metrics(metrics) => {
                for metric in metrics {
                    if let RouteMetric::Mtu(mtu) = metric {
                        r.mtu = *mtu;
                    }
                }
            }
            _ => {}
        }
    }
    r
}

/// `RTM_NEWNEIGH` payload for a static neighbour entry on link `index`.
pub fn neighbour_message(n: &ARPNeighbor, index: u32) -> Result<NeighbourMessage, HostError> {
    let to = n
        .to_ip_address
        .as_ref()
        .ok_or_else(|| invalid("ARP neighbour has no toIPAddress".to_string()))?;
    let (ip, _) = ip_with_prefix(to)?;
    let state = u16::try_from(n.state)
        .map_err(|_| invalid(format!("ARP neighbour state {} is out of range", n.state)))?;
    let flags = u8::try_from(n.flags)
        .map_err(|_| invalid(format!("ARP neighbour flags {} are out of range", n.flags)))?;
    let mut m = NeighbourMessage::default();
    m.header.family = family_of(&ip);
    m.header.ifindex = index;
    m.header.state = NeighbourState::from(if state == 0 { NUD_PERMANENT } else { state });
    m.header.flags = NeighbourFlags::from_bits_retain(flags);
    m.attributes.push(NeighbourAttribute::Destination(match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }));
    if !n.lladdr.is_empty() {
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(parse_mac(&n.lladdr)?));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn v4(address: &str, mask: &str) -> IPAddress {
        IPAddress {
            family: IPFamily::V4,
            address: address.into(),
            mask: mask.into(),
        }
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            parse_mac("02:00:0A:ff:00:01").unwrap(),
            vec![2, 0, 10, 255, 0, 1]
        );
        assert_eq!(format_mac(&[2, 0, 10, 255, 0, 1]), "02:00:0a:ff:00:01");
        for bad in ["", "02::00", "0g:00:00:00:00:00", "002:00:00:00:00:00"] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.to_string().contains("hardware address"), "{bad}: {e}");
        }
    }

    #[test]
    fn address_prefixes() {
        let ip: IpAddr = "10.0.2.15".parse().unwrap();
        assert_eq!(ip_with_prefix(&v4("10.0.2.15", "24")).unwrap(), (ip, 24));
        assert_eq!(
            ip_with_prefix(&v4("10.0.2.15", "255.255.255.0")).unwrap(),
            (ip, 24)
        );
        assert_eq!(ip_with_prefix(&v4("10.0.2.15/16", "")).unwrap(), (ip, 16));
        assert_eq!(ip_with_prefix(&v4("10.0.2.15", "")).unwrap(), (ip, 32));
        for (a, m) in [
            ("10.0.2.15", "33"),
            ("10.0.2.15", "255.0.255.0"),
            ("10.0.2.15/8", "24"),
            ("10.0.2", "24"),
            ("fe80::1", "64"), // family V4 declared
        ] {
            assert!(ip_with_prefix(&v4(a, m)).is_err(), "{a} {m}");
        }
        let v6 = IPAddress {
            family: IPFamily::V6,
            address: "fd00::2".into(),
            mask: "64".into(),
        };
        assert_eq!(
            ip_with_prefix(&v6).unwrap(),
            ("fd00::2".parse::<IpAddr>().unwrap(), 64)
        );
    }

    #[test]
    fn address_message_carries_local_and_broadcast() {
        let m = address_message(3, "10.0.2.15".parse().unwrap(), 24);
        assert_eq!((m.header.index, m.header.prefix_len), (3, 24));
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert!(
            m.attributes
                .contains(&AddressAttribute::Broadcast("10.0.2.255".parse().unwrap()))
        );
        assert_eq!(address_of(&m), Some(("10.0.2.15".parse().unwrap(), 24)));
        let p2p = address_message(3, "10.0.0.1".parse().unwrap(), 32);
        assert!(
            !p2p.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Broadcast(_)))
        );
        assert!(kernel_managed(&"fe80::1".parse().unwrap()));
        assert!(!kernel_managed(&"fd00::1".parse().unwrap()));
        assert!(!kernel_managed(&"10.0.2.15".parse().unwrap()));
    }

    #[test]
    fn default_and_gateway_routes() {
        let r = Route {
            gateway: "10.0.2.2".into(),
            device: "eth0".into(),
            ..Default::default()
        };
        let m = route_message(&r, Some(2)).unwrap();
        assert_eq!(m.header.address_family, AddressFamily::Inet);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert_eq!(m.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(m.header.protocol, RouteProtocol::Boot);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_)))
        );
        assert!(
            m.attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                    "10.0.2.2".parse().unwrap()
                )))
        );
        assert!(m.attributes.contains(&RouteAttribute::Oif(2)));
        for dest in ["default", "0.0.0.0/0"] {
            let d = Route {
                dest: dest.into(),
                ..r.clone()
            };
            assert_eq!(route_message(&d, Some(2)).unwrap(), m, "{dest}");
        }
        // The API form round-trips (dest "" for the default route).
        let names = HashMap::from([(2, "eth0".to_string())]);
        let back = route(&m, &names);
        assert_eq!(
            (
                back.dest.as_str(),
                back.gateway.as_str(),
                back.device.as_str()
            ),
            ("", "10.0.2.2", "eth0")
        );
    }

    #[test]
    fn link_routes_sources_and_mtu() {
        let r = Route {
            dest: "192.168.7.0/24".into(),
            device: "eth0".into(),
            source: "192.168.7.5".into(),
            scope: 253,
            mtu: 1400,
            ..Default::default()
        };
        let m = route_message(&r, Some(4)).unwrap();
        assert_eq!(m.header.destination_prefix_length, 24);
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(
            m.attributes
                .contains(&RouteAttribute::PrefSource(RouteAddress::Inet(
                    "192.168.7.5".parse().unwrap()
                )))
        );
        assert!(
            m.attributes
                .contains(&RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]))
        );
        let names = HashMap::from([(4, "eth0".to_string())]);
        let back = route(&m, &names);
        assert_eq!(back.dest, "192.168.7.0/24");
        assert_eq!(back.source, "192.168.7.5");
        assert_eq!((back.scope, back.mtu), (253, 1400));

        let v6 = Route {
            dest: "fd00::/64".into(),
            gateway: "fd00::1".into(),
            ..Default::default()
        };
        let m6 = route_message(&v6, None).unwrap();
        assert_eq!(m6.header.address_family, AddressFamily::Inet6);
        assert!(
            m6.attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet6(
                    "fd00::1".parse::<Ipv6Addr>().unwrap()
                )))
        );
    }

    #[test]
    fn bad_routes_are_refused_with_the_reason() {
        for (r, want) in [
            (
                Route {
                    dest: "10.0.0.0/8".into(),
                    gateway: "fd00::1".into(),
                    ..Default::default()
                },
                "mixes address families",
            ),
            (
                Route {
                    dest: "10.0.0.0/40".into(),
                    ..Default::default()
                },
                "bad prefix length",
            ),
            (
                Route {
                    gateway: "10.0.0.x".into(),
                    ..Default::default()
                },
                "not an IP address",
            ),
            (
                Route {
                    dest: "10.0.0.0/8".into(),
                    family: IPFamily::V6,
                    ..Default::default()
                },
                "mixes address families",
            ),
            (
                Route {
                    dest: "10.0.0.0/8".into(),
                    scope: 300,
                    ..Default::default()
                },
                "scope 300",
            ),
        ] {
            let e = route_message(&r, None).unwrap_err();
            assert!(matches!(e, HostError::InvalidArgument(_)));
            assert!(e.to_string().contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn link_update_sets_up_mtu_name_and_arp() {
        let iface = Interface {
            mtu: 1400,
            raw_flags: LinkFlags::Noarp.bits(),
            ..Default::default()
        };
        let m = link_update_message(7, &iface, Some("eth0"));
        assert_eq!(m.header.index, 7);
        assert!(m.header.flags.contains(LinkFlags::Up | LinkFlags::Noarp));
        assert!(
            m.header
                .change_mask
                .contains(LinkFlags::Up | LinkFlags::Noarp)
        );
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(m.attributes.contains(&LinkAttribute::IfName("eth0".into())));
        let arp = link_update_message(7, &Interface::default(), None);
        assert!(!arp.header.flags.contains(LinkFlags::Noarp));
        assert!(arp.attributes.is_empty(), "MTU 0 and no rename add nothing");
    }

    #[test]
    fn neighbours() {
        let n = ARPNeighbor {
            to_ip_address: Some(v4("10.0.2.2", "")),
            device: "eth0".into(),
            lladdr: "02:00:0a:00:02:02".into(),
            state: 0,
            flags: 0,
        };
        let m = neighbour_message(&n, 2).unwrap();
        assert_eq!(m.header.ifindex, 2);
        assert_eq!(m.header.state, NeighbourState::Permanent);
        assert!(
            m.attributes
                .contains(&NeighbourAttribute::LinkLayerAddress(vec![
                    2, 0, 10, 0, 2, 2
                ]))
        );
        let missing = ARPNeighbor {
            to_ip_address: None,
            ..n.clone()
        };
        assert!(neighbour_message(&missing, 2).is_err());
        let bad_state = ARPNeighbor {
            state: -1,
            ..n.clone()
        };
        assert!(
            neighbour_message(&bad_state, 2)
                .unwrap_err()
                .to_string()
                .contains("state -1")
        );
    }
}
