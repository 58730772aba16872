//! What a VM is made of, as the command line (or the runtime) gives it, checked before anything
//! is created so that every mistake gets its own message.

use std::path::PathBuf;

use crate::arch::cpuid::Feature;
use crate::layout;

/// Largest vCPU count (the hull guest kernel's `NR_CPUS`).
pub const MAX_VCPUS: u8 = 64;

/// The kernel command line hull-vmm uses when none is given: serial console, and a guest
/// reboot (`reboot=k`: i8042 reset) ends the VMM.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=-1";

/// A vsock device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// The host side's unix socket (`CONNECT <port>` in, `<uds>_<port>` out).
    pub uds: PathBuf,
    /// The guest's CID.
    pub cid: u64,
}

/// Everything hull-vmm needs to boot a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmConfig {
    /// Kernel: ELF vmlinux (PVH or 64-bit entry) or bzImage.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (device words are appended).
    pub cmdline: String,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Console output file; stdout when `None`.
    pub console: Option<PathBuf>,
    /// vsock device.
    pub vsock: Option<VsockConfig>,
    /// CPUID features hidden from the guest.
    pub cpuid_clear: Vec<Feature>,
    /// Enter an ELF kernel at its 64-bit entry even when it has a PVH note.
    pub linux64: bool,
    /// Install the per-thread seccomp filters (off only to debug).
    pub seccomp: bool,
}

/// A configuration mistake.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// vCPU count out of range.
    #[error("{0} vCPUs requested; hull-vmm runs 1 to {MAX_VCPUS}")]
    Vcpus(u64),
    /// Too little memory.
    #[error("{0} MiB of guest memory is too little; at least {min} MiB", min = layout::MIN_MEM_MIB)]
    TooLittleMemory(u64),
    /// Too much memory.
    #[error("{0} MiB of guest memory is more than hull-vmm supports ({max} MiB)", max = layout::MAX_MEM_MIB)]
    TooMuchMemory(u64),
    /// Kernel file missing.
    #[error("kernel {0} does not exist")]
    KernelMissing(PathBuf),
    /// Initrd file missing.
    #[error("initrd {0} does not exist")]
    InitrdMissing(PathBuf),
    /// Initrd larger than RAM.
    #[error("initrd {path} is {size} bytes, larger than the guest's {mem_mib} MiB of RAM")]
    InitrdTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Guest RAM.
        mem_mib: u64,
    },
    /// The vsock CID is reserved.
    #[error("vsock CID {0} is reserved; use 3 or above")]
    Cid(u64),
    /// The vsock socket's directory is missing.
    #[error("vsock socket directory {0} does not exist")]
    VsockDir(PathBuf),
}

impl VmmConfig {
    /// A configuration with defaults for everything but the kernel.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.into(),
            vcpus: 1,
            mem_mib: 128,
            console: None,
            vsock: None,
            cpuid_clear: Vec::new(),
            linux64: false,
            seccomp: true,
        }
    }

    /// Guest RAM in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }

    /// Checks what can be checked without KVM.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(ConfigError::Vcpus(self.vcpus.into()));
        }
        if self.mem_mib < layout::MIN_MEM_MIB {
            return Err(ConfigError::TooLittleMemory(self.mem_mib));
        }
        if self.mem_mib > layout::MAX_MEM_MIB {
            return Err(ConfigError::TooMuchMemory(self.mem_mib));
        }
        if !self.kernel.is_file() {
            return Err(ConfigError::KernelMissing(self.kernel.clone()));
        }
        if let Some(initrd) = &self.initrd {
            let size = std::fs::metadata(initrd)
                .ok()
                .filter(std::fs::Metadata::is_file)
                .ok_or_else(|| ConfigError::InitrdMissing(initrd.clone()))?
                .len();
            if size > self.mem_bytes() {
                return Err(ConfigError::InitrdTooLarge {
                    path: initrd.clone(),
                    size,
                    mem_mib: self.mem_mib,
                });
            }
        }
        if let Some(v) = &self.vsock {
            if v.cid < 3 || v.cid > u64::from(u32::MAX) {
                return Err(ConfigError::Cid(v.cid));
            }
            let dir = v.uds.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(ConfigError::VsockDir(dir.to_owned()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mistake_has_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"x").unwrap();
        let mut c = VmmConfig::new(&kernel);
        c.validate().unwrap();

        c.vcpus = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Vcpus(0))));
        c.vcpus = 65;
        assert!(matches!(c.validate(), Err(ConfigError::Vcpus(65))));
        c.vcpus = 2;
        c.mem_mib = 8;
        assert!(matches!(c.validate(), Err(ConfigError::TooLittleMemory(8))));
        c.mem_mib = 16;
        c.validate().unwrap();

        let initrd = dir.path().join("initrd");
        std::fs::File::create(&initrd)
            .unwrap()
            .set_len(17 << 20)
            .unwrap();
        c.initrd = Some(initrd);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::InitrdTooLarge { .. })
        ));
        c.initrd = Some(dir.path().join("missing"));
        assert!(matches!(c.validate(), Err(ConfigError::InitrdMissing(_))));
        c.initrd = None;

        c.kernel = dir.path().join("nokernel");
        assert!(matches!(c.validate(), Err(ConfigError::KernelMissing(_))));
        c.kernel = kernel;

        c.vsock = Some(VsockConfig {
            uds: dir.path().join("v.sock"),
            cid: 2,
        });
        assert!(matches!(c.validate(), Err(ConfigError::Cid(2))));
        c.vsock = Some(VsockConfig {
            uds: dir.path().join("nodir/v.sock"),
            cid: 3,
        });
        assert!(matches!(c.validate(), Err(ConfigError::VsockDir(_))));
    }
}
