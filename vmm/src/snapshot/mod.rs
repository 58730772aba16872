//! Snapshot and restore: a running VM is paused, its vCPUs, VM-wide KVM state (clock, PIC,
//! IOAPIC, PIT), devices and guest RAM are written to a directory, and a new hull-vmm process
//! (`--restore DIR`) rebuilds the same VM from it and carries on where it stopped. Guest RAM is
//! mapped from the snapshot's memory file `MAP_PRIVATE`, so VMs restored from one snapshot share
//! its pages until they write them.
//!
//! [`format`] has the files and their checked header, [`pause`] how vCPU threads are stopped at
//! a safe point, [`vcpu_state`] one vCPU's state, [`machine`] the VM-wide state and the memory
//! file, [`sparse`] how the memory file is written with holes and read by its data extents, [`control`] the control socket (`--api-sock`) that asks for a snapshot. Restoring is
//! `Vmm::restore` (in `crate::vmm`).

pub mod control;
pub mod format;
pub mod machine;
pub mod pause;
pub mod sparse;
pub mod vcpu_state;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::devices::serial::SerialSnapshot;
use crate::devices::virtio::mmio::MmioSnapshot;
pub use machine::MachineState;
pub use vcpu_state::VcpuState;

/// Taking or restoring a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing a snapshot file.
    #[error("snapshot file {0}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The state file does not start with the magic.
    #[error("not a hull snapshot (the state file does not start with HULLSNAP)")]
    NotASnapshot,
    /// Another format version.
    #[error(
        "snapshot format version {found}; this hull-vmm reads format version {supported}: make \
         the snapshot again"
    )]
    FormatVersion {
        /// In the file.
        found: u32,
        /// What this build reads.
        supported: u32,
    },
    /// Written by another hull version.
    #[error("snapshot made by hull {found}; this is hull {this}: make a new one")]
    HullVersion {
        /// In the file.
        found: String,
        /// This build.
        this: &'static str,
    },
    /// A file is shorter than its header says.
    #[error("snapshot {what} file is truncated: {found} bytes, the header says {expected}")]
    Truncated {
        /// `state` or `memory`.
        what: &'static str,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// A file is longer than its header says.
    #[error("snapshot {what} file has {found} bytes, the header says {expected}")]
    TrailingBytes {
        /// `state` or `memory`.
        what: &'static str,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes there are.
        found: u64,
    },
    /// A checksum does not match.
    #[error(
        "snapshot {what} checksum mismatch (crc32 {found:#010x}, the header says \
         {expected:#010x}): the file was changed or damaged"
    )]
    Checksum {
        /// `state` or `memory`.
        what: &'static str,
        /// In the header.
        expected: u32,
        /// Computed.
        found: u32,
    },
    /// The header is not what this build writes.
    #[error("snapshot header is invalid: {0}")]
    Header(String),
    /// The body does not parse.
    #[error("snapshot state is invalid: {0}")]
    Body(String),
    /// The parts do not fit together or this VM.
    #[error("snapshot does not fit: {0}")]
    Shape(String),
    /// A KVM call.
    #[error("KVM: cannot {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// A device cannot be saved or restored.
    #[error("device: {0}")]
    Device(String),
    /// A vCPU thread ended (the VM is stopping) before it answered.
    #[error("a vCPU thread ended before it answered (the VM is stopping)")]
    VcpuGone,
    /// A vCPU thread did not stop within 10 s (stuck in a device handler).
    #[error("a vCPU thread did not pause within 10 s")]
    VcpuTimeout,
    /// A vCPU thread answered out of turn.
    #[error("a vCPU thread answered out of turn")]
    VcpuProtocol,
}

/// What the VM is made of, as far as a restore must rebuild it the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// vCPUs.
    pub vcpus: u8,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// CPUID features hidden from the guest (their names).
    pub cpuid_clear: Vec<String>,
    /// The vsock device's guest CID, if there is one.
    pub vsock_cid: Option<u64>,
    /// The virtio-fs device's tag, if there is one.
    pub fs_tag: Option<String>,
    /// The NIC's MAC, if there is one.
    pub net_mac: Option<[u8; 6]>,
    /// Whether there is a balloon (after the other devices).
    #[serde(default)]
    pub balloon: bool,
    /// The kernel command line the guest booted with (for the record).
    pub cmdline: String,
}

