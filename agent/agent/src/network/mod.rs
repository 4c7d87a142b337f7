//! [`NetlinkHost`]: the agent's `NetworkHost` adapter. ListInterfaces, UpdateInterface,
//! ListRoutes, UpdateRoutes and AddARPNeighbors are carried out with rtnetlink messages
//! (`netlink-packet-route`) on a blocking socket in the agent's network namespace.
//!
//! Rules (as Kata's agent):
//! - UpdateInterface finds the link by hardware address, else by name; makes its addresses
//!   exactly the requested ones (IPv6 link-local addresses, which the kernel manages, stay);
//!   renames it when asked (swapping names with a link that holds the wanted name); sets the
//!   MTU and `IFF_NOARP` as requested and brings it up.
//! - UpdateRoutes replaces every main-table route the kernel did not derive from an address
//!   (protocol `kernel` routes stay) with the requested ones: device routes first, then
//!   routes via a gateway (so the gateway is reachable when its route is added). All routes
//!   are validated before anything is deleted.
//! - AddARPNeighbors adds or replaces static neighbour entries (state 0 means permanent).

pub mod convert;
pub mod socket;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use agent_core::{HostError, NetworkHost};
use agent_protocol::types::{ARPNeighbor, Interface, Route};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};

use self::socket::{NetlinkError, Rtnl};

/// Longest interface name the kernel accepts (`IFNAMSIZ` - 1).
const MAX_IFNAME: usize = 15;

/// The netlink adapter. Changes are serialised so two RPCs never interleave their steps.
#[derive(Default, Clone)]
pub struct NetlinkHost {
    lock: Arc<Mutex<()>>,
}

fn nl_error(what: impl Into<String>) -> impl FnOnce(NetlinkError) -> HostError {
    let what = what.into();
    move |e| match e {
        NetlinkError::Kernel(source) => HostError::io(what, source),
        NetlinkError::Socket(errno) => HostError::io(what, std::io::Error::from(errno)),
        NetlinkError::Decode(d) => HostError::io(what, std::io::Error::other(d)),
    }
}

impl NetlinkHost {
    /// A new adapter for the calling process' network namespace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with a fresh socket on a blocking thread, holding the change lock.
    async fn run<T, F>(&self, f: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Rtnl) -> Result<T, HostError> + Send + 'static,
    {
        let lock = self.lock.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut nl = Rtnl::open().map_err(nl_error("opening a netlink socket"))?;
            f(&mut nl)
        })
        .await
        .map_err(|e| HostError::io("netlink worker", std::io::Error::other(e.to_string())))?
    }
}

fn links(nl: &mut Rtnl) -> Result<Vec<LinkMessage>, HostError> {
    let all = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(nl_error("listing links"))?;
    Ok(all
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

fn addresses(nl: &mut Rtnl) -> Result<Vec<AddressMessage>, HostError> {
    let all = nl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .map_err(nl_error("listing addresses"))?;
    Ok(all
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })
        .collect())
}

fn main_routes(nl: &mut Rtnl) -> Result<Vec<RouteMessage>, HostError> {
    let all = nl
        .dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))
        .map_err(nl_error("listing routes"))?;
    Ok(all
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) if convert::in_main_table(&r) => Some(r),
            _ => None,
        })
        .collect())
}

fn link_names(links: &[LinkMessage]) -> HashMap<u32, String> {
    links
        .iter()
        .filter_map(|l| Some((l.header.index, convert::link_name(l)?.to_string())))
        .collect()
}

fn index_by_name(links: &[LinkMessage], name: &str) -> Option<u32> {
    links
        .iter()
        .find(|l| convert::link_name(l) == Some(name))
        .map(|l| l.header.index)
}

fn list_interfaces(nl: &mut Rtnl) -> Result<Vec<Interface>, HostError> {
    let links = links(nl)?;
    let addrs = addresses(nl)?;
    Ok(links
        .iter()
        .map(|l| convert::interface(l, &addrs))
        .collect())
}

fn list_routes(nl: &mut Rtnl) -> Result<Vec<Route>, HostError> {
    let names = link_names(&links(nl)?);
    Ok(main_routes(nl)?
        .iter()
        .map(|r| convert::route(r, &names))
        .collect())
}

