//! `create`: claim the id, start the container's monitor (which boots the VM and creates the
//! container, held at its start barrier), wait until it says created, write the pid file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{absolute, write_pid_file, Globals};
use crate::oci::state::{self, StateDir, Status};
use crate::oci::OciError;
use crate::shim::task::create::read_spec;

/// What `create` is asked.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where the host pid goes.
    pub pid_file: Option<PathBuf>,
    /// The engine's console socket (for a terminal).
    pub console_socket: Option<PathBuf>,
    /// Extra fds to pass (cannot cross into a VM: refused when non-zero).
    pub preserve_fds: u32,
}

/// How long a monitor may take to boot the VM and create the container.
const CREATE_BOUND: Duration = Duration::from_secs(180);

/// Creates container `id`; returns its monitor (a child of this process).
pub fn create(globals: &Globals, id: &str, opts: &CreateOpts) -> Result<Child, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let bundle = absolute(&opts.bundle)?;
    let spec = read_spec(&bundle).map_err(|e| OciError::Bundle(bundle.clone(), Box::new(e)))?;
    crate::oci::hooks::check_supported(spec.spec())
        .map_err(|e| OciError::InvalidArgument(e.to_string()))?;
    if opts.preserve_fds > 0 {
        return Err(OciError::InvalidArgument(format!(
            "--preserve-fds {}: file descriptors cannot be passed into a VM",
            opts.preserve_fds
        )));
    }
    let terminal = spec
        .spec()
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(OciError::InvalidArgument(
            "process.terminal needs --console-socket (the engine's end of the terminal)".into(),
        ));
    }
    dir.claim()?;
    match start_monitor(globals, &dir, &bundle, opts.console_socket.as_deref()) {
        Ok(child) => {
            if let Some(p) = &opts.pid_file {
                if let Err(e) = write_pid_file(p, child.id()) {
                    let _ = super::delete::delete(globals, id, true);
                    return Err(e);
                }
            }
            Ok(child)
        }
        Err(e) => {
            let _ = dir.remove();
            Err(e)
        }
    }
}

fn start_monitor(
    globals: &Globals,
    dir: &StateDir,
    bundle: &Path,
    console_socket: Option<&Path>,
) -> Result<Child, OciError> {
    let exe = std::env::current_exe().map_err(OciError::io("cannot find the hull binary"))?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(&globals.root)
        .arg("oci-monitor")
        .arg("--bundle")
        .arg(bundle);
    if let Some(socket) = console_socket {
        command.arg("--console-socket").arg(absolute(socket)?);
    }
    let mut child = command
        .arg(&dir.id)
        .current_dir(&dir.dir)
        .spawn()
        .map_err(OciError::io("cannot start the container's monitor"))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match dir.read() {
            Ok(r) if r.status != Status::Creating => return Ok(child),
            _ => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(dir.dir.join(state::CREATE_ERROR))
                .unwrap_or_else(|_| format!("the monitor exited ({status})"));
            return Err(OciError::Monitor(said));
        }
        if started.elapsed() > CREATE_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OciError::Monitor(format!(
                "the container was not created within {CREATE_BOUND:?}"
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `create`'s exit: the monitor runs on without this process.
pub fn run(globals: &Globals, id: &str, opts: &CreateOpts) -> Result<i32, OciError> {
    create(globals, id, opts).map(|_| 0)
}
