//! `delete`: remove a container that has stopped or never started (`--force`: kill it first),
//! and whatever its monitor left: its VM's host processes, mounts and directories, its state.

use std::time::Duration;

use super::{wait_gone, Globals};
use crate::oci::control::{call, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;
use crate::shim::lifecycle::cleanup_dead_pod;
use crate::shim::spec::BundleHints;

/// How long a monitor gets to stop its VM and exit before it is killed.
const MONITOR_BOUND: Duration = Duration::from_secs(20);

/// Deletes container `id`.
pub fn run(globals: &Globals, id: &str, force: bool) -> Result<i32, OciError> {
    delete(globals, id, force)?;
    Ok(0)
}

/// Deletes container `id` (see the module doc).
pub fn delete(globals: &Globals, id: &str, force: bool) -> Result<(), OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let record = match dir.current() {
        Ok(r) => r,
        Err(OciError::NotFound(_)) => {
            // A create that died before its record: nothing runs, the directory goes.
            let existed = dir.dir.exists();
            dir.remove()?;
            return if force || existed {
                Ok(())
            } else {
                Err(OciError::NotFound(id.to_owned()))
            };
        }
        Err(e) => return Err(e),
    };
    match record.status {
        Status::Stopped => {}
        Status::Created | Status::Creating => {
            if let Err(e) = call(&dir.socket(), &Request::Delete) {
                tracing::warn!("asking the monitor to delete: {e}");
            }
        }
        Status::Running | Status::Paused => {
            if !force {
                return Err(OciError::State(format!(
                    "cannot delete container {id} that is not stopped: {}",
                    record.status
                )));
            }
            let kill = Request::Kill {
                signal: 9,
                all: true,
                exec_id: String::new(),
            };
            if let Err(e) = call(&dir.socket(), &kill) {
                tracing::warn!("asking the monitor to kill: {e}");
            }
        }
    }
    let pid = i32::try_from(record.pid).unwrap_or(0);
    if pid > 0 && !wait_gone(record.pid, record.pid_start, MONITOR_BOUND) {
        tracing::warn!(pid, "the monitor did not exit; killing it");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        wait_gone(record.pid, record.pid_start, Duration::from_secs(5));
    }
    // What a killed monitor could not stop: the VM's processes, the share's mounts, the
    // container's host cgroup (which holds the VMM and virtiofsd). Nothing, after a clean exit.
    cleanup_dead_pod(&record.run_dir);
    if let Some(path) =
        BundleHints::read(&record.bundle).and_then(|h| h.cgroups_path().map(str::to_owned))
    {
        crate::host_cgroup::cleanup(&path);
    }
    poststop(&record);
    dir.remove()
}

/// Runs the bundle's `poststop` hooks on the host, once the container is gone; failures are
/// logged only, as the runtime spec says.
fn poststop(record: &crate::oci::state::Record) {
    let Ok(spec) = crate::shim::task::create::read_spec(&record.bundle) else {
        return;
    };
    let mut stopped = record.clone();
    stopped.status = Status::Stopped;
    let state = serde_json::to_vec(&stopped.oci_state()).unwrap_or_default();
    crate::oci::hooks::run_stage_logged(spec.spec(), crate::oci::hooks::Stage::Poststop, &state);
}
