//! Stopping the VM from inside.
//!
//! hull guests have no ACPI, so there is no power-off. The guest reboots instead: with `reboot=t` the
//! kernel triple-faults (or, with `reboot=k`, pulses the i8042 reset line) and the VMM, started
//! with `-no-reboot` (QEMU) or watching for the reset (hull-vmm), exits.

use nix::sys::reboot::{reboot, RebootMode};

/// Flushes filesystems and asks the kernel to reset the machine. Returns only if that failed.
pub fn stop_vm() -> nix::Error {
    nix::unistd::sync();
    match reboot(RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
