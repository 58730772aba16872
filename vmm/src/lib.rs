//! hull-vmm: hull's own KVM microVM monitor (kvm-ioctls, vm-memory, virtio-queue, linux-loader,
//! seccompiler), the second implementation of the runtime's hypervisor seam
//! (`hull_runtime::vm::Hypervisor`) and the fast path where the host has hardware KVM.
//!
//! The crate is laid out in the hull-vmm issue (#11); until it lands every VM runs on the QEMU
//! backend, and this crate holds no code.
