//! The pod's network inside the guest: the virtio-net NIC gets the MAC, MTU, addresses and routes
//! that CNI gave the pod's veth on the host, over rtnetlink. The pod's containers share the
//! guest's root network namespace (where the agent runs), so this is the pod's network. A pod
//! restored from a template finds its NIC with the template's MAC: the NIC takes the pod's
//! (a unicast address the protocol checked) before it goes up.

use std::net::IpAddr;
use std::path::Path;

use futures::TryStreamExt;
use hull_protocol::network::{format_mac, PodNetwork};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Configuring the guest's network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No NIC with the MAC the host named.
    #[error("no network interface with MAC {0} in the guest")]
    NoSuchInterface(String),
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("{0}")]
    Netlink(String, #[source] rtnetlink::Error),
    /// A route could not be described.
    #[error("invalid route {0}")]
    Route(String),
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |e| NetworkError::Netlink(what, e)
}

/// Brings loopback up and gives each NIC of `net` its MTU and addresses, up, then adds the routes.
pub async fn configure(net: &PodNetwork) -> Result<(), NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = apply(&handle, net).await;
    connection.abort();
    result
}

async fn apply(handle: &Handle, net: &PodNetwork) -> Result<(), NetworkError> {
    let links = list_links(handle).await?;
    if let Some(lo) = links.iter().find(|l| link_name(l) == Some("lo")) {
        set_up(handle, lo.header.index, None).await?;
    }
    let found: Vec<Link> = links.iter().map(Link::of).collect();
    let wanted: Vec<[u8; 6]> = net.interfaces.iter().map(|nic| nic.mac).collect();
    let assigned = assign(&found, &wanted)?;
    let mut indexes = Vec::with_capacity(net.interfaces.len());
    for (nic, &(index, readdress)) in net.interfaces.iter().zip(&assigned) {
        let mac = format_mac(nic.mac);
        if readdress {
            set_address(handle, index, nic.mac).await?;
            eprintln!("hull-agent: network: interface {index} takes the pod's MAC {mac}");
        }
        for cidr in &nic.addresses {
            handle
                .address()
                .add(index, cidr.address, cidr.prefix_len)
                .replace()
                .execute()
                .await
                .map_err(netlink(format!("cannot add {cidr} to {mac}")))?;
        }
        set_up(handle, index, Some(nic.mtu)).await?;
        eprintln!("hull-agent: network: {mac} mtu {} up", nic.mtu);
        indexes.push((nic.mac, index));
    }
    for route in &net.routes {
        let index = indexes
            .iter()
            .find(|(mac, _)| *mac == route.interface_mac)
            .map(|(_, index)| *index)
            .ok_or_else(|| NetworkError::NoSuchInterface(format_mac(route.interface_mac)))?;
        let shown = match (route.destination, route.gateway) {
            (Some(d), Some(g)) => format!("{d} via {g}"),
            (Some(d), None) => format!("{d}"),
            (None, Some(g)) => format!("default via {g}"),
            (None, None) => return Err(NetworkError::Route("default without gateway".into())),
        };
        let family_any = |g: IpAddr| match g {
            IpAddr::V4(_) => IpAddr::from([0u8; 4]),
            IpAddr::V6(_) => IpAddr::from([0u16; 8]),
        };
        let (dest, prefix) = match (route.destination, route.gateway) {
            (Some(d), _) => (d.address, d.prefix_len),
            (None, Some(g)) => (family_any(g), 0),
            (None, None) => unreachable!("refused above"),
        };
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dest, prefix)
            .map_err(|e| NetworkError::Route(format!("{shown}: {e}")))?
            .output_interface(index);
        if let Some(gateway) = route.gateway {
            builder = builder
                .gateway(gateway)
                .map_err(|e| NetworkError::Route(format!("{shown}: {e}")))?;
        }
        handle
            .route()
            .add(builder.build())
            .replace()
            .execute()
            .await
            .map_err(netlink(format!("cannot add route {shown}")))?;
    }
    Ok(())
}

/// What [`assign`] needs to know of a guest link.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    index: u32,
    mac: Option<Vec<u8>>,
    /// An Ethernet link backed by a device (the virtio-net NIC), not a virtual one the kernel
    /// makes by itself (`dummy0`, tunnel fallback devices): only such a link may take a MAC.
    nic: bool,
}

