//! A pod VM's host process dying under its tasks: the VMM (or its jailer), virtiofsd or the vsock
//! backend. Without any one of them the pod cannot go on — no VM, no files, or no way to reach
//! the agent — so the shim brings the whole pod down at once rather than leave tasks that hang.
//!
//! A watch ([`spawn_watch`]) wakes on every `SIGCHLD` (and once a second as a safety net) and
//! looks for an exited part. The first death seen is the pod's [`PodFault`]: it is logged as one
//! error line naming the part, its pid and how it ended (with the guest's panic line when the
//! VMM ended because the guest kernel panicked), raised on the pod's [`FaultSignal`], and what
//! is left of the VM is killed. Every running task then ends with [`KILLED_STATUS`] through its
//! exit watch (`task::wait`), which publishes its one `TaskExit`; the pod's files, sockets and
//! remaining processes are cleaned up by the last `Delete`, as for any pod.

use std::fmt;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sandbox::{PartExit, SandboxPart};

/// The exit status of a task whose pod went down under it: 128 + SIGKILL, what runc users see
/// for a task that was killed (and what `containerd-shim-hull-v2 delete` reports after a dead
/// shim). Every process in the guest did die that way, with its VM.
pub const KILLED_STATUS: u32 = 128 + 9;

/// What the guest kernel prints when it panics.
pub const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// How often the watch looks even without a `SIGCHLD`.
const WATCH_POLL: Duration = Duration::from_secs(1);

/// How long a death that does not tell its cause (a clean exit of virtiofsd or the vsock
/// backend, which is how virtiofsd reacts to the VMM's end) waits for the VMM's.
const SETTLE: Duration = Duration::from_secs(2);

/// How much of the console's end is searched for a panic line.
const CONSOLE_TAIL: u64 = 64 * 1024;

/// Longest panic line quoted (the console is written by the guest, which may be hostile).
const MAX_PANIC_LINE: usize = 200;

/// Why a pod went down: the parts found exited, the cause first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFault {
    /// The part whose end brought the pod down, then any other found exited with it.
    pub exits: Vec<PartExit>,
    /// The VMM runs under hull's jailer, which reports the VMM's death by signal N as exit
    /// code 128 + N.
    pub jailed: bool,
    /// The guest kernel's panic line, when the VMM ended and the console shows one.
    pub panic: Option<String>,
}

impl PodFault {
    /// The fault of `exits` (in any order): the cause is the first part killed by a signal (the
    /// VMM, then virtiofsd, then the vsock backend), else the VMM, else the first.
    pub fn new(mut exits: Vec<PartExit>, jailed: bool, panic: Option<String>) -> Self {
        let rank = |e: &PartExit| {
            let order = match e.part {
                SandboxPart::Vmm => 0,
                SandboxPart::Virtiofsd => 1,
                SandboxPart::VsockBackend => 2,
            };
            (killed_by(e, jailed).is_none(), order)
        };
        exits.sort_by_key(rank);
        let panic = panic.filter(|_| exits.first().is_some_and(|e| e.part == SandboxPart::Vmm));
        Self {
            exits,
            jailed,
            panic,
        }
    }

    /// The part that brought the pod down.
    pub fn cause(&self) -> Option<SandboxPart> {
        self.exits.first().map(|e| e.part)
    }
}

impl fmt::Display for PodFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = &self.panic {
            write!(f, "the guest kernel panicked (\"{line}\"): ")?;
        }
        let mut exits = self.exits.iter();
        if let Some(first) = exits.next() {
            f.write_str(&describe(first, self.jailed))?;
        }
        let rest: Vec<String> = exits.map(|e| describe(e, self.jailed)).collect();
        if !rest.is_empty() {
            write!(f, " (then {})", rest.join(", "))?;
        }
        Ok(())
    }
}

/// The signal that ended `exit`'s process, directly or as reported by the VMM's jailer.
fn killed_by(exit: &PartExit, jailed: bool) -> Option<i32> {
    exit.status.signal().or_else(|| {
        let code = exit.status.code()?;
        (jailed && exit.part == SandboxPart::Vmm && (129..=128 + 64).contains(&code))
            .then_some(code - 128)
    })
}