/// The body of a snapshot's state file.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmState {
    /// The VM's shape.
    pub shape: Shape,
    /// One per vCPU, in id order.
    pub vcpus: Vec<VcpuState>,
    /// Clock, interrupt controllers, PIT.
    pub machine: MachineState,
    /// The serial port.
    pub serial: SerialSnapshot,
    /// The virtio-mmio devices, in bus order (vsock, fs, net, balloon).
    pub virtio: Vec<MmioSnapshot>,
}

impl VmState {
    /// Checks that the parts fit together and `memory_len` bytes of RAM: one vCPU state per
    /// vCPU, RAM of the shape's size, one virtio state per device of the shape.
    pub fn check(&self, memory_len: u64) -> Result<(), SnapshotError> {
        let s = &self.shape;
        let devices = usize::from(s.vsock_cid.is_some())
            + usize::from(s.fs_tag.is_some())
            + usize::from(s.net_mac.is_some())
            + usize::from(s.balloon);
        let problem = if s.vcpus == 0 || s.vcpus > crate::config::MAX_VCPUS {
            Some(format!("{} vCPUs", s.vcpus))
        } else if self.vcpus.len() != usize::from(s.vcpus) {
            Some(format!(
                "{} vCPU states for {} vCPUs",
                self.vcpus.len(),
                s.vcpus
            ))
        } else if s.mem_mib.checked_mul(1 << 20) != Some(memory_len) {
            Some(format!(
                "{memory_len} bytes of memory for {} MiB",
                s.mem_mib
            ))
        } else if self.virtio.len() != devices {
            Some(format!(
                "{} device states for {devices} devices",
                self.virtio.len()
            ))
        } else {
            self.machine.check().err()
        };
        problem.map_or(Ok(()), |p| Err(SnapshotError::Shape(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{kvm_fpu, kvm_irqchip};

    fn vcpu() -> VcpuState {
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        VcpuState {
            regs: Default::default(),
            sregs: Default::default(),
            fpu: vcpu_state::FpuState::from(&fpu),
            xsave: None,
            xcrs: None,
            msrs: vec![],
            lapic: Default::default(),
            mp_state: Default::default(),
            events: Default::default(),
        }
    }

    fn state(vcpus: u8) -> VmState {
        let chip = |chip_id| kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        VmState {
            shape: Shape {
                vcpus,
                mem_mib: 16,
                cpuid_clear: vec![],
                vsock_cid: None,
                fs_tag: None,
                net_mac: None,
                balloon: false,
                cmdline: String::new(),
            },
            vcpus: (0..vcpus).map(|_| vcpu()).collect(),
            machine: MachineState {
                clock: Default::default(),
                irqchips: vec![chip(0), chip(1), chip(2)],
                pit: Default::default(),
            },
            serial: serde_json::from_str(r#"{"regs":[12,0,0,1,3,96,8,176,0],"in_buffer":[]}"#)
                .unwrap(),
            virtio: vec![],
        }
    }

    #[test]
    fn a_state_round_trips_through_json_and_checks_out() {
        let s = state(2);
        let json = serde_json::to_vec(&s).unwrap();
        let back: VmState = serde_json::from_slice(&json).unwrap();
        back.check(16 << 20).unwrap();
        assert_eq!(back.shape, s.shape);
        assert_eq!(back.vcpus[1].fpu, s.vcpus[1].fpu);
        assert_eq!(kvm_fpu::from(&back.vcpus[0].fpu).mxcsr, 0x1f80);
    }

    #[test]
    fn parts_that_do_not_fit_are_named() {
        let shape_err = |s: VmState, mem: u64| match s.check(mem) {
            Err(SnapshotError::Shape(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(shape_err(state(1), 32 << 20).contains("bytes of memory for 16 MiB"));
        let mut s = state(2);
        s.vcpus.pop();
        assert!(shape_err(s, 16 << 20).contains("1 vCPU states for 2 vCPUs"));
        let mut s = state(1);
        s.shape.vsock_cid = Some(3);
        assert!(shape_err(s, 16 << 20).contains("0 device states for 1 devices"));
        let mut s = state(1);
        s.shape.balloon = true;
        assert!(shape_err(s, 16 << 20).contains("0 device states for 1 devices"));
        let mut s = state(1);
        s.machine.irqchips.swap(0, 2);
        assert!(shape_err(s, 16 << 20).contains("interrupt controllers"));
        assert!(shape_err(state(0), 16 << 20).contains("0 vCPUs"));
    }
}
