//! The guest's loopback interface, brought up at boot. The guest's root network namespace is the
//! pod's (a CRI pod's containers stay in it, see the shim's `namespaces` module), and containers
//! of a pod talk to each other on 127.0.0.1 there; the kernel creates `lo` down.

use std::os::fd::AsFd;

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace.
pub fn up() -> std::io::Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(crate::sys::set_interface_up(sock.as_fd(), c"lo")?)
}