/// `SIGKILL` for 9, `signal 99` for what has no name.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// "virtiofsd (pid 42) was killed by SIGKILL", "the VMM (pid 7) exited with code 0".
fn describe(exit: &PartExit, jailed: bool) -> String {
    let who = format!("{} (pid {})", exit.part, exit.pid);
    let said = if let Some(signal) = exit.status.signal() {
        format!("{who} was killed by {}", signal_name(signal))
    } else {
        let code = exit.status.code().unwrap_or(-1);
        match killed_by(exit, jailed) {
            Some(signal) => format!(
                "{who} exited with code {code}: the jailed VMM was killed by {}",
                signal_name(signal)
            ),
            None => format!("{who} exited with code {code}"),
        }
    };
    if killed_by(exit, jailed) == Some(libc::SIGSYS) {
        format!("{said} (its seccomp filter denied a system call)")
    } else {
        said
    }
}

/// The guest kernel's panic message from the end of the console log at `console`
/// (`Kernel panic - not syncing: …`), cleaned of control characters and shortened.
pub fn panic_line(console: &Path) -> Option<String> {
    let mut file = std::fs::File::open(console).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(CONSOLE_TAIL)))
        .ok()?;
    let mut tail = Vec::new();
    file.take(CONSOLE_TAIL).read_to_end(&mut tail).ok()?;
    find_panic(&String::from_utf8_lossy(&tail))
}

fn find_panic(console: &str) -> Option<String> {
    let line = console.lines().find(|l| l.contains(PANIC_MARKER))?;
    let from = line.find(PANIC_MARKER)?;
    let clean: String = line[from..]
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PANIC_LINE)
        .collect();
    Some(clean.trim_end().to_owned())
}

/// A pod's fault, once there is one: set once, awaited by every task's exit watch.
#[derive(Debug)]
pub struct FaultSignal(watch::Sender<Option<Arc<PodFault>>>);

impl Default for FaultSignal {
    fn default() -> Self {
        Self(watch::channel(None).0)
    }
}

impl FaultSignal {
    /// The fault, if the pod is down.
    pub fn get(&self) -> Option<Arc<PodFault>> {
        self.0.borrow().clone()
    }

    /// Records `fault` unless one was recorded before; true when this one was.
    pub fn raise(&self, fault: PodFault) -> bool {
        self.0.send_if_modified(|now| {
            if now.is_some() {
                return false;
            }
            *now = Some(Arc::new(fault));
            true
        })
    }

    /// Waits until the pod is down.
    pub async fn wait(&self) -> Arc<PodFault> {
        let mut rx = self.0.subscribe();
        loop {
            if let Some(fault) = rx.borrow_and_update().clone() {
                return fault;
            }
            if rx.changed().await.is_err() {
                // The sender lives in self, so this cannot happen while self is borrowed.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What the watch needs of a pod (the shim's [`super::pod::Pod`]): this module knows pods only
/// through it.
pub trait WatchedPod: Send + Sync + 'static {
    /// The pod's id, for the log.
    fn pod_id(&self) -> &str;
    /// Whether its VMM runs jailed (a jailer reports its VMM's signal as an exit code).
    fn jailed(&self) -> bool;
    /// Where the pod's fault is raised for its tasks.
    fn fault_signal(&self) -> &FaultSignal;
    /// The parts of its VM that have exited, and the VM's console log; `None` once the pod has
    /// no VM.
    fn exited_parts(&self) -> impl Future<Output = Option<(Vec<PartExit>, PathBuf)>> + Send;
    /// Kills what is left of its VM at once.
    fn kill_vmm(&self) -> impl Future<Output = ()> + Send;
}

/// Starts watching `pod`'s VM parts; the watch ends with the VM (stopped, or brought down) or
/// the pod.
pub fn spawn_watch<P: WatchedPod>(pod: Weak<P>) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut children = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot watch SIGCHLD ({e}); polling the pod's processes");
                None
            }
        };
        loop {
            let Some(pod) = pod.upgrade() else { return };
            match pod.exited_parts().await {
                None => return,
                Some((exits, _)) if exits.is_empty() => {}
                Some((exits, console)) => {
                    let exits = settle(pod.as_ref(), exits).await;
                    let panic = exits
                        .iter()
                        .any(|e| e.part == SandboxPart::Vmm)
                        .then(|| panic_line(&console))
                        .flatten();
                    let fault = PodFault::new(exits, pod.jailed(), panic);
                    bring_down(pod.as_ref(), fault).await;
                    return;
                }
            }
            drop(pod);
            match children.as_mut() {
                Some(s) => {
                    let _ = tokio::time::timeout(WATCH_POLL, s.recv()).await;
                }
                None => tokio::time::sleep(WATCH_POLL).await,
            }
        }
    })
}

