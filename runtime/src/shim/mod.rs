//! `containerd-shim-hull-v2`: containerd's shim v2 Task API (task v2, as containerd 1.6 speaks it)
//! mapped onto a pod VM and its agent.
//!
//! One shim process serves one pod: the first container it is asked to create is the sandbox, whose
//! VM boots in `Create`; containers naming it (CRI's `io.kubernetes.cri.sandbox-id`) join that VM,
//! and the VM stops when the last container is deleted. Layout:
//! - [`lifecycle`]: the shim binary's `start`/`delete` sub-commands and the server's life;
//! - [`service`]: the ttrpc `Task` impl, which only converts types and calls [`task`];
//! - [`task`]: one file per Task verb, holding the logic;
//! - [`pod`]: the state of the pod (its VM, containers and processes);
//! - [`boot_log`]: what is kept of a pod VM that failed to start;
//! - [`fault`]: a part of the pod VM dying (VMM, virtiofsd, vsock backend, guest panic) brings
//!   the pod down, every task ending as killed;
//! - [`stdio`]: containerd's fifos ↔ the agent's vsock stdio streams;
//! - [`spec`]: a container's OCI spec, parsed once and typed, written once for the agent;
//! - [`rootfs`]: a container's root filesystem and its spec, as the guest sees them;
//! - [`namespaces`]: a pod container's namespace paths, as the guest knows them;
//! - [`host_namespaces`]: what a Kubernetes pod may ask of the node that a VM cannot give;
//! - [`pod_shm`]: a pod container's `/dev/shm`, the pod's tmpfs in the guest;
//! - [`volumes`]: ConfigMap/Secret volumes copied into the guest and kept up to date;
//! - [`cri_o`]: CRI-O's ways (its pod annotations, pinned namespaces) made containerd's, and
//!   [`metrics_v1`] the cgroup v1 stats CRI-O 1.26 decodes;
//! - [`event_sink`]: an events endpoint that drops them, for engines that take none (CRI-O);
//! - [`config`], [`sizing`], [`metrics`], [`events`]: the pieces around them.

pub mod boot_log;
pub mod config;
pub mod cri_o;
pub mod event_sink;
pub mod events;
pub mod fault;
pub mod host_namespaces;
pub mod lifecycle;
pub mod metrics;
pub mod metrics_v1;
pub mod namespaces;
pub mod pod;
pub mod pod_shm;
pub mod rootfs;
pub mod service;
pub mod sizing;
pub mod spec;
pub mod start_mode;
pub mod stdin;
pub mod stdio;
pub mod task;
pub mod volumes;

mod error;

pub use error::ShimError;

/// The runtime name containerd knows the shim by.
pub const RUNTIME_NAME: &str = "io.containerd.hull.v2";

/// The annotation CRI puts on a pod's containers naming their sandbox.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
