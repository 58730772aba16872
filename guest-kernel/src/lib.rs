//! Building a hull guest: checks on the kernel configuration and the initramfs that carries the
//! agent. The kernel itself is built by `build-kernel.sh` beside this crate.
#![warn(missing_docs)]

pub mod cpio;
pub mod elf;
pub mod initramfs;
pub mod kconfig;
pub mod lz4_legacy;