/// Whether `exits` tell why the pod went down: a part was killed, or the VMM ended.
fn decisive(exits: &[PartExit], jailed: bool) -> bool {
    exits
        .iter()
        .any(|e| e.part == SandboxPart::Vmm || killed_by(e, jailed).is_some())
}

/// `exits`, and whatever else exits within [`SETTLE`] while they do not tell the cause: one
/// death brings others within moments (virtiofsd exits when the VMM goes; a jailer reports its
/// VMM's death once it has reaped it), and the first seen need not be the first that happened.
async fn settle(pod: &(impl WatchedPod + ?Sized), mut exits: Vec<PartExit>) -> Vec<PartExit> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !decisive(&exits, pod.jailed()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match pod.exited_parts().await {
            Some((now, _)) => exits = now,
            None => break,
        }
    }
    exits
}

/// Logs `fault`, raises it for the pod's tasks, and kills what is left of the VM.
async fn bring_down(pod: &(impl WatchedPod + ?Sized), fault: PodFault) {
    tracing::error!(
        pod = %pod.pod_id(),
        "pod VM down: {fault}; its tasks end with exit status {KILLED_STATUS}"
    );
    let cause = fault.cause();
    pod.fault_signal().raise(fault);
    if cause != Some(SandboxPart::Vmm) {
        // The guest may still run, without its files or its channel to the host: stop it, so
        // every process in it ends now (and as the status says, killed).
        pod.kill_vmm().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    fn exit(part: SandboxPart, pid: u32, raw: i32) -> PartExit {
        PartExit {
            part,
            pid,
            status: ExitStatus::from_raw(raw),
        }
    }

    const SIGKILLED: i32 = 9;
    fn code(c: i32) -> i32 {
        c << 8
    }

    #[test]
    fn a_killed_part_is_the_cause_and_is_named_with_its_pid_and_signal() {
        // virtiofsd exits 0 when the VMM disconnects: the VMM's death is the cause.
        let f = PodFault::new(
            vec![
                exit(SandboxPart::Virtiofsd, 20, code(0)),
                exit(SandboxPart::Vmm, 10, SIGKILLED),
            ],
            false,
            None,
        );
        assert_eq!(f.cause(), Some(SandboxPart::Vmm));
        assert_eq!(
            f.to_string(),
            "the VMM (pid 10) was killed by SIGKILL (then virtiofsd (pid 20) exited with code 0)"
        );
        // virtiofsd killed, and the VMM gave up after it: virtiofsd is the cause.
        let f = PodFault::new(
            vec![
                exit(SandboxPart::Vmm, 10, code(1)),
                exit(SandboxPart::Virtiofsd, 20, SIGKILLED),
            ],
            false,
            Some("Kernel panic - not syncing: x".into()),
        );
        assert_eq!(f.cause(), Some(SandboxPart::Virtiofsd));
        assert_eq!(
            f.panic, None,
            "a panic is only told when the VMM ended first"
        );
        assert!(f
            .to_string()
            .starts_with("virtiofsd (pid 20) was killed by SIGKILL"));
        let f = PodFault::new(vec![exit(SandboxPart::VsockBackend, 30, 15)], false, None);
        assert_eq!(
            f.to_string(),
            "the vsock backend (pid 30) was killed by SIGTERM"
        );
    }

    #[test]
    fn a_jailed_vmm_killed_by_a_signal_is_told_as_such() {
        let f = PodFault::new(vec![exit(SandboxPart::Vmm, 10, code(137))], true, None);
        assert_eq!(
            f.to_string(),
            "the VMM (pid 10) exited with code 137: the jailed VMM was killed by SIGKILL"
        );
        // Without a jail a code is a code.
        let f = PodFault::new(vec![exit(SandboxPart::Vmm, 10, code(137))], false, None);
        assert_eq!(f.to_string(), "the VMM (pid 10) exited with code 137");
    }

    #[test]
    fn a_vmm_killed_by_sigsys_is_told_as_a_seccomp_kill() {
        let f = PodFault::new(vec![exit(SandboxPart::Vmm, 10, code(159))], true, None);
        assert_eq!(
            f.to_string(),
            "the VMM (pid 10) exited with code 159: the jailed VMM was killed by SIGSYS \
             (its seccomp filter denied a system call)"
        );
        let f = PodFault::new(vec![exit(SandboxPart::Vmm, 10, libc::SIGSYS)], false, None);
        assert_eq!(
            f.to_string(),
            "the VMM (pid 10) was killed by SIGSYS (its seccomp filter denied a system call)"
        );
    }

    #[test]
    fn a_guest_panic_is_quoted_from_the_console() {
        let console = "[    1.0] booting\n\
                       \u{1b}[0mKernel panic - not syncing: sysrq triggered crash\u{7}\r\n\
                       CPU: 0 PID: 77 Comm: sh\n\
                       ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n";
        let line = find_panic(console).unwrap();
        assert_eq!(line, "Kernel panic - not syncing: sysrq triggered crash");
        let f = PodFault::new(vec![exit(SandboxPart::Vmm, 10, code(0))], true, Some(line));
        assert_eq!(
            f.to_string(),
            "the guest kernel panicked (\"Kernel panic - not syncing: sysrq triggered crash\"): \
             the VMM (pid 10) exited with code 0"
        );
        assert_eq!(find_panic("reboot: Restarting system\n"), None);
        let long = format!("{PANIC_MARKER}: {}", "x".repeat(1000));
        assert_eq!(find_panic(&long).unwrap().len(), MAX_PANIC_LINE);
    }

    #[test]
    fn the_panic_is_read_from_the_end_of_a_long_console() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let mut text = "noise\n".repeat(50_000);
        text.push_str("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\n");
        std::fs::write(&console, text).unwrap();
        assert_eq!(
            panic_line(&console).as_deref(),
            Some("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009")
        );
        assert_eq!(panic_line(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_clean_exit_of_a_helper_does_not_tell_the_cause() {
        let virtiofsd_done = exit(SandboxPart::Virtiofsd, 20, code(0));
        assert!(!decisive(&[virtiofsd_done], true));
        assert!(decisive(
            &[exit(SandboxPart::Virtiofsd, 20, SIGKILLED)],
            true
        ));
        assert!(decisive(
            &[virtiofsd_done, exit(SandboxPart::Vmm, 1, code(0))],
            true
        ));
        // A helper's code above 128 is only a code (only the jailer reports signals that way).
        assert!(!decisive(
            &[exit(SandboxPart::VsockBackend, 30, code(137))],
            true
        ));
    }

    #[tokio::test]
    async fn the_first_fault_wins_and_wakes_waiters() {
        let signal = Arc::new(FaultSignal::default());
        assert!(signal.get().is_none());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.wait().await }
        });
        let first = PodFault::new(vec![exit(SandboxPart::Vmm, 1, SIGKILLED)], false, None);
        let second = PodFault::new(
            vec![exit(SandboxPart::Virtiofsd, 2, SIGKILLED)],
            false,
            None,
        );
        assert!(signal.raise(first.clone()));
        assert!(!signal.raise(second));
        assert_eq!(*waiter.await.unwrap(), first);
        assert_eq!(signal.get().as_deref(), Some(&first));
    }
}
