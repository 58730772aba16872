//! The hypervisor seam: "a VM for one pod", whatever runs it.
//!
//! A [`Hypervisor`] starts a [`Vm`] from a [`VmConfig`]; the rest of hull only sees the running VM's
//! console, its sockets and its exit. Backends: [`hull_vmm`] (ours, where the host has hardware
//! KVM) and QEMU ([`qemu`], runs everywhere, KVM or TCG). Both can run their VMM jailed
//! ([`jailed`], [`Jailable`]).

pub mod accel;
pub mod balloon;
pub mod console;
pub mod hull_vmm;
pub mod jailed;
pub mod output;
pub mod process;
pub mod qemu;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::images::GuestImages;

pub use accel::{Accel, AccelChoice};
pub use jailed::{JailSettings, Jailable};

/// Largest vCPU count a pod may ask for (the guest kernel's `NR_CPUS`).
pub const MAX_VCPUS: u32 = 64;
/// Smallest guest RAM that boots the hull kernel with room for a workload.
pub const MIN_MEMORY_MIB: u32 = 64;

/// Longest network interface name Linux accepts (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hull_protocol::network::format_mac(self.0))
    }
}

impl std::str::FromStr for MacAddr {
    type Err = VmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hull_protocol::network::parse_mac(s)
            .map(Self)
            .map_err(VmError::InvalidMac)
    }
}

/// Everything a backend needs to boot one pod's VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel and initramfs.
    pub images: GuestImages,
    /// Extra kernel command-line words, after the backend's own (console, reboot behaviour).
    pub cmdline: Vec<String>,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB; always a shared memfd so vhost-user backends can map it.
    pub memory_mib: u32,
    /// Devices on virtio-mmio.
    pub devices: Vec<Device>,
    /// The VM's private directory: console log, VMM log, sockets. It must exist.
    pub run_dir: PathBuf,
}

/// A device attached to the VM over virtio-mmio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// virtio-fs served by a vhost-user backend (virtiofsd) listening on `socket`.
    VhostUserFs {
        /// The backend's socket.
        socket: PathBuf,
        /// The mount tag the guest uses.
        tag: String,
    },
    /// virtio-vsock served by a vhost-user backend listening on `socket` (QEMU).
    VhostUserVsock {
        /// The backend's socket.
        socket: PathBuf,
    },
    /// virtio-vsock served by the VMM itself, with no backend process (hull-vmm): the host
    /// connects to the hybrid socket [`Vm::vsock_uds`] names. See [`Hypervisor::serves_vsock`].
    Vsock,
    /// A virtio-net NIC on a tap that the VMM creates by name and owns (the tap goes away with the
    /// VMM). The VMM process runs in `netns`, the pod's network namespace, so the tap is born there.
    Net {
        /// The tap's name (at most 15 bytes).
        tap: String,
        /// The guest NIC's MAC address.
        mac: MacAddr,
        /// The network namespace (a path such as `/var/run/netns/cni-…`).
        netns: PathBuf,
    },
    /// virtio-balloon with free page reporting and deflate-on-OOM: the host pages behind memory
    /// the guest frees go back to the host within seconds (docs/balloon.md). No backing.
    Balloon,
}

