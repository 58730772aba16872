//! Emulated devices, one folder each: the 8250 serial console, the i8042 (only its reset line)
//! and the virtio-mmio transport with its devices.

pub mod i8042;
pub mod serial;
pub mod virtio;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// A read of a legacy device's byte-wide port register at `offset`: a one-byte access goes to
/// `read`; any other width, or an offset past 255, sees an empty bus (0xff).
pub(crate) fn read_byte_port(offset: u64, data: &mut [u8], read: impl FnOnce(u8) -> u8) {
    match (data, u8::try_from(offset)) {
        ([b], Ok(offset)) => *b = read(offset),
        (data, _) => data.fill(0xff),
    }
}

/// A write to a legacy device's byte-wide port register at `offset`: only one-byte accesses
/// reach `write`; others are dropped as real hardware would.
pub(crate) fn write_byte_port(offset: u64, data: &[u8], write: impl FnOnce(u8, u8)) {
    if let ([b], Ok(offset)) = (data, u8::try_from(offset)) {
        write(offset, *b);
    }
}

/// Why the VM stops, as the guest or the VMM decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitReason {
    /// Still running.
    Running = 0,
    /// The guest asked for a reset through the i8042 (a reboot: hull-vmm treats it as a stop).
    Reset = 1,
    /// The guest triple-faulted (Linux with `reboot=t`).
    TripleFault = 2,
    /// KVM reported an internal error or an exit hull-vmm cannot handle.
    Crash = 3,
    /// The host asked the VMM to stop (SIGTERM/SIGINT).
    Stopped = 4,
}

impl ExitReason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ExitReason::Reset,
            2 => ExitReason::TripleFault,
            3 => ExitReason::Crash,
            4 => ExitReason::Stopped,
            _ => ExitReason::Running,
        }
    }

    /// The VMM's exit status: 0 for a guest-requested stop, 1 for a crash.
    pub fn exit_code(self) -> i32 {
        match self {
            ExitReason::Crash => 1,
            _ => 0,
        }
    }
}

/// The one place a VM's end is decided: the first reason recorded wins, and the event loop is
/// woken through the eventfd.
#[derive(Debug, Clone)]
pub struct ExitSignal {
    reason: Arc<AtomicU8>,
    evt: Arc<EventFd>,
}

impl ExitSignal {
    /// A fresh signal.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            reason: Arc::new(AtomicU8::new(0)),
            evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK)?),
        })
    }

    /// Records `reason` unless another was recorded first, and wakes the event loop.
    pub fn exit(&self, reason: ExitReason) {
        let _ = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        let _ = self.evt.write(1);
    }

    /// The recorded reason.
    pub fn reason(&self) -> ExitReason {
        ExitReason::from_u8(self.reason.load(Ordering::SeqCst))
    }

    /// The eventfd the event loop watches.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_exit_reason_wins() {
        let s = ExitSignal::new().unwrap();
        assert_eq!(s.reason(), ExitReason::Running);
        s.exit(ExitReason::TripleFault);
        s.exit(ExitReason::Crash);
        assert_eq!(s.reason(), ExitReason::TripleFault);
        assert_eq!(s.eventfd().read().unwrap(), 2);
        assert_eq!(ExitReason::Crash.exit_code(), 1);
        assert_eq!(ExitReason::Reset.exit_code(), 0);
    }
}