impl Link {
    fn of(link: &LinkMessage) -> Self {
        let ether = link.header.link_layer_type == LinkLayerType::Ether;
        let device = link_name(link).is_some_and(|name| {
            Path::new("/sys/class/net")
                .join(name)
                .join("device")
                .exists()
        });
        Self {
            index: link.header.index,
            mac: link_mac(link).map(<[u8]>::to_vec),
            nic: ether && device,
        }
    }
}

/// The guest link for each MAC of `wanted` (distinct unicast MACs: the protocol checked them),
/// and whether it must take that MAC first. A link that has the MAC is that NIC's. A NIC whose
/// MAC no link has takes the first device-backed Ethernet link no other NIC claims: a pod
/// restored from a template whose NIC still has the template's MAC. No such link:
/// `NoSuchInterface`.
fn assign(links: &[Link], wanted: &[[u8; 6]]) -> Result<Vec<(u32, bool)>, NetworkError> {
    let has = |link: &Link, mac: &[u8; 6]| link.mac.as_deref() == Some(&mac[..]);
    let mut taken: Vec<u32> = links
        .iter()
        .filter(|l| wanted.iter().any(|m| has(l, m)))
        .map(|l| l.index)
        .collect();
    let mut out = Vec::with_capacity(wanted.len());
    for mac in wanted {
        if let Some(link) = links.iter().find(|l| has(l, mac)) {
            out.push((link.index, false));
            continue;
        }
        let spare = links
            .iter()
            .find(|l| l.nic && !taken.contains(&l.index))
            .ok_or_else(|| NetworkError::NoSuchInterface(format_mac(*mac)))?;
        taken.push(spare.index);
        out.push((spare.index, true));
    }
    Ok(out)
}

/// Gives link `index` the address `mac` (down first: a NIC still down, as a template leaves
/// it, is not disturbed; [`set_up`] brings it up afterwards).
async fn set_address(handle: &Handle, index: u32, mac: [u8; 6]) -> Result<(), NetworkError> {
    let shown = format_mac(mac);
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .map_err(netlink(format!("cannot take interface {index} down")))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!(
            "cannot give interface {index} MAC {shown}"
        )))
}

async fn list_links(handle: &Handle) -> Result<Vec<LinkMessage>, NetworkError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("cannot list network interfaces"))
}

async fn set_up(handle: &Handle, index: u32, mtu: Option<u32>) -> Result<(), NetworkError> {
    let mut message = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        message = message.mtu(mtu);
    }
    handle
        .link()
        .set(message.build())
        .execute()
        .await
        .map_err(netlink(format!("cannot bring interface {index} up")))
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(mac) => Some(mac.as_slice()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x05];
    const TEMPLATE: [u8; 6] = [0x02, 0x68, 0x75, 0x6c, 0x6c, 0x00];

    fn link(index: u32, mac: Option<[u8; 6]>, nic: bool) -> Link {
        Link {
            index,
            mac: mac.map(|m| m.to_vec()),
            nic,
        }
    }

    fn lo() -> Link {
        link(1, Some([0; 6]), false)
    }

    #[test]
    fn a_nic_with_the_pods_mac_is_taken_as_it_is() {
        let links = [lo(), link(2, Some(POD), true)];
        assert_eq!(assign(&links, &[POD]).unwrap(), [(2, false)]);
    }

    /// The guest kernel makes `dummy0` (an Ethernet link of no device) before the NIC: it is
    /// never the one that takes the pod's MAC (seen in the nested tier: the pod's address went
    /// to `dummy0`).
    #[test]
    fn a_restored_nic_takes_the_pods_mac_and_a_virtual_link_never_does() {
        let dummy = link(2, Some([0x6a, 1, 2, 3, 4, 5]), false);
        let links = [lo(), dummy, link(3, Some(TEMPLATE), true)];
        assert_eq!(assign(&links, &[POD]).unwrap(), [(3, true)]);
        assert!(assign(&links[..2], &[POD]).is_err());
    }

    #[test]
    fn a_nic_claimed_by_its_own_mac_or_a_non_ethernet_link_is_not_readdressed() {
        let other = [0x02, 0, 0, 0, 0, 9];
        let links = [lo(), link(2, Some(other), true), link(3, None, false)];
        // NIC 2 is `other`'s; the pod's MAC has no link left.
        let err = assign(&links, &[POD, other]).unwrap_err();
        assert!(matches!(err, NetworkError::NoSuchInterface(m) if m == "02:42:0a:58:00:05"));
        assert!(assign(&[lo()], &[POD]).is_err(), "loopback is never a NIC");
        assert_eq!(assign(&links, &[]).unwrap(), []);
    }
}