/// Starting or running a VM failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The kernel image is not there.
    #[error("guest kernel {0} does not exist (run the set-up, or set HULL_KERNEL)")]
    KernelMissing(PathBuf),
    /// The initramfs is not there.
    #[error("guest initramfs {0} does not exist (run the set-up, or set HULL_INITRAMFS)")]
    InitramfsMissing(PathBuf),
    /// The VMM binary is not there.
    #[error("VMM binary {0} not found (install qemu-system-x86, or set HULL_QEMU)")]
    VmmMissing(PathBuf),
    /// The run directory is not there.
    #[error("VM run directory {0} does not exist")]
    RunDirMissing(PathBuf),
    /// A size is out of range.
    #[error("invalid VM sizing: {0}")]
    InvalidSizing(String),
    /// A device is described wrongly.
    #[error("invalid device: {0}")]
    InvalidDevice(String),
    /// A NIC's MAC address is not one.
    #[error("invalid device: bad MAC address")]
    InvalidMac(#[source] hull_protocol::network::NetworkError),
    /// A device's backing file or socket is not there.
    #[error("device backing {0} does not exist")]
    DeviceMissing(PathBuf),
    /// The VMM's jail could not be set up.
    #[error("cannot jail the VMM")]
    Jail(#[from] crate::jail::JailError),
    /// The VMM process could not be started.
    #[error("cannot start {0}")]
    Spawn(PathBuf, #[source] std::io::Error),
    /// Waiting for or signalling the VMM failed.
    #[error("cannot supervise the VMM process")]
    Process(#[source] std::io::Error),
    /// The console log could not be read.
    #[error("cannot read the console log {0}")]
    Console(PathBuf, #[source] std::io::Error),
    /// The VMM exited before the guest printed what we waited for. (The message names no log:
    /// the run directory holding it is the caller's to keep or to point at.)
    #[error("the VMM exited ({status}) before the guest was ready")]
    ExitedEarly {
        /// How it exited.
        status: ExitStatus,
        /// Where its log is.
        log: PathBuf,
    },
    /// The VMM stopped the guest for good (and was killed for it).
    #[error("the VMM stopped the guest: {line}")]
    Stopped {
        /// What the VMM said.
        line: String,
    },
    /// The guest did not print what we waited for in time.
    #[error("no {what:?} on the console within {timeout:?}")]
    Timeout {
        /// The text waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The console log.
        console: PathBuf,
    },
}

impl VmConfig {
    /// Checks what can be checked before a VMM is started, so errors name the missing piece.
    pub fn validate(&self) -> Result<(), VmError> {
        if !self.images.kernel.is_file() {
            return Err(VmError::KernelMissing(self.images.kernel.clone()));
        }
        if !self.images.initramfs.is_file() {
            return Err(VmError::InitramfsMissing(self.images.initramfs.clone()));
        }
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(VmError::InvalidSizing(format!(
                "{} vCPUs (1..={MAX_VCPUS})",
                self.vcpus
            )));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(VmError::InvalidSizing(format!(
                "{} MiB of memory (at least {MIN_MEMORY_MIB})",
                self.memory_mib
            )));
        }
        if !self.run_dir.is_dir() {
            return Err(VmError::RunDirMissing(self.run_dir.clone()));
        }
        for device in &self.devices {
            let backing = match device {
                Device::VhostUserFs { socket, .. } | Device::VhostUserVsock { socket } => socket,
                Device::Vsock | Device::Balloon => continue,
                Device::Net { tap, netns, .. } => {
                    if tap.is_empty()
                        || tap.len() > MAX_IFNAME_LEN
                        || !tap
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    {
                        return Err(VmError::InvalidDevice(format!("tap name {tap:?}")));
                    }
                    netns
                }
            };
            if !backing.exists() {
                return Err(VmError::DeviceMissing(backing.clone()));
            }
        }
        let nics = self
            .devices
            .iter()
            .filter(|d| matches!(d, Device::Net { .. }));
        if nics.count() > 1 {
            return Err(VmError::InvalidDevice(
                "more than one NIC (one per pod)".to_owned(),
            ));
        }
        let balloons = self.devices.iter().filter(|d| **d == Device::Balloon);
        if balloons.count() > 1 {
            return Err(VmError::InvalidDevice("more than one balloon".to_owned()));
        }
        Ok(())
    }

    /// The network namespace the VMM must run in: the one its NIC's tap lives in, if it has a NIC.
    pub fn netns(&self) -> Option<&Path> {
        self.devices.iter().find_map(|d| match d {
            Device::Net { netns, .. } => Some(netns.as_path()),
            _ => None,
        })
    }
}

/// A backend that can start VMs.
pub trait Hypervisor: std::fmt::Debug {
    /// A short name for logs and benchmark figures (`qemu-tcg`, `qemu-kvm`, `hull-vmm`).
    fn name(&self) -> String;
    /// Validates `config` and boots the VM. Returns once the VMM process runs.
    fn start(&self, config: &VmConfig) -> Result<Box<dyn Vm>, VmError>;
    /// Whether the VMM serves vsock itself ([`Device::Vsock`]); otherwise it needs a vhost-user
    /// backend process ([`Device::VhostUserVsock`]).
    fn serves_vsock(&self) -> bool {
        false
    }
    /// hull-vmm, the one backend that snapshots and restores VMs (pod templates); `None` for
    /// the others.
    fn as_hull_vmm(&self) -> Option<&hull_vmm::HullVmm> {
        None
    }
}

/// A running VM. Dropping it stops the VMM (killing it if need be) and reaps it.
pub trait Vm: Send + Sync + std::fmt::Debug {
    /// The VMM's process id.
    fn pid(&self) -> u32;
    /// The file the guest's serial console is written to.
    fn console_path(&self) -> &Path;
    /// The VMM's own log (its stderr).
    fn log_path(&self) -> &Path;
    /// Waits up to `timeout` for the VMM to exit; `None` if it still runs.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, VmError>;
    /// Asks the VMM to stop (SIGTERM), kills it after `grace`, and reaps it.
    fn stop(&mut self, grace: Duration) -> Result<ExitStatus, VmError>;
    /// The hybrid vsock socket the host connects to, when the VMM serves vsock itself (hull-vmm,
    /// jailed or not); `None` when a vhost-user backend does (QEMU), whose socket it is then.
    fn vsock_uds(&self) -> Option<&Path> {
        None
    }
    /// The line with which the VMM said it stopped the guest for good (see
    /// [`output::FATAL_MARKERS`]); such a VMM is killed and counts as exited.
    fn fatal(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_and_print_in_the_usual_form() {
        let mac: MacAddr = "02:42:0A:58:00:ff".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x42, 0x0a, 0x58, 0x00, 0xff]);
        assert_eq!(mac.to_string(), "02:42:0a:58:00:ff");
        for bad in [
            "",
            "02:42:0a:58:00",
            "02:42:0a:58:00:ff:01",
            "2:42:0a:58:00:ff",
            "zz:42:0a:58:00:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} parsed");
        }
    }

    fn config_with(devices: Vec<Device>) -> (VmConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image");
        std::fs::write(&file, b"x").unwrap();
        let config = VmConfig {
            images: GuestImages {
                kernel: file.clone(),
                initramfs: file,
            },
            cmdline: vec![],
            vcpus: 1,
            memory_mib: 128,
            devices,
            run_dir: dir.path().to_owned(),
        };
        (config, dir)
    }

    fn nic(tap: &str, netns: &str) -> Device {
        Device::Net {
            tap: tap.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            netns: netns.into(),
        }
    }

    #[test]
    fn a_nic_names_its_netns_and_one_valid_tap() {
        let (config, _dir) = config_with(vec![nic("hull0", "/proc/self/ns/net")]);
        config.validate().unwrap();
        assert_eq!(config.netns(), Some(Path::new("/proc/self/ns/net")));

        for tap in ["", "a-name-that-is-too-long", "tap,x", "tap/0"] {
            let (config, _dir) = config_with(vec![nic(tap, "/proc/self/ns/net")]);
            assert!(
                matches!(config.validate(), Err(VmError::InvalidDevice(_))),
                "{tap:?}"
            );
        }
        let (config, _dir) = config_with(vec![nic("hull0", "/nonexistent/netns")]);
        assert!(matches!(config.validate(), Err(VmError::DeviceMissing(_))));
        let (config, _dir) = config_with(vec![
            nic("hull0", "/proc/self/ns/net"),
            nic("hull1", "/proc/self/ns/net"),
        ]);
        assert!(matches!(config.validate(), Err(VmError::InvalidDevice(_))));
    }

    #[test]
    fn one_balloon_at_most() {
        let (config, _dir) = config_with(vec![Device::Balloon]);
        config.validate().unwrap();
        let (config, _dir) = config_with(vec![Device::Balloon, Device::Balloon]);
        assert!(matches!(config.validate(), Err(VmError::InvalidDevice(_))));
    }
}
