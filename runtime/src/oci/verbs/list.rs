//! `list`: the containers under the state root.

use super::Globals;
use crate::oci::state::{ids, StateDir};
use crate::oci::OciError;

/// Lists the containers: a table, their ids only (`quiet`), or runc's JSON array (`json`).
pub fn run(globals: &Globals, quiet: bool, json: bool) -> Result<i32, OciError> {
    let states: Vec<_> = ids(&globals.root)
        .iter()
        .filter_map(|id| StateDir::new(&globals.root, id).ok()?.current().ok())
        .map(|r| r.oci_state())
        .collect();
    if json {
        let text = serde_json::to_string(&states)
            .map_err(|e| OciError::Io("cannot encode the list".into(), std::io::Error::other(e)))?;
        println!("{text}");
    } else if quiet {
        for s in &states {
            println!("{}", s.id);
        }
    } else {
        println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER");
        for s in &states {
            println!(
                "{}\t{}\t{}\t{}\t{}\troot",
                s.id,
                s.pid,
                s.status,
                s.bundle.display(),
                s.created
            );
        }
    }
    Ok(0)
}
