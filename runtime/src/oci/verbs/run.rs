//! `run`: `create` then `start`; without `--detach`, wait for the container's process, remove
//! the container (unless `--keep`) and exit with its status.

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::create::{create, CreateOpts};
use super::Globals;
use crate::oci::OciError;

/// Runs container `id`; returns the exit status to exit with.
pub fn run(
    globals: &Globals,
    id: &str,
    opts: &CreateOpts,
    detach: bool,
    keep: bool,
) -> Result<i32, OciError> {
    let mut monitor = create(globals, id, opts)?;
    if let Err(e) = super::start::run(globals, id) {
        let _ = super::delete::delete(globals, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    forward_signals(monitor.id());
    let status = monitor
        .wait()
        .map_err(OciError::io("cannot wait for the container's monitor"))?;
    let code = status.code().unwrap_or(255);
    if !keep {
        super::delete::delete(globals, id, true)?;
    }
    Ok(code)
}

/// Passes the signals `run` receives (a Ctrl-C, an engine's SIGTERM) to the monitor, which
/// passes them to the container's process: the monitor is in a session of its own.
fn forward_signals(monitor: u32) {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
    ] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    let Ok(pid) = i32::try_from(monitor) else {
        return;
    };
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            // The monitor is our child until we reap it: the pid cannot be reused meanwhile.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    });
}
