//! Where the guest kernel and initramfs live.

use std::path::{Path, PathBuf};

/// Installation directory of the guest images.
pub const INSTALL_DIR: &str = "/usr/local/share/hull";

/// The kernel and initramfs a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImages {
    /// bzImage (QEMU) or PVH vmlinux.
    pub kernel: PathBuf,
    /// gzip-compressed cpio with hull-agent as `/init`.
    pub initramfs: PathBuf,
}

impl GuestImages {
    /// The installed images under `dir` (`vmlinuz`, `initramfs.img`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            kernel: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.img"),
        }
    }

    /// The installed images, each overridable with `HULL_KERNEL` / `HULL_INITRAMFS`.
    pub fn from_env() -> Self {
        let installed = Self::in_dir(Path::new(INSTALL_DIR));
        Self {
            kernel: std::env::var_os("HULL_KERNEL").map_or(installed.kernel, PathBuf::from),
            initramfs: std::env::var_os("HULL_INITRAMFS")
                .map_or(installed.initramfs, PathBuf::from),
        }
    }
}
