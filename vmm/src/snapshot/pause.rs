//! Pausing vCPUs at a safe point. Each vCPU thread owns its `VcpuFd`, so the thread itself
//! reads its state: the event loop sends it a request over a channel and kicks it out of
//! `KVM_RUN` with a signal (SIGRTMIN, whose handler does nothing: the ioctl returns `EINTR`),
//! repeating the kick until the thread answers, so a kick that lands between two `KVM_RUN`s is
//! not lost. A paused thread first completes the exit it was handling (one `KVM_RUN` with
//! `immediate_exit` set finishes a pending port or MMIO read inside KVM without entering the
//! guest), then waits for `Save` or `Resume`.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use kvm_ioctls::VcpuFd;

use super::vcpu_state::{self, VcpuState};
use super::SnapshotError;

/// What the event loop asks of a vCPU thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Leave `KVM_RUN` and wait.
    Pause,
    /// (Paused) read the vCPU's state.
    Save,
    /// (Paused) carry on.
    Resume,
}

/// What a vCPU thread answers.
#[derive(Debug)]
pub enum Reply {
    /// It stopped running the guest.
    Paused,
    /// Its state, or why it could not be read.
    Saved(Result<Box<VcpuState>, SnapshotError>),
}

/// The vCPU thread's end of the channels.
#[derive(Debug)]
pub struct VcpuSide {
    requests: Receiver<Request>,
    replies: Sender<Reply>,
    msr_indices: std::sync::Arc<Vec<u32>>,
}

/// The event loop's end of one vCPU's channels.
#[derive(Debug)]
pub struct LoopSide {
    requests: Sender<Request>,
    replies: Receiver<Reply>,
    thread: Option<libc::pthread_t>,
}

/// A linked pair of ends; the vCPU saves the MSRs of `msr_indices`.
pub fn pair(msr_indices: std::sync::Arc<Vec<u32>>) -> (VcpuSide, LoopSide) {
    let (req_tx, req_rx) = channel();
    let (rep_tx, rep_rx) = channel();
    (
        VcpuSide {
            requests: req_rx,
            replies: rep_tx,
            msr_indices,
        },
        LoopSide {
            requests: req_tx,
            replies: rep_rx,
            thread: None,
        },
    )
}

/// The kick signal.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Installs the do-nothing handler of the kick signal (process-wide, once, before the vCPU
/// threads start). Without `SA_RESTART`, so `KVM_RUN` returns `EINTR`.
pub fn install_kick_handler() -> std::io::Result<()> {
    // SAFETY: sigaction is plain data, fully initialised here (zeroed, then the handler and an
    // empty mask); `on_kick` is async-signal-safe (it does nothing).
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl VcpuSide {
    /// Called by the vCPU loop before each `KVM_RUN`: serves a pause request if there is one,
    /// returning once the event loop resumes the vCPU (or went away).
    pub fn check(&self, fd: &mut VcpuFd) {
        if !matches!(self.requests.try_recv(), Ok(Request::Pause)) {
            return;
        }
        // Finish the exit just handled (a port/MMIO read's data goes into the registers) without
        // entering the guest.
        fd.set_kvm_immediate_exit(1);
        let _ = fd.run();
        fd.set_kvm_immediate_exit(0);
        if self.replies.send(Reply::Paused).is_err() {
            return;
        }
        while let Ok(req) = self.requests.recv() {
            match req {
                Request::Save => {
                    let r = vcpu_state::save(fd, &self.msr_indices).map(Box::new);
                    if self.replies.send(Reply::Saved(r)).is_err() {
                        return;
                    }
                }
                Request::Resume => return,
                Request::Pause => {
                    let _ = self.replies.send(Reply::Paused);
                }
            }
        }
    }
}

impl LoopSide {
    /// Records the thread to kick.
    pub fn set_thread(&mut self, thread: libc::pthread_t) {
        self.thread = Some(thread);
    }

    /// Pauses the vCPU: sends the request and kicks until it answers (10 s at most).
    pub fn pause(&self) -> Result<(), SnapshotError> {
        // An answer left over from an earlier pause that failed half-way is not this one's.
        while self.replies.try_recv().is_ok() {}
        self.requests
            .send(Request::Pause)
            .map_err(|_| SnapshotError::VcpuGone)?;
        for _ in 0..10_000 {
            if let Some(t) = self.thread {
                // SAFETY: `t` is a thread of this process that is joined only after the event
                // loop ends; the signal has a do-nothing handler.
                unsafe { libc::pthread_kill(t, kick_signal()) };
            }
            match self.replies.recv_timeout(Duration::from_millis(1)) {
                Ok(Reply::Paused) => return Ok(()),
                Ok(Reply::Saved(_)) => return Err(SnapshotError::VcpuProtocol),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(SnapshotError::VcpuGone),
            }
        }
        Err(SnapshotError::VcpuTimeout)
    }

    /// Reads the paused vCPU's state.
    pub fn save(&self) -> Result<VcpuState, SnapshotError> {
        self.requests
            .send(Request::Save)
            .map_err(|_| SnapshotError::VcpuGone)?;
        match self.replies.recv() {
            Ok(Reply::Saved(r)) => r.map(|b| *b),
            Ok(Reply::Paused) => Err(SnapshotError::VcpuProtocol),
            Err(_) => Err(SnapshotError::VcpuGone),
        }
    }

    /// Lets the paused vCPU run again.
    pub fn resume(&self) {
        let _ = self.requests.send(Request::Resume);
    }
}
