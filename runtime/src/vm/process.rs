//! A VMM as a child process: how both backends (QEMU and hull-vmm) start, watch and stop theirs.
//! The guest console is the VMM's stdout and goes to `<run_dir>/console.log`, the VMM's stderr to
//! `<run_dir>/vmm.log`, both copied there with a bound by an [`OutputPump`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::output::{self, BoundedLog, FatalLine, OutputPump};
use super::{Vm, VmError};
use crate::jail::{self, JailConfig};

/// Poll interval while waiting for the VMM to exit.
const REAP_POLL: Duration = Duration::from_millis(2);

/// The console log inside a run directory.
pub fn console_path(run_dir: &Path) -> PathBuf {
    run_dir.join("console.log")
}

/// The VMM's own log inside a run directory.
pub fn log_path(run_dir: &Path) -> PathBuf {
    run_dir.join("vmm.log")
}

/// A running VMM process. Dropping it kills and reaps the VMM if it still runs.
#[derive(Debug)]
pub struct VmmProcess {
    child: Child,
    console: PathBuf,
    log: PathBuf,
    exited: Option<ExitStatus>,
    vsock_uds: Option<PathBuf>,
    output: OutputPump,
    fatal: FatalLine,
}

impl VmmProcess {
    /// Starts `binary` with `args` for a VM whose private directory is `run_dir`, inside the
    /// network namespace `netns` when given. A stale console from an earlier VM in the same
    /// directory is removed first.
    pub fn spawn(
        binary: &Path,
        args: Vec<OsString>,
        run_dir: &Path,
        netns: Option<&Path>,
        backend: &str,
    ) -> Result<Self, VmError> {
        Self::spawn_jailed(binary, args, run_dir, netns, None, backend)
    }

    /// [`VmmProcess::spawn`], inside `jail` when given: `(jailer binary, jail)`, with `args`
    /// already naming paths as the jail shows them. The VMM must write the guest console to its
    /// stdout.
    pub fn spawn_jailed(
        binary: &Path,
        args: Vec<OsString>,
        run_dir: &Path,
        netns: Option<&Path>,
        jail: Option<(&Path, &JailConfig)>,
        backend: &str,
    ) -> Result<Self, VmError> {
        let console = console_path(run_dir);
        let log = log_path(run_dir);
        let console_log = BoundedLog::create(&console, output::CONSOLE_LOG_MAX)
            .map_err(|e| VmError::Spawn(console.clone(), e))?;
        let vmm_log = BoundedLog::create(&log, output::VMM_LOG_MAX)
            .map_err(|e| VmError::Spawn(log.clone(), e))?;
        let mut command = match jail {
            None => Command::new(binary),
            Some((jailer, config)) => jail::command(jailer, config, binary, vec![])?,
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match netns {
            None => command.spawn(),
            Some(netns) => spawn_in_netns(command, netns),
        }
        .map_err(|e| VmError::Spawn(binary.to_owned(), e))?;
        let pipes = child.stdout.take().zip(child.stderr.take());
        let fatal = FatalLine::default();
        let output = pipes
            .ok_or_else(|| std::io::Error::other("no output pipes"))
            .and_then(|(stdout, stderr)| {
                OutputPump::start(stdout, stderr, console_log, vmm_log, fatal.clone())
            });
        let output = match output {
            Ok(o) => o,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmError::Spawn(binary.to_owned(), e));
            }
        };
        tracing::debug!(pid = child.id(), backend, "VMM started");
        Ok(Self {
            child,
            console,
            log,
            exited: None,
            vsock_uds: None,
            output,
            fatal,
        })
    }

    /// Records that this VMM serves vsock itself on the host socket `uds` (see
    /// [`Vm::vsock_uds`]). The socket is removed once the VMM has exited, however it ended.
    #[must_use]
    pub fn with_vsock_uds(mut self, uds: PathBuf) -> Self {
        self.vsock_uds = Some(uds);
        self
    }

    fn try_reap(&mut self) -> Result<Option<ExitStatus>, VmError> {
        if self.exited.is_none() && self.fatal.get().is_some() {
            // The VMM stopped its guest for good but lives on: it counts as dead now.
            tracing::warn!(
                pid = self.child.id(),
                said = self.fatal.get().map(String::as_str),
                "the VMM stopped its guest: killing it"
            );
            self.signal(Signal::SIGKILL);
            let status = self.child.wait().map_err(VmError::Process)?;
            self.exited = Some(status);
            self.ended();
        }
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(VmError::Process)?;
            if self.exited.is_some() {
                self.ended();
            }
        }
        Ok(self.exited)
    }

    /// After the VMM has exited: its last output copied to the logs, its sockets removed.
    fn ended(&mut self) {
        if !self.output.finish(output::DRAIN) {
            tracing::warn!(
                pid = self.child.id(),
                "the VMM's output pipes are still open after it exited"
            );
        }
        self.remove_sockets();
    }

    /// After the VMM has exited: its vsock socket (left behind when it was killed), and the
    /// socket directory if nothing else is in it.
    fn remove_sockets(&self) {
        if let Some(uds) = &self.vsock_uds {
            let _ = std::fs::remove_file(uds);
            if let Some(dir) = uds.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    fn signal(&self, signal: Signal) {
        if self.exited.is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // ESRCH only means it is already gone; reaping tells the rest.
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }
}

/// Spawns `command` from a short-lived thread in `netns`: the child inherits that thread's
/// namespaces, and the caller's threads stay where they are.
fn spawn_in_netns(mut command: Command, netns: &Path) -> std::io::Result<Child> {
    crate::network::netns::on_thread_in(netns, move || command.spawn())
}

impl Vm for VmmProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn console_path(&self) -> &Path {
        &self.console
    }

    fn log_path(&self) -> &Path {
        &self.log
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(REAP_POLL);
        }
    }

    fn stop(&mut self, grace: Duration) -> Result<ExitStatus, VmError> {
        // Both VMMs turn SIGTERM into an orderly stop.
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL);
        let status = self.child.wait().map_err(VmError::Process)?;
        self.exited = Some(status);
        self.ended();
        Ok(status)
    }

    fn vsock_uds(&self) -> Option<&Path> {
        self.vsock_uds.as_deref()
    }

    fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
            self.ended();
        }
    }
}
