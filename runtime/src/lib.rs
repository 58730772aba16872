//! hull's host side. Today: the hypervisor seam ([`vm`]) with its QEMU backend, the guest image
//! locations ([`images`]), and the `hull` CLI built on them. The containerd shim joins here.
#![warn(missing_docs)]

pub mod agent;
pub mod images;
pub mod sandbox;
pub mod selftest;
pub mod share;
pub mod vm;
pub mod vsock;
