//! `hull` as a runc-compatible OCI runtime: the runc command line (`create`, `start`, `state`,
//! `kill`, `delete`, `run`, `exec`, …) that Podman's conmon and Docker's runc shim drive, mapped
//! onto the shim's pod logic (one pod VM per container; `docs/oci-cli.md`).
//!
//! Each container has a state directory under `--root` ([`state`]) and a *monitor* ([`monitor`]):
//! a daemonised `hull` process, started by `create`, that owns the container's [`Pod`] (the VM,
//! the agent connection, the stdio copies), stands for the container as the host pid engines wait
//! on, forwards the signals it receives to the guest process, and exits with that process's
//! status. The other verbs reach it through a unix socket in the state directory ([`control`]).
//!
//! [`Pod`]: crate::shim::pod::Pod

pub mod cli;
pub mod console;
pub mod control;
pub mod hooks;
pub mod monitor;
pub mod signal;
pub mod state;
pub mod stdio;
pub mod verbs;

use std::path::PathBuf;

use crate::shim::ShimError;

/// The default state root (runc's is `/run/runc`).
pub const DEFAULT_ROOT: &str = "/run/hull-oci";

/// The OCI runtime spec version the state JSON reports.
pub const OCI_VERSION: &str = "1.0.2";

/// A runtime command failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// No container of that id in the state root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The id is taken.
    #[error("container with id exists: {0}")]
    Exists(String),
    /// The container is not in a state that allows the command.
    #[error("{0}")]
    State(String),
    /// The command line or its files are wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The bundle cannot be used.
    #[error("bad bundle {0}")]
    Bundle(PathBuf, #[source] Box<ShimError>),
    /// The monitor failed or is gone.
    #[error("monitor: {0}")]
    Monitor(String),
    /// A host file operation failed.
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
}

impl OciError {
    /// An [`OciError::Io`] saying what was done to what.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |e| OciError::Io(what, e)
    }
}
