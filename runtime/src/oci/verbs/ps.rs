//! `ps`: the container's processes. They live in the guest, so the pids are the guest's.

use super::Globals;
use crate::oci::control::{call, Reply, Request};
use crate::oci::state::{StateDir, Status};
use crate::oci::OciError;

/// Lists container `id`'s processes (`json`: a JSON array of pids, as `runc ps --format json`).
pub fn run(globals: &Globals, id: &str, json: bool) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    if record.status == Status::Stopped {
        return Err(OciError::State("container not running".into()));
    }
    let pids = match call(&dir.socket(), &Request::Ps)? {
        Reply::Pids { pids } => pids,
        other => return Err(OciError::Monitor(format!("unexpected reply {other:?}"))),
    };
    if json {
        println!("{}", serde_json::Value::from(pids));
    } else {
        println!("PID (in the guest)");
        for p in pids {
            println!("{p}");
        }
    }
    Ok(0)
}