/// The link UpdateInterface means: by hardware address when given, else by name.
fn find_link<'a>(
    links: &'a [LinkMessage],
    iface: &Interface,
) -> Result<&'a LinkMessage, HostError> {
    if !iface.hw_addr.is_empty() {
        let mac = convert::parse_mac(&iface.hw_addr)?;
        return links
            .iter()
            .find(|l| convert::link_mac(l) == Some(mac.as_slice()))
            .ok_or_else(|| {
                HostError::NotFound(format!(
                    "no interface with hardware address {}",
                    iface.hw_addr
                ))
            });
    }
    if iface.name.is_empty() {
        return Err(HostError::InvalidArgument(
            "UpdateInterface needs a hardware address or a name".into(),
        ));
    }
    links
        .iter()
        .find(|l| convert::link_name(l) == Some(iface.name.as_str()))
        .ok_or_else(|| HostError::NotFound(format!("no interface named {:?}", iface.name)))
}

fn set_link(nl: &mut Rtnl, m: LinkMessage, what: &str) -> Result<(), HostError> {
    nl.request(RouteNetlinkMessage::SetLink(m), 0)
        .map_err(nl_error(what))
}

fn update_interface(nl: &mut Rtnl, iface: &Interface) -> Result<Interface, HostError> {
    // Validate everything before the first change.
    let wanted: Vec<(IpAddr, u8)> = iface
        .ip_addresses
        .iter()
        .map(convert::ip_with_prefix)
        .collect::<Result<_, _>>()?;
    if iface.name.len() > MAX_IFNAME || iface.name.contains(['/', ' ', ':']) {
        return Err(HostError::InvalidArgument(format!(
            "interface name {:?} is not a valid link name",
            iface.name
        )));
    }
    let all = links(nl)?;
    let link = find_link(&all, iface)?;
    let index = link.header.index;
    let old_name = convert::link_name(link).unwrap_or_default().to_string();
    let rename = (!iface.name.is_empty() && iface.name != old_name).then_some(iface.name.as_str());

    let current: Vec<AddressMessage> = addresses(nl)?
        .into_iter()
        .filter(|a| a.header.index == index)
        .collect();
    for a in &current {
        if let Some((ip, len)) = convert::address_of(a)
            && !convert::kernel_managed(&ip)
            && !wanted.contains(&(ip, len))
        {
            nl.request(RouteNetlinkMessage::DelAddress(a.clone()), 0)
                .map_err(nl_error(format!(
                    "removing address {ip}/{len} from {old_name}"
                )))?;
        }
    }
    let present: Vec<(IpAddr, u8)> = current.iter().filter_map(convert::address_of).collect();
    for (ip, len) in &wanted {
        if !present.contains(&(*ip, *len)) {
            nl.request(
                RouteNetlinkMessage::NewAddress(convert::address_message(index, *ip, *len)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map_err(nl_error(format!("adding address {ip}/{len} to {old_name}")))?;
        }
    }

    let mut displaced = None;
    if let Some(new_name) = rename {
        // A link can be renamed only while down.
        if link.header.flags.contains(LinkFlags::Up) {
            set_link(
                nl,
                convert::link_state_message(index, false, None),
                "bringing the link down",
            )?;
        }
        if let Some(other) = all.iter().find(|l| convert::link_name(l) == Some(new_name)) {
            let tmp = format!("cocoon{}", other.header.index);
            let was_up = other.header.flags.contains(LinkFlags::Up);
            if was_up {
                set_link(
                    nl,
                    convert::link_state_message(other.header.index, false, None),
                    "bringing the link holding the wanted name down",
                )?;
            }
            set_link(
                nl,
                convert::link_state_message(other.header.index, false, Some(&tmp)),
                "renaming the link holding the wanted name",
            )?;
            displaced = Some((other.header.index, was_up));
        }
    }
    set_link(
        nl,
        convert::link_update_message(index, iface, rename),
        &format!("updating link {old_name}"),
    )?;
    if let Some((other, was_up)) = displaced {
        set_link(
            nl,
            convert::link_state_message(other, was_up, Some(&old_name)),
            "giving the displaced link the old name",
        )?;
    }

    let addrs = addresses(nl)?;
    let now = links(nl)?;
    now.iter()
        .find(|l| l.header.index == index)
        .map(|l| convert::interface(l, &addrs))
        .ok_or_else(|| HostError::NotFound(format!("interface {old_name} vanished")))
}

/// A delete request naming just what identifies the route.
fn route_delete_message(r: &RouteMessage) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header = r.header.clone();
    m.attributes = r
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Source(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
                    | RouteAttribute::Table(_)
            )
        })
        .cloned()
        .collect();
    m
}

