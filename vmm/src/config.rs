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

/// A virtio-fs device served by a vhost-user backend (virtiofsd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// The backend's listening socket.
    pub socket: PathBuf,
    /// The mount tag the guest sees (1 to 36 bytes).
    pub tag: String,
}

/// Longest virtio-fs tag (the config space field).
pub const FS_TAG_MAX: usize = 36;

/// A virtio-net device on a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The tap's name (created when missing; an existing one is attached to).
    pub tap: String,
    /// The guest's MAC address.
    pub mac: [u8; 6],
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
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
    /// virtio-fs device.
    pub fs: Option<FsConfig>,
    /// virtio-net device.
    pub net: Option<NetConfig>,
    /// virtio-balloon with free page reporting: memory the guest frees goes back to the host.
    pub balloon: bool,
    /// CPUID features hidden from the guest.
    pub cpuid_clear: Vec<Feature>,
    /// Enter an ELF kernel at its 64-bit entry even when it has a PVH note.
    pub linux64: bool,
    /// Install the per-thread seccomp filters (off only to debug).
    pub seccomp: bool,
    /// The control socket (pause, resume, snapshot: `crate::snapshot::control`).
    pub api_sock: Option<PathBuf>,
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
    /// The virtio-fs tag is empty, too long or holds a NUL.
    #[error("virtio-fs tag {0:?} must be 1 to {FS_TAG_MAX} bytes without NUL")]
    FsTag(String),
    /// The virtio-fs backend's socket is missing.
    #[error("virtio-fs socket {0} does not exist (start virtiofsd first)")]
    FsSocket(PathBuf),
    /// The tap name does not fit an interface name.
    #[error("tap name {0:?} must be 1 to 15 bytes without '/', NUL or whitespace")]
    TapName(String),
    /// The MAC is multicast or all zeros.
    #[error("MAC {0} is not a unicast address")]
    Mac(String),
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
            fs: None,
            net: None,
            balloon: false,
            cpuid_clear: Vec::new(),
            linux64: false,
            seccomp: true,
            api_sock: None,
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
        if let Some(f) = &self.fs {
            if f.tag.is_empty() || f.tag.len() > FS_TAG_MAX || f.tag.contains('\0') {
                return Err(ConfigError::FsTag(f.tag.clone()));
            }
            if !f.socket.exists() {
                return Err(ConfigError::FsSocket(f.socket.clone()));
            }
        }
        if let Some(n) = &self.net {
            let bad = |c: char| c == '/' || c == '\0' || c.is_whitespace();
            if n.tap.is_empty() || n.tap.len() > 15 || n.tap.contains(bad) {
                return Err(ConfigError::TapName(n.tap.clone()));
            }
            if n.mac[0] & 1 != 0 || n.mac == [0; 6] {
                let text: Vec<String> = n.mac.iter().map(|b| format!("{b:02x}")).collect();
                return Err(ConfigError::Mac(text.join(":")));
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
        c.vsock = None;

        let socket = dir.path().join("fs.sock");
        c.fs = Some(FsConfig {
            socket: socket.clone(),
            tag: "hull".into(),
        });
        assert!(matches!(c.validate(), Err(ConfigError::FsSocket(_))));
        std::fs::write(&socket, b"").unwrap();
        c.validate().unwrap();
        for tag in ["", "a\0b", &"x".repeat(37)] {
            c.fs.as_mut().unwrap().tag = tag.into();
            assert!(
                matches!(c.validate(), Err(ConfigError::FsTag(_))),
                "{tag:?}"
            );
        }
        c.fs = None;

        let mac = parse_mac("52:54:00:12:34:56").unwrap();
        c.net = Some(NetConfig {
            tap: "tap0".into(),
            mac,
        });
        c.validate().unwrap();
        for tap in ["", "a/b", "sixteen-chars-xx", "a b"] {
            c.net.as_mut().unwrap().tap = tap.into();
            assert!(
                matches!(c.validate(), Err(ConfigError::TapName(_))),
                "{tap:?}"
            );
        }
        c.net = Some(NetConfig {
            tap: "tap0".into(),
            mac: parse_mac("01:00:5e:00:00:01").unwrap(),
        });
        assert!(matches!(c.validate(), Err(ConfigError::Mac(_))));
    }

    #[test]
    fn macs_are_parsed_strictly() {
        assert_eq!(
            parse_mac("52:54:00:ab:CD:ef"),
            Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef])
        );
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
