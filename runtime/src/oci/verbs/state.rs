//! `state`: the OCI state JSON of a container.

use super::Globals;
use crate::oci::state::StateDir;
use crate::oci::OciError;

/// Prints container `id`'s state.
pub fn run(globals: &Globals, id: &str) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let state = dir.current()?.oci_state();
    let json = serde_json::to_string_pretty(&state)
        .map_err(|e| OciError::Io("cannot encode the state".into(), std::io::Error::other(e)))?;
    println!("{json}");
    Ok(0)
}
