//! Reading the pod's veth configuration, as CNI left it, out of the pod's network namespace.

use std::net::IpAddr;
use std::path::Path;

use futures::TryStreamExt;
use hull_protocol::network::{Cidr, Interface, PodNetwork, Route};
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{netlink, netns, NetworkError};

/// The host-side interface of the pod (CNI's veth end inside the pod namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// Its index in the pod namespace.
    pub index: u32,
    /// Its name (`eth0` for CNI).
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its MAC address, which the guest NIC takes over.
    pub mac: [u8; 6],
}

/// The interface CNI made in the namespace at `netns` (`eth0`, or else the only non-loopback
/// interface with an address) and the network the guest must be given to take its place; `None`
/// when the namespace has no such interface (loopback only, as for a pod without CNI).
pub fn discover(netns: &Path) -> Result<Option<(PodInterface, PodNetwork)>, NetworkError> {
    netns::run_in(netns, || {
        netns::with_handle(|handle| async move { read(&handle).await })
    })
}

async fn read(handle: &Handle) -> Result<Option<(PodInterface, PodNetwork)>, NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("cannot list interfaces"))?;
    let mut candidates = Vec::new();
    for link in &links {
        if link.header.flags.contains(LinkFlags::Loopback) {
            continue;
        }
        let Some(interface) = pod_interface(link) else {
            continue;
        };
        let addresses = addresses(handle, interface.index).await?;
        if !addresses.is_empty() {
            candidates.push((interface, addresses));
        }
    }
    let pick = candidates
        .iter()
        .position(|(i, _)| i.name == "eth0")
        .or_else(|| (candidates.len() == 1).then_some(0));
    let Some(pick) = pick else {
        return Ok(None);
    };
    let (interface, addresses) = candidates.swap_remove(pick);
    let mut routes = Vec::new();
    let filters = [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    ];
    for filter in filters {
        let dump: Vec<RouteMessage> = handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(netlink("cannot list routes"))?;
        routes.extend(
            dump.iter()
                .filter_map(|r| pod_route(r, interface.index, interface.mac)),
        );
    }
    let network = PodNetwork {
        interfaces: vec![Interface {
            mac: interface.mac,
            mtu: interface.mtu,
            addresses,
        }],
        routes,
    };
    Ok(Some((interface, network)))
}

fn pod_interface(link: &LinkMessage) -> Option<PodInterface> {
    let mut name = None;
    let mut mac = None;
    let mut mtu = 1500;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(m) => mtu = *m,
            _ => {}
        }
    }
    Some(PodInterface {
        index: link.header.index,
        name: name?,
        mtu,
        mac: mac?,
    })
}

/// The interface's global addresses (link-local ones the guest makes itself).
async fn addresses(handle: &Handle, index: u32) -> Result<Vec<Cidr>, NetworkError> {
    let dump: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink("cannot list addresses"))?;
    let mut out = Vec::new();
    for message in dump {
        if message.header.index != index || message.header.scope != AddressScope::Universe {
            continue;
        }
        let address = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(address) = address {
            out.push(Cidr::new(address, message.header.prefix_len)?);
        }
    }
    Ok(out)
}

/// A route the guest must be told about: unicast routes of the main table out of the pod
/// interface, except those the kernel derives from addresses (the guest derives them too).
fn pod_route(route: &RouteMessage, index: u32, mac: [u8; 6]) -> Option<Route> {
    let header = &route.header;
    if header.table != RouteHeader::RT_TABLE_MAIN
        || header.kind != RouteType::Unicast
        || header.protocol == RouteProtocol::Kernel
    {
        return None;
    }
    let mut oif = None;
    let mut destination = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(a) => destination = ip(a),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            _ => {}
        }
    }
    if oif != Some(index) {
        return None;
    }
    let destination = match destination {
        Some(address) if header.destination_prefix_length > 0 => {
            Some(Cidr::new(address, header.destination_prefix_length).ok()?)
        }
        _ => None,
    };
    if let Some(IpAddr::V6(v6)) = destination.map(|d| d.address) {
        if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.segments()[0] & 0xff00 == 0xff00 {
            return None;
        }
    }
    if destination.is_none() && gateway.is_none() {
        return None;
    }
    Some(Route {
        destination,
        gateway,
        interface_mac: mac,
    })
}

fn ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
