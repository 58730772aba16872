//! The agent's error type, mapped to ttrpc status codes on purpose (not everything is INTERNAL).

use hull_protocol::limits::LimitError;

use crate::container::{CgroupError, ContainerError};

/// A failed agent request.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The container or process does not exist (or has exited).
    #[error("{0} not found")]
    NotFound(String),
    /// The container or process already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// The request does not fit the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A field breaks a limit.
    #[error("invalid request")]
    Limit(#[from] LimitError),
    /// Creating or running the container failed (its own message says what and where).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// A system call failed.
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    /// The network request is malformed.
    #[error("invalid network request")]
    NetworkRequest(#[from] hull_protocol::network::NetworkError),
    /// Configuring the network failed.
    #[error("cannot configure the pod network")]
    Network(#[from] crate::network::NetworkError),
    /// A restored guest could not be made its own pod.
    #[error("cannot personalize the restored guest")]
    Personalize(#[from] crate::personalize::PersonalizeError),
    /// A copied volume could not be written or removed.
    #[error("copied volume")]
    Volume(#[from] crate::volumes::VolumeError),
}

impl AgentError {
    /// The ttrpc status code this error is reported with.
    pub fn code(&self) -> ttrpc::Code {
        match self {
            AgentError::NotFound(_) => ttrpc::Code::NOT_FOUND,
            AgentError::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            AgentError::InvalidArgument(_) | AgentError::Limit(_) => ttrpc::Code::INVALID_ARGUMENT,
            AgentError::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            AgentError::Container(e) => container_code(e),
            AgentError::NetworkRequest(_) => ttrpc::Code::INVALID_ARGUMENT,
            AgentError::Network(crate::network::NetworkError::NoSuchInterface(_)) => {
                ttrpc::Code::FAILED_PRECONDITION
            }
            AgentError::Io(..)
            | AgentError::Network(_)
            | AgentError::Volume(_)
            | AgentError::Personalize(_) => ttrpc::Code::INTERNAL,
        }
    }

    /// The whole error chain, for the reply's message.
    pub fn message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// A spec we cannot honour is the caller's problem; a failure while building is ours.
fn container_code(e: &ContainerError) -> ttrpc::Code {
    match e {
        ContainerError::Config(_)
        | ContainerError::Rootfs(_)
        | ContainerError::Namespace(_)
        | ContainerError::Mount(_)
        | ContainerError::Device(_)
        | ContainerError::Process(_)
        | ContainerError::Seccomp(_)
        | ContainerError::TerminalMismatch => ttrpc::Code::INVALID_ARGUMENT,
        ContainerError::Exec { .. }
        | ContainerError::AlreadyStarted
        | ContainerError::NotRunning
        | ContainerError::Paused => ttrpc::Code::FAILED_PRECONDITION,
        ContainerError::Cgroup(CgroupError::Exists(_)) => ttrpc::Code::ALREADY_EXISTS,
        _ => ttrpc::Code::INTERNAL,
    }
}

impl From<AgentError> for ttrpc::Error {
    fn from(e: AgentError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_refusal_is_its_own_message() {
        let e = AgentError::from(ContainerError::Paused);
        assert_eq!(e.code(), ttrpc::Code::FAILED_PRECONDITION);
        assert_eq!(e.message(), "the container is paused");
        let e = AgentError::from(ContainerError::Exec {
            path: "/bin/nope".into(),
            source: std::io::Error::from_raw_os_error(2),
        });
        assert_eq!(
            e.message(),
            "cannot execute /bin/nope: No such file or directory (os error 2)"
        );
    }
}
