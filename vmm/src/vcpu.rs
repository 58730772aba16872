//! One thread per vCPU: `KVM_RUN` in a loop, port I/O and MMIO exits dispatched to the buses,
//! stop conditions (triple fault, reset, KVM errors) reported through the [`ExitSignal`]; between
//! two `KVM_RUN`s the thread serves pause requests (snapshots, `crate::snapshot::pause`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::bus::Bus;
use crate::devices::{ExitReason, ExitSignal};

/// Exit counters for one VM, all vCPUs together (for the benchmark and for debugging).
#[derive(Debug, Default)]
pub struct ExitStats {
    /// Port reads.
    pub io_in: AtomicU64,
    /// Port writes.
    pub io_out: AtomicU64,
    /// MMIO reads.
    pub mmio_read: AtomicU64,
    /// MMIO writes.
    pub mmio_write: AtomicU64,
    /// Accesses nothing answered.
    pub unclaimed: AtomicU64,
    /// Everything else (HLT, interrupts, system events, errors).
    pub other: AtomicU64,
}

impl ExitStats {
    /// One line: `io_in=… io_out=… mmio_read=… mmio_write=… unclaimed=… other=… total=…`.
    pub fn summary(&self) -> String {
        let v = [
            ("io_in", &self.io_in),
            ("io_out", &self.io_out),
            ("mmio_read", &self.mmio_read),
            ("mmio_write", &self.mmio_write),
            ("unclaimed", &self.unclaimed),
            ("other", &self.other),
        ];
        let total: u64 = v
            .iter()
            .filter(|(n, _)| *n != "unclaimed")
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum();
        let mut s: Vec<String> = v
            .iter()
            .map(|(n, c)| format!("{n}={}", c.load(Ordering::Relaxed)))
            .collect();
        s.push(format!("total={total}"));
        s.join(" ")
    }
}

/// A vCPU and what its exits reach.
#[derive(Debug)]
pub struct Vcpu {
    /// KVM's vCPU.
    pub fd: VcpuFd,
    /// Its index.
    pub id: u8,
    /// Port-I/O devices.
    pub pio: Arc<Bus>,
    /// MMIO devices.
    pub mmio: Arc<Bus>,
    /// Where a stop is reported.
    pub exit: ExitSignal,
    /// Exit counters.
    pub stats: Arc<ExitStats>,
    /// Pause requests from the event loop (snapshots).
    pub control: crate::snapshot::pause::VcpuSide,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Vcpu {
    /// Where the vCPU was, in one line, for a stop nobody expected (a triple fault): instruction
    /// and stack pointers, the control registers, EFER, and the descriptor tables' bases.
    fn state_line(&self) -> String {
        let regs = match self.fd.get_regs() {
            Ok(r) => format!("rip={:#x} rsp={:#x} rflags={:#x}", r.rip, r.rsp, r.rflags),
            Err(e) => format!("registers unreadable ({e})"),
        };
        let sregs = match self.fd.get_sregs() {
            Ok(s) => format!(
                "cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x} idt={:#x}/{:#x} gdt={:#x}/{:#x}",
                s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector, s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit
            ),
            Err(e) => format!("special registers unreadable ({e})"),
        };
        format!("{regs} {sregs}")
    }

    /// Runs until the VM stops; returns why this vCPU stopped.
    pub fn run(mut self) -> ExitReason {
        loop {
            if self.exit.reason() != ExitReason::Running {
                return self.exit.reason();
            }
            self.control.check(&mut self.fd);
            let reason = match self.fd.run() {
                Ok(VcpuExit::IoOut(port, data)) => {
                    bump(&self.stats.io_out);
                    if !self.pio.write(u64::from(port), data) {
                        bump(&self.stats.unclaimed);
                    }
                    None
                }
                Ok(VcpuExit::IoIn(port, data)) => {
                    bump(&self.stats.io_in);
                    if !self.pio.read(u64::from(port), data) {
                        bump(&self.stats.unclaimed);
                        data.fill(0xff);
                    }
                    None
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    bump(&self.stats.mmio_read);
                    if !self.mmio.read(addr, data) {
                        bump(&self.stats.unclaimed);
                        data.fill(0xff);
                    }
                    None
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    bump(&self.stats.mmio_write);
                    if !self.mmio.write(addr, data) {
                        bump(&self.stats.unclaimed);
                    }
                    None
                }
                Ok(VcpuExit::Shutdown) => {
                    bump(&self.stats.other);
                    eprintln!(
                        "hull-vmm: vCPU {} triple fault: {}",
                        self.id,
                        self.state_line()
                    );
                    Some(ExitReason::TripleFault)
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    bump(&self.stats.other);
                    eprintln!("hull-vmm: vCPU {} system event {kind}", self.id);
                    Some(ExitReason::Reset)
                }
                Ok(VcpuExit::Hlt) => {
                    bump(&self.stats.other);
                    // The in-kernel LAPIC handles HLT; reaching here means it has no irqchip.
                    eprintln!("hull-vmm: vCPU {} halted", self.id);
                    Some(ExitReason::Crash)
                }
                Ok(VcpuExit::InternalError) => {
                    bump(&self.stats.other);
                    let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
                    eprintln!(
                        "hull-vmm: vCPU {}: KVM internal error (emulation failure?) at rip {rip:#x}",
                        self.id
                    );
                    Some(ExitReason::Crash)
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    bump(&self.stats.other);
                    eprintln!(
                        "hull-vmm: vCPU {}: entry failed (reason {reason:#x}, cpu {cpu})",
                        self.id
                    );
                    Some(ExitReason::Crash)
                }
                Ok(VcpuExit::Intr | VcpuExit::IrqWindowOpen) => {
                    bump(&self.stats.other);
                    None
                }
                Ok(other) => {
                    bump(&self.stats.other);
                    eprintln!("hull-vmm: vCPU {}: unexpected exit {other:?}", self.id);
                    Some(ExitReason::Crash)
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
                Err(e) => {
                    eprintln!("hull-vmm: vCPU {}: KVM_RUN failed: {e}", self.id);
                    Some(ExitReason::Crash)
                }
            };
            if let Some(reason) = reason {
                self.exit.exit(reason);
                return reason;
            }
        }
    }
}
