//! hull-agent: the guest side of hull. It runs as PID 1 inside every pod's microVM.
//!
//! This crate holds the logic; `main.rs` only picks a mode and makes sure PID 1 never returns.
#![warn(missing_docs)]

pub mod boot;
pub mod cmdline;
pub mod container;
pub mod fdio;
pub mod forward;
pub mod gather;
pub mod guest;
pub mod host_vsock;
pub mod loopback;
pub mod mounts;
pub mod network;
pub mod personalize;
pub mod power;
pub mod reaper;
pub mod rpc;
pub mod sandbox;
pub mod selftest;
pub mod server;
pub mod stats;
pub mod stdio;
pub mod sys;
pub mod volumes;

/// What every ready line starts with; the host looks for it on the serial console.
pub const READY_PREFIX: &str = "hull-agent ready:";
