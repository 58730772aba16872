//! PID 1 reaps every child: container processes, exec'd processes, helpers that exit, and orphans
//! the kernel re-parents to us. One task waits on SIGCHLD and collects every exit; whoever cares
//! about a pid registers for it and gets its [`ExitInfo`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal.
    pub exit_status: i32,
    /// The killing signal, 0 for a normal exit.
    pub signal: u32,
    /// Wall-clock time of the reap, ns since the epoch.
    pub exited_at_unix_nanos: u64,
}

impl ExitInfo {
    fn from_status(status: WaitStatus) -> Option<(Pid, Self)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let (pid, exit_status, signal) = match status {
            WaitStatus::Exited(pid, code) => (pid, code, 0),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32, sig as u32),
            _ => return None,
        };
        Some((
            pid,
            Self {
                exit_status,
                signal,
                exited_at_unix_nanos: now,
            },
        ))
    }
}

/// Exits of pids nobody registered for yet are kept (bounded): a fast process can exit before its
/// creator registers it.
const MAX_UNCLAIMED: usize = 4096;

/// Exit statuses of children, delivered per pid.
#[derive(Debug, Default)]
pub struct Reaper {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    watchers: HashMap<i32, watch::Sender<Option<ExitInfo>>>,
    unclaimed: HashMap<i32, ExitInfo>,
    unclaimed_order: VecDeque<i32>,
}

impl Reaper {
    /// A receiver that holds `Some(exit)` once `pid` has exited.
    pub fn register(&self, pid: i32) -> watch::Receiver<Option<ExitInfo>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let early = state.unclaimed.remove(&pid);
        let (tx, rx) = watch::channel(early);
        if early.is_none() {
            state.watchers.insert(pid, tx);
        }
        rx
    }

    /// Records one exit.
    fn deliver(&self, pid: Pid, exit: ExitInfo) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = state.watchers.remove(&pid.as_raw()) {
            let _ = tx.send(Some(exit));
            return;
        }
        if state.unclaimed.insert(pid.as_raw(), exit).is_none() {
            state.unclaimed_order.push_back(pid.as_raw());
        }
        while state.unclaimed_order.len() > MAX_UNCLAIMED {
            if let Some(old) = state.unclaimed_order.pop_front() {
                state.unclaimed.remove(&old);
            }
        }
    }

    /// Collects every exited child without blocking.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if let Some((pid, exit)) = ExitInfo::from_status(status) {
                        self.deliver(pid, exit);
                    }
                }
            }
        }
    }

    /// Reaps on every SIGCHLD, forever.
    pub async fn run(self: Arc<Self>) -> std::io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        loop {
            self.reap_all();
            sigchld.recv().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> ExitInfo {
        ExitInfo {
            exit_status: code,
            signal: 0,
            exited_at_unix_nanos: 1,
        }
    }

    #[test]
    fn registered_pid_gets_its_exit() {
        let r = Reaper::default();
        let rx = r.register(10);
        assert_eq!(*rx.borrow(), None);
        r.deliver(Pid::from_raw(10), exit(3));
        assert_eq!(*rx.borrow(), Some(exit(3)));
    }

    #[test]
    fn exit_before_registration_is_kept() {
        let r = Reaper::default();
        r.deliver(Pid::from_raw(11), exit(42));
        assert_eq!(*r.register(11).borrow(), Some(exit(42)));
        // claimed once only
        assert_eq!(*r.register(11).borrow(), None);
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let r = Reaper::default();
        for pid in 0..(i32::try_from(MAX_UNCLAIMED).unwrap() + 10) {
            r.deliver(Pid::from_raw(pid + 100), exit(0));
        }
        let state = r.state.lock().unwrap();
        assert_eq!(state.unclaimed.len(), MAX_UNCLAIMED);
        assert!(!state.unclaimed.contains_key(&100));
    }

    #[test]
    fn signalled_status_is_128_plus_signal() {
        let (_, e) = ExitInfo::from_status(WaitStatus::Signaled(
            Pid::from_raw(5),
            nix::sys::signal::Signal::SIGTERM,
            false,
        ))
        .unwrap();
        assert_eq!((e.exit_status, e.signal), (143, 15));
    }
}
