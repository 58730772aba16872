//! hull's host side: the hypervisor seam ([`vm`]) with its backends, the guest image locations
//! ([`images`]), pod VMs ([`sandbox`]) and their file sharing ([`share`]), the containerd shim
//! ([`shim`]), and the host checks of the `hull` CLI ([`hostcheck`], with the container engines
//! found in [`engines`] and the pod overhead `hull bench` measured in [`overhead`]), and the
//! runc-compatible command line that Podman and Docker drive ([`oci`]).
#![warn(missing_docs)]

pub mod agent;
pub mod engines;
pub mod host_cgroup;
pub mod hostcheck;
pub mod images;
pub mod jail;
pub mod network;
pub mod oci;
pub mod overhead;
pub mod sandbox;
pub mod seccomp;
pub mod selftest;
pub mod share;
pub mod shim;
pub mod template;
pub mod vm;
pub mod vsock;
