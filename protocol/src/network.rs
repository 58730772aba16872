//! The pod network as it crosses the VM boundary: [`PodNetwork`] is the typed, checked form of a
//! `ConfigureNetworkRequest`. The host builds the request from what CNI set up in the pod's network
//! namespace; the agent parses it back and refuses anything malformed or beyond the caps.

use std::net::IpAddr;

use crate::agent::{ConfigureNetworkRequest, IpNetwork, NetworkInterface, NetworkRoute};

/// Most NICs per pod.
pub const MAX_INTERFACES: usize = 4;
/// Most addresses per NIC.
pub const MAX_ADDRESSES: usize = 16;
/// Most routes.
pub const MAX_ROUTES: usize = 64;
/// The MTU range Linux accepts for IPv4 (68) up to the largest jumbo frame a tap carries.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65_535;

/// A field of the network request that is malformed or beyond a cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// A list is too long.
    #[error("{what} has {len} entries, more than the {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A value does not parse or is out of range.
    #[error("invalid {what} {value:?}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The value (truncated).
        value: String,
    },
}

fn invalid(what: &'static str, value: impl std::fmt::Display) -> NetworkError {
    NetworkError::Invalid {
        what,
        value: value.to_string().chars().take(80).collect(),
    }
}

fn check_count(what: &'static str, len: usize, max: usize) -> Result<(), NetworkError> {
    if len > max {
        return Err(NetworkError::TooMany { what, len, max });
    }
    Ok(())
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub address: IpAddr,
    /// The prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// Checks the prefix length against the address family.
    pub fn new(address: IpAddr, prefix_len: u8) -> Result<Self, NetworkError> {
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(invalid("prefix length", format!("{address}/{prefix_len}")));
        }
        Ok(Self {
            address,
            prefix_len,
        })
    }

    fn parse(msg: &IpNetwork) -> Result<Self, NetworkError> {
        let address = msg
            .address
            .parse()
            .map_err(|_| invalid("IP address", &msg.address))?;
        let prefix_len =
            u8::try_from(msg.prefix_len).map_err(|_| invalid("prefix length", msg.prefix_len))?;
        Self::new(address, prefix_len)
    }

    fn to_msg(self) -> IpNetwork {
        IpNetwork {
            address: self.address.to_string(),
            prefix_len: u32::from(self.prefix_len),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// A NIC of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its MAC address: the veth's on the host, the virtio-net NIC's in the guest.
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses.
    pub addresses: Vec<Cidr>,
}

/// A route of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` for the default route.
    pub destination: Option<Cidr>,
    /// `None` for an on-link route.
    pub gateway: Option<IpAddr>,
    /// The NIC it leaves by.
    pub interface_mac: [u8; 6],
}

/// The pod's network: its NICs and routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodNetwork {
    /// NICs.
    pub interfaces: Vec<Interface>,
    /// Routes.
    pub routes: Vec<Route>,
}

/// Formats a MAC address as `02:42:0a:58:00:05`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// Whether `mac` is one a NIC may have: not multicast (nor broadcast), not all zeros.
pub fn is_unicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac != [0; 6]
}

/// Parses a MAC address written as six `:`-separated pairs of hex digits.
pub fn parse_mac(text: &str) -> Result<[u8; 6], NetworkError> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts
            .next()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| invalid("MAC address", text))?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid("MAC address", text))?;
    }
    if parts.next().is_some() {
        return Err(invalid("MAC address", text));
    }
    Ok(mac)
}

impl PodNetwork {
    /// Parses and checks a request: caps, addresses, MTUs, and routes that name a NIC of the
    /// request whose gateway (if any) has the destination's family.
    pub fn from_request(req: &ConfigureNetworkRequest) -> Result<Self, NetworkError> {
        check_count("interfaces", req.interfaces.len(), MAX_INTERFACES)?;
        check_count("routes", req.routes.len(), MAX_ROUTES)?;
        let mut interfaces = Vec::with_capacity(req.interfaces.len());
        for nic in &req.interfaces {
            check_count("addresses", nic.addresses.len(), MAX_ADDRESSES)?;
            if !MTU_RANGE.contains(&nic.mtu) {
                return Err(invalid("MTU", nic.mtu));
            }
            let mac = parse_mac(&nic.mac)?;
            // The guest may give its NIC this address (a restored pod's NIC still has the
            // template's): only one a NIC may have, and one per NIC.
            if !is_unicast(mac) || interfaces.iter().any(|i: &Interface| i.mac == mac) {
                return Err(invalid("interface MAC", &nic.mac));
            }
            interfaces.push(Interface {
                mac,
                mtu: nic.mtu,
                addresses: nic
                    .addresses
                    .iter()
                    .map(Cidr::parse)
                    .collect::<Result<_, _>>()?,
            });
        }
        let mut routes = Vec::with_capacity(req.routes.len());
        for route in &req.routes {
            let destination = route.destination.as_ref().map(Cidr::parse).transpose()?;
            let gateway = if route.gateway.is_empty() {
                None
            } else {
                Some(
                    route
                        .gateway
                        .parse::<IpAddr>()
                        .map_err(|_| invalid("gateway", &route.gateway))?,
                )
            };
            if destination.is_none() && gateway.is_none() {
                return Err(invalid("route", "a default route without a gateway"));
            }
            if let (Some(d), Some(g)) = (destination, gateway) {
                if d.address.is_ipv4() != g.is_ipv4() {
                    return Err(invalid("route", format!("{d} via {g}")));
                }
            }
            let interface_mac = parse_mac(&route.interface_mac)?;
            if !interfaces.iter().any(|nic| nic.mac == interface_mac) {
                return Err(invalid("route interface", &route.interface_mac));
            }
            routes.push(Route {
                destination,
                gateway,
                interface_mac,
            });
        }
        Ok(Self { interfaces, routes })
    }

