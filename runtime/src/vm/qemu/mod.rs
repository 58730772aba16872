//! The QEMU backend: `qemu-system-x86_64 -M microvm` from the distribution, with KVM where the
//! host's KVM can run a Linux guest and TCG everywhere else.

pub mod cmdline;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::accel::{self, Accel};
use super::{Hypervisor, Vm, VmConfig, VmError};
pub use cmdline::HostShape;

/// The binary looked up on `PATH` unless `HULL_QEMU` names another.
pub const DEFAULT_BINARY: &str = "qemu-system-x86_64";

/// Starts VMs with QEMU.
#[derive(Debug, Clone)]
pub struct Qemu {
    binary: PathBuf,
    host: HostShape,
}

impl Qemu {
    /// A backend using `binary` (a path, or a name looked up on `PATH`) on a host shaped as `host`.
    pub fn new(binary: impl Into<PathBuf>, host: HostShape) -> Self {
        Self {
            binary: binary.into(),
            host,
        }
    }

    /// A backend for this host with the given accelerator: `HULL_QEMU` or [`DEFAULT_BINARY`],
    /// the host's CPU count and TSC frequency.
    pub fn for_host(accel: Accel) -> Self {
        let binary = std::env::var_os("HULL_QEMU").map_or(DEFAULT_BINARY.into(), PathBuf::from);
        let host_cpus = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        let tsc_khz = accel::host_tsc_khz(Path::new("/proc/cpuinfo"));
        Self::new(
            binary,
            HostShape {
                accel,
                host_cpus,
                tsc_khz,
            },
        )
    }

    /// The accelerator this backend uses.
    pub fn accel(&self) -> Accel {
        self.host.accel
    }

    /// The binary, resolved on `PATH` when it is a bare name.
    pub fn resolve_binary(&self) -> Result<PathBuf, VmError> {
        resolve(&self.binary).ok_or_else(|| VmError::VmmMissing(self.binary.clone()))
    }
}

fn resolve(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

impl Hypervisor for Qemu {
    fn name(&self) -> String {
        format!("qemu-{}", self.host.accel)
    }

    fn start(&self, config: &VmConfig) -> Result<Box<dyn Vm>, VmError> {
        config.validate()?;
        let binary = self.resolve_binary()?;
        let console = cmdline::console_path(&config.run_dir);
        let log = config.run_dir.join("vmm.log");
        // A stale console from an earlier VM in the same directory must not look like this one's.
        let _ = std::fs::remove_file(&console);
        let log_file = std::fs::File::create(&log).map_err(|e| VmError::Spawn(log.clone(), e))?;
        let child = Command::new(&binary)
            .args(cmdline::build(config, self.host))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| VmError::Spawn(binary.clone(), e))?;
        tracing::debug!(pid = child.id(), backend = %self.name(), "VMM started");
        Ok(Box::new(QemuVm {
            child,
            console,
            log,
            exited: None,
        }))
    }
}

/// A running QEMU process.
#[derive(Debug)]
pub struct QemuVm {
    child: Child,
    console: PathBuf,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl QemuVm {
    fn try_reap(&mut self) -> Result<Option<ExitStatus>, VmError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(VmError::Process)?;
        }
        Ok(self.exited)
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

/// Poll interval while waiting for the VMM to exit.
const REAP_POLL: Duration = Duration::from_millis(2);

impl Vm for QemuVm {
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
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL);
        let status = self.child.wait().map_err(VmError::Process)?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
