//! The vsock backend for the QEMU backend: one `vhost-device-vsock` process per VM (rust-vmm's
//! vhost-user vsock device, pinned and installed by `scripts/install-tools.sh`). QEMU attaches to
//! its vhost-user socket; the host side talks to its hybrid unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::VsockError;

/// The backend binary, unless `HULL_VSOCK_BACKEND` names another.
pub const DEFAULT_BINARY: &str = "vhost-device-vsock";
/// The guest's CID (each VM has its own device, so every guest can be 3).
pub const GUEST_CID: u32 = 3;

/// A running vsock backend. Dropping it kills it and removes its sockets.
#[derive(Debug)]
pub struct VsockBackend {
    child: Child,
    vhost_socket: PathBuf,
    uds: PathBuf,
}

/// The hybrid vsock socket of the backend of a VM whose run directory is `run_dir` (a guest's
/// connection to host port P goes to this path with `_P` appended). hull-vmm, which needs no
/// backend, has its own: [`crate::vm::hull_vmm::vsock_socket`].
pub fn uds_path(run_dir: &Path) -> PathBuf {
    run_dir.join("vsock.sock")
}

impl VsockBackend {
    /// Starts the backend for a VM whose run directory is `run_dir`, and waits for its vhost-user
    /// socket to appear.
    pub fn start(run_dir: &Path, timeout: Duration) -> Result<Self, VsockError> {
        let binary = std::env::var_os("HULL_VSOCK_BACKEND")
            .map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from);
        let vhost_socket = run_dir.join("vhost-vsock.sock");
        let uds = uds_path(run_dir);
        let log = run_dir.join("vsock.log");
        for stale in [&vhost_socket, &uds] {
            let _ = std::fs::remove_file(stale);
        }
        let log_file =
            std::fs::File::create(&log).map_err(|e| VsockError::Backend(log.clone(), e))?;
        let child = Command::new(&binary)
            .arg("--guest-cid")
            .arg(GUEST_CID.to_string())
            .arg("--socket")
            .arg(&vhost_socket)
            .arg("--uds-path")
            .arg(&uds)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| VsockError::Backend(binary.clone(), e))?;
        let mut backend = Self {
            child,
            vhost_socket,
            uds,
        };
        let deadline = Instant::now() + timeout;
        while !backend.vhost_socket.exists() {
            let exited = backend.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= deadline {
                return Err(VsockError::BackendNotReady(
                    backend.vhost_socket.clone(),
                    log,
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(backend)
    }

    /// The vhost-user socket the VMM attaches to.
    pub fn vhost_socket(&self) -> &Path {
        &self.vhost_socket
    }

    /// The hybrid vsock unix socket the host connects to.
    pub fn uds(&self) -> &Path {
        &self.uds
    }

    /// The backend's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, once it has (reaping it); `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for VsockBackend {
    fn drop(&mut self) {
        // It does not exit when the VMM goes away; stop it and remove what it leaves.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.vhost_socket);
        let _ = std::fs::remove_file(&self.uds);
    }
}