    /// The request carrying this network.
    pub fn to_request(&self) -> ConfigureNetworkRequest {
        ConfigureNetworkRequest {
            interfaces: self
                .interfaces
                .iter()
                .map(|nic| NetworkInterface {
                    mac: format_mac(nic.mac),
                    mtu: nic.mtu,
                    addresses: nic.addresses.iter().map(|a| a.to_msg()).collect(),
                    ..Default::default()
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| NetworkRoute {
                    destination: r.destination.map(Cidr::to_msg).into(),
                    gateway: r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    interface_mac: format_mac(r.interface_mac),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x58, 0x00, 0x05];

    fn pod() -> PodNetwork {
        PodNetwork {
            interfaces: vec![Interface {
                mac: MAC,
                mtu: 1500,
                addresses: vec![
                    Cidr::new("10.88.0.5".parse().unwrap(), 16).unwrap(),
                    Cidr::new("fd00::5".parse().unwrap(), 64).unwrap(),
                ],
            }],
            routes: vec![
                Route {
                    destination: None,
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    interface_mac: MAC,
                },
                Route {
                    destination: Some(Cidr::new("10.96.0.0".parse().unwrap(), 12).unwrap()),
                    gateway: None,
                    interface_mac: MAC,
                },
            ],
        }
    }

    #[test]
    fn a_network_survives_the_round_trip() {
        let net = pod();
        assert_eq!(PodNetwork::from_request(&net.to_request()).unwrap(), net);
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(parse_mac("02:42:0A:58:00:05").unwrap(), MAC);
        assert_eq!(format_mac(MAC), "02:42:0a:58:00:05");
        for bad in [
            "",
            "02:42:0a:58:00",
            "02:42:0a:58:00:05:06",
            "2:42:0a:58:00:05",
            "zz:42:0a:58:00:05",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad:?}");
        }
    }

    /// The guest may set its NIC's address from a request: only a unicast one, once.
    #[test]
    fn interface_macs_are_unicast_and_distinct() {
        assert!(is_unicast(MAC));
        for bad in [
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
            "03:42:0a:58:00:05",
        ] {
            let mut req = pod().to_request();
            req.interfaces[0].mac = bad.into();
            for r in &mut req.routes {
                r.interface_mac = bad.into();
            }
            let err = PodNetwork::from_request(&req).unwrap_err().to_string();
            assert!(err.contains("interface MAC"), "{bad}: {err}");
        }
        let mut req = pod().to_request();
        req.interfaces.push(req.interfaces[0].clone());
        assert!(
            PodNetwork::from_request(&req).is_err(),
            "the same MAC twice"
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let base = pod().to_request();
        let mut req = base.clone();
        req.interfaces[0].mtu = 20;
        assert!(PodNetwork::from_request(&req).is_err(), "tiny MTU");

        let mut req = base.clone();
        req.interfaces[0].addresses[0].prefix_len = 33;
        assert!(PodNetwork::from_request(&req).is_err(), "IPv4 /33");

        let mut req = base.clone();
        req.interfaces[0].addresses[0].address = "10.88.0.5; rm -rf /".into();
        assert!(PodNetwork::from_request(&req).is_err(), "garbage address");

        let mut req = base.clone();
        req.routes[0].interface_mac = "02:00:00:00:00:99".into();
        assert!(
            PodNetwork::from_request(&req).is_err(),
            "route via an unknown NIC"
        );

        let mut req = base.clone();
        req.routes[0].gateway = "fd00::1".into();
        req.routes[0].destination = Some(base.interfaces[0].addresses[0].clone()).into();
        assert!(PodNetwork::from_request(&req).is_err(), "mixed families");

        let mut req = base.clone();
        req.routes[0].gateway.clear();
        assert!(
            PodNetwork::from_request(&req).is_err(),
            "default route without gateway"
        );

        let mut req = base;
        req.interfaces = vec![req.interfaces[0].clone(); MAX_INTERFACES + 1];
        assert!(matches!(
            PodNetwork::from_request(&req),
            Err(NetworkError::TooMany { .. })
        ));
    }
}
