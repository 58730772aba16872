//! The shim's error type and how each kind reaches containerd (a ttrpc status code that
//! containerd's errdefs understand, with the whole error chain as the message).

use std::path::PathBuf;

use crate::agent::client::error_chain;
use crate::agent::AgentClientError;
use crate::sandbox::SandboxError;
use crate::share::ShareError;

use super::config::ConfigError;
use super::host_namespaces::HostNamespaceError;
use super::rootfs::RootfsError;
use super::sizing::SizingError;
use super::spec::SpecError;
use super::stdio::StdioError;

/// A Task call failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// No such container or process.
    #[error("{0} not found")]
    NotFound(String),
    /// The container or process exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The request cannot be honoured as asked.
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    /// An id or field of the request breaks a limit of the protocol.
    #[error("invalid request")]
    Limit(#[from] hull_protocol::limits::LimitError),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// hull does not do this.
    #[error("{0} is not supported by hull")]
    Unsupported(&'static str),
    /// The bundle's `config.json` is unreadable or not an OCI spec.
    #[error("bad OCI spec {path}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SpecError,
    },
    /// A Kubernetes pod asks for the node's namespaces or host mount propagation.
    #[error(transparent)]
    HostNamespaces(#[from] HostNamespaceError),
    /// The pod's sizing (its annotations) cannot be honoured.
    #[error("cannot size the pod VM")]
    Sizing(#[from] SizingError),
    /// `/etc/hull/config.toml` is bad.
    #[error("hull configuration")]
    Config(#[from] ConfigError),
    /// The pod VM did not start.
    #[error("cannot start the pod VM")]
    Boot(#[from] SandboxError),
    /// The pod VM did not start: why, what the VMM and the guest console said last, and where
    /// their logs are kept (the pod's directory, where they were, is gone by the time containerd
    /// reports this; see `super::boot_log`).
    #[error("{message}")]
    BootFailed {
        /// The whole message.
        message: String,
        /// Why (already in the message).
        cause: SandboxError,
    },
    /// The guest's agent refused or failed. Its refusal reaches containerd as the agent's own
    /// message and nothing else (`the container is paused`).
    #[error(transparent)]
    Agent(#[from] AgentClientError),
    /// The root filesystem could not be prepared.
    #[error("root filesystem")]
    Rootfs(#[from] RootfsError),
    /// containerd's stdio could not be connected.
    #[error("stdio")]
    Stdio(#[from] StdioError),
    /// A host file operation failed.
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
}

impl ShimError {
    /// The ttrpc status code containerd gets for this error.
    pub fn code(&self) -> ttrpc::Code {
        use ttrpc::Code;
        match self {
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_)
            | ShimError::Limit(_)
            | ShimError::Spec { .. }
            | ShimError::Sizing(_)
            | ShimError::HostNamespaces(_) => Code::INVALID_ARGUMENT,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Unsupported(_) => Code::UNIMPLEMENTED,
            ShimError::Config(_) => Code::FAILED_PRECONDITION,
            ShimError::Agent(e) => match e.code() {
                Some(
                    c @ (Code::NOT_FOUND
                    | Code::ALREADY_EXISTS
                    | Code::INVALID_ARGUMENT
                    | Code::FAILED_PRECONDITION),
                ) => c,
                _ => Code::INTERNAL,
            },
            ShimError::Rootfs(RootfsError::Spec(_)) => Code::INVALID_ARGUMENT,
            ShimError::Rootfs(RootfsError::Share(
                _,
                ShareError::Unsupported(_) | ShareError::Spec(_),
            )) => Code::INVALID_ARGUMENT,
            ShimError::Boot(e) | ShimError::BootFailed { cause: e, .. } => boot_code(e),
            ShimError::Rootfs(_) | ShimError::Stdio(_) | ShimError::Io(..) => Code::INTERNAL,
        }
    }

    /// The error as containerd receives it.
    pub fn to_ttrpc(&self) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(self.code(), error_chain(self)))
    }
}

/// The code of a pod VM that did not start. The host cannot run the VM as configured (the VMM
/// died or never got the guest to its agent, a helper is missing or failed): FAILED_PRECONDITION,
/// which containerd passes on as such. (containerd 1.6 turns INTERNAL into `unknown`, so it is
/// kept for what is hull's own fault.)
fn boot_code(e: &SandboxError) -> ttrpc::Code {
    use crate::vm::VmError;
    match e {
        SandboxError::Seccomp(_) => ttrpc::Code::INTERNAL,
        SandboxError::Vm(
            VmError::InvalidSizing(_) | VmError::InvalidDevice(_) | VmError::InvalidMac(_),
        ) => ttrpc::Code::INVALID_ARGUMENT,
        _ => ttrpc::Code::FAILED_PRECONDITION,
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        e.to_ttrpc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_reach_containerd() {
        let e = ShimError::NotFound("container x".into());
        assert_eq!(e.code(), ttrpc::Code::NOT_FOUND);
        let e = ShimError::Spec {
            path: "/b/config.json".into(),
            source: SpecError::Read(std::io::Error::other("expected value at line 1")),
        };
        match e.to_ttrpc() {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), ttrpc::Code::INVALID_ARGUMENT);
                assert_eq!(
                    s.message(),
                    "bad OCI spec /b/config.json: expected value at line 1"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ShimError::Unsupported("checkpoint").code(),
            ttrpc::Code::UNIMPLEMENTED
        );
    }

    #[test]
    fn an_agent_refusal_reaches_containerd_as_its_message_alone() {
        let e = ShimError::Agent(AgentClientError::Refused {
            call: "ExecProcess",
            code: ttrpc::Code::FAILED_PRECONDITION,
            message: "the container is paused".into(),
        });
        match e.to_ttrpc() {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), ttrpc::Code::FAILED_PRECONDITION);
                assert_eq!(s.message(), "the container is paused");
            }
            other => panic!("{other:?}"),
        }
        let e = ShimError::Agent(AgentClientError::Rpc {
            call: "ExecProcess",
            source: ttrpc::Error::RemoteClosed,
        });
        assert_eq!(e.code(), ttrpc::Code::INTERNAL);
        assert_eq!(
            error_chain(&e),
            "agent call ExecProcess failed: ttrpc err: remote stream closed"
        );
    }
}
