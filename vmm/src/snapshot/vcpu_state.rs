//! One vCPU's architectural state as KVM holds it — registers, special registers, FPU, XSAVE,
//! XCRs, MSRs, LAPIC, MP state and pending events — read on the paused vCPU's own thread and
//! written back into a fresh vCPU (with the same CPUID) before it first runs.
//!
//! MSRs are the ones `KVM_GET_MSR_INDEX_LIST` names that this vCPU lets us read; one KVM
//! refuses to set back is skipped with a note on stderr rather than failing the restore (the
//! list differs between KVM flavours: PVM's is not hardware KVM's).

use kvm_bindings::{
    kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events,
    kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// The x87/SSE state of `KVM_GET_FPU` (kvm-bindings does not serialise `kvm_fpu`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FpuState {
    fpr: [[u8; 16]; 8],
    fcw: u16,
    fsw: u16,
    ftwx: u8,
    last_opcode: u16,
    last_ip: u64,
    last_dp: u64,
    xmm: [[u8; 16]; 16],
    mxcsr: u32,
}

impl From<&kvm_fpu> for FpuState {
    fn from(f: &kvm_fpu) -> Self {
        Self {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<&FpuState> for kvm_fpu {
    fn from(f: &FpuState) -> Self {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

/// A vCPU's saved state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// General registers.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers.
    pub sregs: kvm_sregs,
    /// x87/SSE state.
    pub fpu: FpuState,
    /// XSAVE area (`None` where KVM has none to give).
    pub xsave: Option<kvm_xsave>,
    /// Extended control registers (`None` where KVM has none).
    pub xcrs: Option<kvm_xcrs>,
    /// MSRs.
    pub msrs: Vec<kvm_msr_entry>,
    /// Local APIC registers.
    pub lapic: kvm_lapic_state,
    /// Running, halted, waiting for SIPI …
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts, NMIs, SMIs.
    pub events: kvm_vcpu_events,
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState")
            .field("rip", &self.regs.rip)
            .field("msrs", &self.msrs.len())
            .field("xsave", &self.xsave.is_some())
            .finish_non_exhaustive()
    }
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |e| SnapshotError::Kvm(what, e)
}

/// The MSRs of `indices` this vCPU lets us read, with their values (one ioctl each: a refused
/// one ends a batch read, so reading them one by one keeps the others).
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut out = Vec::new();
    for &index in indices {
        let mut m = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }])
        .map_err(|_| SnapshotError::Shape("cannot build an MSR list".into()))?;
        if fd.get_msrs(&mut m).map_err(kvm("read an MSR"))? == 1 {
            out.push(m.as_slice()[0]);
        }
    }
    Ok(out)
}

/// Reads the state of a vCPU that is not running (its thread is the caller).
pub fn save(fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, SnapshotError> {
    Ok(VcpuState {
        regs: fd.get_regs().map_err(kvm("read the registers"))?,
        sregs: fd.get_sregs().map_err(kvm("read the special registers"))?,
        fpu: FpuState::from(&fd.get_fpu().map_err(kvm("read the FPU"))?),
        xsave: fd.get_xsave().ok(),
        xcrs: fd.get_xcrs().ok(),
        msrs: read_msrs(fd, msr_indices)?,
        lapic: fd.get_lapic().map_err(kvm("read the LAPIC"))?,
        mp_state: fd.get_mp_state().map_err(kvm("read the MP state"))?,
        events: fd.get_vcpu_events().map_err(kvm("read the vCPU events"))?,
    })
}

/// Sets the MSRs of `msrs`; one KVM refuses is skipped (noted on stderr), the others are set.
/// Returns how many were skipped.
fn write_msrs(fd: &VcpuFd, id: u8, msrs: &[kvm_msr_entry]) -> Result<usize, SnapshotError> {
    let mut rest = msrs;
    let mut skipped = 0;
    while !rest.is_empty() {
        let list = Msrs::from_entries(rest)
            .map_err(|_| SnapshotError::Shape(format!("{} MSRs is too many", rest.len())))?;
        let n = fd.set_msrs(&list).map_err(kvm("set the MSRs"))?;
        if n >= rest.len() {
            break;
        }
        eprintln!(
            "hull-vmm: vCPU {id}: KVM refused MSR {:#x} on restore; skipped",
            rest[n].index
        );
        skipped += 1;
        rest = &rest[n + 1..];
    }
    Ok(skipped)
}

/// Writes `state` into vCPU `id` (already given its CPUID), in the order KVM needs: MP state,
/// registers, special registers, FPU/XSAVE/XCRs, LAPIC, MSRs, then the pending events.
pub fn restore(fd: &VcpuFd, id: u8, state: &VcpuState) -> Result<(), SnapshotError> {
    fd.set_mp_state(state.mp_state)
        .map_err(kvm("set the MP state"))?;
    fd.set_regs(&state.regs).map_err(kvm("set the registers"))?;
    fd.set_sregs(&state.sregs)
        .map_err(kvm("set the special registers"))?;
    fd.set_fpu(&kvm_fpu::from(&state.fpu))
        .map_err(kvm("set the FPU"))?;
    if let Some(xsave) = &state.xsave {
        // SAFETY: `xsave` is a whole `kvm_xsave` as KVM_GET_XSAVE returned it (the legacy
        // 4 KiB area, no trailing flexible array), which is what KVM_SET_XSAVE reads.
        unsafe { fd.set_xsave(xsave) }.map_err(kvm("set the XSAVE area"))?;
    }
    if let Some(xcrs) = &state.xcrs {
        fd.set_xcrs(xcrs).map_err(kvm("set the XCRs"))?;
    }
    fd.set_lapic(&state.lapic).map_err(kvm("set the LAPIC"))?;
    write_msrs(fd, id, &state.msrs)?;
    fd.set_vcpu_events(&state.events)
        .map_err(kvm("set the vCPU events"))?;
    Ok(())
}
