//! `start`: release a created container's process.

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
    Ok(0)
}
