//! `pause` and `resume`: freeze and thaw the container's processes in the guest.

use super::Globals;
use crate::oci::control::{call, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;

/// Freezes (`pause`) or thaws container `id`.
pub fn run(globals: &Globals, id: &str, pause: bool) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    let (wanted, request) = if pause {
        (Status::Running, Request::Pause)
    } else {
        (Status::Paused, Request::Resume)
    };
    if record.status != wanted {
        return Err(OciError::State(format!("container not {wanted}")));
    }
    call(&dir.socket(), &request)?;
    Ok(0)
}
