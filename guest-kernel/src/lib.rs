//! Building a hull guest: checks on the kernel configuration and the initramfs that carries the
//! agent. The kernel itself is built by `build-kernel.sh` beside this crate.

pub mod cpio;
pub mod initramfs;
pub mod kconfig;
