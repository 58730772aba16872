//! hull-vmm: hull's own KVM microVM monitor on the rust-vmm crates (kvm-ioctls, vm-memory,
//! virtio-queue, linux-loader, vm-superio), the second implementation of the runtime's
//! hypervisor seam and the fast path where the host has hardware KVM.
//!
//! Where things live: [`layout`] (the guest memory map), [`memory`] (memfd guest RAM),
//! [`boot`] (kernel, initrd, zero page / PVH start info, e820), [`arch`] (registers, CPUID, MP
//! table), [`bus`] (port-I/O and MMIO dispatch), [`devices`] (serial, i8042, virtio-mmio,
//! vsock), [`vcpu`] (the vCPU threads), [`vmm`] (assembly and the event loop), [`config`] (what
//! a VM is made of), [`host`] (what kind of KVM the host has), [`snapshot`] (snapshot and
//! restore). `vmm/README.md` has the boot path,
//! the memory map and the vsock protocol.
#![warn(missing_docs)]

pub mod arch;
pub mod boot;
pub mod bus;
pub mod config;
pub mod devices;
pub mod host;
pub mod layout;
pub mod memory;
pub mod seccomp;
pub mod snapshot;
/// Test guests and hostile-guest programs for hull-vmm's own tests and `hull-bench vmm`: only
/// with the `testing` feature (and in unit tests), never in the production library.
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod vcpu;
pub mod vmm;

pub use config::{FsConfig, NetConfig, VmmConfig, VsockConfig};
pub use devices::ExitReason;
pub use vmm::{RestoreConfig, Vmm, VmmError};
