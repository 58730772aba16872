//! `kill`: a signal to the container's process (or, `--all`, to every process in it).

use super::Globals;
use crate::oci::control::{call, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::{signal, OciError};

/// Sends `sig` (a name or a number; default SIGTERM) to container `id`.
pub fn run(globals: &Globals, id: &str, sig: Option<&str>, all: bool) -> Result<i32, OciError> {
    let signal = signal::parse(sig.unwrap_or("SIGTERM"))?;
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    if record.status == Status::Stopped {
        return Err(OciError::State("container not running".into()));
    }
    call(
        &dir.socket(),
        &Request::Kill {
            signal,
            all,
            exec_id: String::new(),
        },
    )?;
    Ok(0)
}
