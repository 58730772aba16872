//! `start`: release a created container's process, then run the bundle's `poststart` hooks here,
//! in the `hull start` process (as runc does): the monitor stays confined by the shim's seccomp
//! filter, which lets it start no process once its VM runs.

use super::Globals;
use crate::oci::control::{call, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;

/// Starts container `id`.
pub fn run(globals: &Globals, id: &str) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    match record.status {
        Status::Created => {}
        Status::Stopped => {
            return Err(OciError::State(
                "cannot start a container that has stopped".into(),
            ))
        }
        other => {
            return Err(OciError::State(format!(
                "cannot start a container that is {other}"
            )))
        }
    }
    call(&dir.socket(), &Request::Start)?;
    poststart(&record);
    Ok(0)
}

/// Runs the bundle's `poststart` hooks on the host with the container's state (`running`: its
/// process was released, even if it has ended since); failures are logged only, as the runtime
/// spec says.
fn poststart(created: &crate::oci::state::Record) {
    let Ok(spec) = crate::shim::task::create::read_spec(&created.bundle) else {
        return;
    };
    let mut running = created.clone();
    running.status = Status::Running;
    let state = serde_json::to_vec(&running.oci_state()).unwrap_or_default();
    crate::oci::hooks::run_stage_logged(spec.spec(), crate::oci::hooks::Stage::Poststart, &state);
}
