//! The pod's network inside the guest: the virtio-net NIC gets the MAC, MTU, addresses and routes
//! that CNI gave the pod's veth on the host, over rtnetlink. The pod's containers share the
//! guest's root network namespace (where the agent runs), so this is the pod's network.

use std::net::IpAddr;

use futures::TryStreamExt;
use hull_protocol::network::{format_mac, PodNetwork};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
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
    let mut indexes = Vec::with_capacity(net.interfaces.len());
    for nic in &net.interfaces {
        let mac = format_mac(nic.mac);
        let link = links
            .iter()
            .find(|l| link_mac(l) == Some(&nic.mac[..]))
            .ok_or_else(|| NetworkError::NoSuchInterface(mac.clone()))?;
        let index = link.header.index;
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
