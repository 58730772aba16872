//! The runc verbs, one per file. Each takes plain values (the command line already parsed by
//! [`super::cli`]) and returns an exit status or an [`OciError`].

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::state::alive;
use super::OciError;

/// The flags every verb shares (runc's global options).
#[derive(Debug, Clone)]
pub struct Globals {
    /// The state root.
    pub root: PathBuf,
}

/// Writes `pid` to `path` atomically, as runc does (engines read it as soon as it exists).
pub fn write_pid_file(path: &Path, pid: u32) -> Result<(), OciError> {
    let path = absolute(path)?;
    let tmp = path.with_extension("hull-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(OciError::io(format!(
            "cannot write the pid file {}",
            path.display()
        )))
}

/// `path` made absolute against the working directory.
pub fn absolute(path: &Path) -> Result<PathBuf, OciError> {
    std::path::absolute(path).map_err(OciError::io(format!("bad path {}", path.display())))
}

/// Waits until process `pid` (started at `start`) is gone, at most `bound`; true when it is.
pub fn wait_gone(pid: u32, start: u64, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut pause = Duration::from_millis(2);
    while alive(pid, start) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}
