//! `run`: `create` then `start`; without `--detach`, wait for the container's process, remove
//! the container (unless `--keep`) and exit with its status.

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
    let status = monitor
        .wait()
        .map_err(OciError::io("cannot wait for the container's monitor"))?;
    let code = status.code().unwrap_or(255);
    if !keep {
        super::delete::delete(globals, id, true)?;
    }
    Ok(code)
}