const ESRCH: i32 = 3;
const EEXIST: i32 = 17;

fn update_routes(nl: &mut Rtnl, routes: &[Route]) -> Result<Vec<Route>, HostError> {
    let all = links(nl)?;
    // Device routes first, then routes via a gateway.
    let ordered = routes
        .iter()
        .filter(|r| r.gateway.is_empty())
        .chain(routes.iter().filter(|r| !r.gateway.is_empty()));
    let mut requests = Vec::with_capacity(routes.len());
    for r in ordered {
        let oif = if r.device.is_empty() {
            None
        } else {
            Some(index_by_name(&all, &r.device).ok_or_else(|| {
                HostError::InvalidArgument(format!("route device {:?} does not exist", r.device))
            })?)
        };
        requests.push((convert::route_message(r, oif)?, r));
    }
    for old in main_routes(nl)? {
        if convert::is_kernel_route(&old) {
            continue;
        }
        match nl.request(RouteNetlinkMessage::DelRoute(route_delete_message(&old)), 0) {
            Err(e) if e.errno() == Some(ESRCH) => {}
            other => other.map_err(nl_error("removing an old route"))?,
        }
    }
    for (m, r) in requests {
        match nl.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.errno() == Some(EEXIST) => {}
            other => other.map_err(nl_error(format!(
                "adding route to {:?} via {:?} dev {:?}",
                r.dest, r.gateway, r.device
            )))?,
        }
    }
    list_routes(nl)
}

fn add_arp_neighbors(nl: &mut Rtnl, neighbors: &[ARPNeighbor]) -> Result<(), HostError> {
    let all = links(nl)?;
    let mut requests = Vec::with_capacity(neighbors.len());
    for n in neighbors {
        let index = index_by_name(&all, &n.device).ok_or_else(|| {
            HostError::InvalidArgument(format!(
                "ARP neighbour device {:?} does not exist",
                n.device
            ))
        })?;
        requests.push(convert::neighbour_message(n, index)?);
    }
    for m in requests {
        nl.request(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(nl_error("adding an ARP neighbour"))?;
    }
    Ok(())
}

/// Brings the loopback link up (a PID 1 duty: the kernel leaves `lo` down).
pub fn bring_up_loopback() -> Result<(), HostError> {
    let mut nl = Rtnl::open().map_err(nl_error("opening a netlink socket"))?;
    let all = links(&mut nl)?;
    let index = index_by_name(&all, "lo")
        .ok_or_else(|| HostError::NotFound("no loopback interface".into()))?;
    set_link(
        &mut nl,
        convert::link_state_message(index, true, None),
        "bringing lo up",
    )
}

#[async_trait::async_trait]
impl NetworkHost for NetlinkHost {
    async fn list_interfaces(&self) -> Result<Vec<Interface>, HostError> {
        self.run(list_interfaces).await
    }

    async fn update_interface(&self, iface: &Interface) -> Result<Interface, HostError> {
        let iface = iface.clone();
        self.run(move |nl| update_interface(nl, &iface)).await
    }

    async fn list_routes(&self) -> Result<Vec<Route>, HostError> {
        self.run(list_routes).await
    }

    async fn update_routes(&self, routes: &[Route]) -> Result<Vec<Route>, HostError> {
        let routes = routes.to_vec();
        self.run(move |nl| update_routes(nl, &routes)).await
    }

    async fn add_arp_neighbors(&self, neighbors: &[ARPNeighbor]) -> Result<(), HostError> {
        let neighbors = neighbors.to_vec();
        self.run(move |nl| add_arp_neighbors(nl, &neighbors)).await
    }
}
