//! The VM-wide KVM state — the kvmclock, the in-kernel PIC pair and IOAPIC, the PIT — and the
//! writing of a whole snapshot (memory file, then state file) into a directory.

use std::fs::File;
use std::path::Path;

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use super::format::{self, Header, HULL_VERSION, MEMORY_FILE};
use super::{SnapshotError, VmState};
use crate::memory::GuestMemory;

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

/// The VM-wide state.
#[derive(Clone, Serialize, Deserialize)]
pub struct MachineState {
    /// kvmclock.
    pub clock: kvm_clock_data,
    /// PIC master, PIC slave, IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    /// The PIT.
    pub pit: kvm_pit_state2,
}

impl std::fmt::Debug for MachineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineState")
            .field("clock", &self.clock.clock)
            .finish_non_exhaustive()
    }
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |e| SnapshotError::Kvm(what, e)
}

impl MachineState {
    /// Reads it from `vm` (its vCPUs paused).
    pub fn save(vm: &VmFd) -> Result<Self, SnapshotError> {
        let mut irqchips = Vec::new();
        for chip_id in CHIPS {
            let mut c = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut c).map_err(kvm("read the irqchip"))?;
            irqchips.push(c);
        }
        Ok(Self {
            clock: vm.get_clock().map_err(kvm("read the clock"))?,
            irqchips,
            pit: vm.get_pit2().map_err(kvm("read the PIT"))?,
        })
    }

    /// The three chips, in order.
    pub fn check(&self) -> Result<(), String> {
        let ids: Vec<u32> = self.irqchips.iter().map(|c| c.chip_id).collect();
        if ids == CHIPS {
            Ok(())
        } else {
            Err(format!("interrupt controllers {ids:?}, expected {CHIPS:?}"))
        }
    }

    /// Writes it into a fresh `vm` (irqchip and PIT created, no vCPU run yet). The clock is set
    /// to the saved value: the guest sees no time pass while it was saved.
    pub fn restore(&self, vm: &VmFd) -> Result<(), SnapshotError> {
        vm.set_pit2(&self.pit).map_err(kvm("set the PIT"))?;
        for c in &self.irqchips {
            vm.set_irqchip(c).map_err(kvm("set the irqchip"))?;
        }
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        vm.set_clock(&clock).map_err(kvm("set the clock"))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io(path.to_path_buf(), e)
}

/// Writes guest RAM to `path`, region after region (the memfd's layout), with a hole for every
/// page of zeros ([`super::sparse`]); returns its length and checksum.
fn write_memory(path: &Path, mem: &GuestMemory) -> Result<(u64, u32), SnapshotError> {
    // A file there is replaced, never written into: its old data would fill the holes.
    let _ = std::fs::remove_file(path);
    let f = File::create(path).map_err(io(path))?;
    let mut parts = Vec::new();
    for region in mem.iter() {
        let size = usize::try_from(region.len()).map_err(|_| {
            SnapshotError::Shape(format!(
                "a memory region of {} bytes does not fit this host's address space",
                region.len()
            ))
        })?;
        // SAFETY: the region is a live mapping of `size` bytes that `mem` keeps alive for this
        // call. Nothing writes guest RAM while it is read here: every vCPU is paused, the event
        // loop (the in-process devices) is this thread, and a virtio-fs device is only saved
        // before its driver made any request (virtiofsd writes only into request buffers).
        parts.push(unsafe { std::slice::from_raw_parts(region.as_ptr().cast_const(), size) });
    }
    let (len, crc) = super::sparse::write(&f, &parts).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok((len, crc))
}

/// Writes a whole snapshot of `state` and `mem` into `dir` (created if missing; files there are
/// replaced, the state file last, so a directory with a state file is a whole snapshot).
/// Returns the bytes written.
pub fn write_snapshot(
    dir: &Path,
    state: &VmState,
    mem: &GuestMemory,
) -> Result<u64, SnapshotError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = std::fs::remove_file(dir.join(format::STATE_FILE));
    let (memory_len, memory_crc32) = write_memory(&dir.join(MEMORY_FILE), mem)?;
    let body = serde_json::to_vec(state).map_err(|e| SnapshotError::Body(e.to_string()))?;
    let header = Header {
        hull_version: HULL_VERSION.to_string(),
        state_len: body.len() as u64,
        state_crc32: crc32fast::hash(&body),
        memory_len,
        memory_crc32,
    };
    format::write_state(dir, &header, &body)?;
    Ok(memory_len + body.len() as u64)
}

/// Reads and checks the snapshot in `dir`: header, body checksum, memory length and checksum,
/// and that the parts fit together.
pub fn read_snapshot(dir: &Path) -> Result<VmState, SnapshotError> {
    let files = format::SnapshotFiles::open(dir)?;
    let (state, header) = read_snapshot_state(&files)?;
    files.check_memory(&header)?;
    Ok(state)
}

/// [`read_snapshot`] but for the memory checksum, which the caller checks (a restore that
/// copies the memory computes it on the way, in the same pass) or knows checked; returns the
/// header too.
pub fn read_snapshot_state(
    files: &format::SnapshotFiles,
) -> Result<(VmState, Header), SnapshotError> {
    let (header, body) = files.read_state()?;
    files.check_memory_len(&header)?;
    let state: VmState =
        serde_json::from_slice(&body).map_err(|e| SnapshotError::Body(e.to_string()))?;
    state.check(header.memory_len)?;
    Ok((state, header))
}
