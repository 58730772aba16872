//! Where the guest kernel and initramfs live.

use std::path::{Path, PathBuf};

/// Installation directory of the guest images.
pub const INSTALL_DIR: &str = "/usr/local/share/hull";

/// The kernel and initramfs a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImages {
    /// PVH vmlinux or bzImage; both VMMs boot either.
    pub kernel: PathBuf,
    /// gzip-compressed cpio with hull-agent as `/init`.
    pub initramfs: PathBuf,
}

/// The ELF kernel with a PVH note, preferred when installed: QEMU and hull-vmm enter it directly
/// in 32-bit protected mode, which skips the bzImage's real-mode loader and its decompression
/// (under TCG a boot to ready takes ~0.87× the time), and QEMU maps the file, so its pages are
/// shared by every pod instead of each QEMU holding a decompressed copy (docs/guest.md).
pub const PVH_KERNEL: &str = "vmlinux";
/// The compressed kernel, the fallback when no vmlinux is installed.
pub const BZIMAGE_KERNEL: &str = "vmlinuz";

impl GuestImages {
    /// The images under `dir`: `vmlinux` when it is there, else `vmlinuz`; `initramfs.img`.
    pub fn in_dir(dir: &Path) -> Self {
        let pvh = dir.join(PVH_KERNEL);
        Self {
            kernel: if pvh.is_file() {
                pvh
            } else {
                dir.join(BZIMAGE_KERNEL)
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pvh_vmlinux_is_preferred_and_the_bzimage_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        // Neither: the bzImage's name, so a missing-kernel error names the usual file.
        assert_eq!(
            GuestImages::in_dir(dir.path()).kernel,
            dir.path().join("vmlinuz")
        );
        std::fs::write(dir.path().join("vmlinuz"), b"bz").unwrap();
        assert_eq!(
            GuestImages::in_dir(dir.path()).kernel,
            dir.path().join("vmlinuz")
        );
        std::fs::write(dir.path().join("vmlinux"), b"elf").unwrap();
        let images = GuestImages::in_dir(dir.path());
        assert_eq!(images.kernel, dir.path().join("vmlinux"));
        assert_eq!(images.initramfs, dir.path().join("initramfs.img"));
    }
}
