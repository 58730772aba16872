//! What the guest is: the answers to `Check` and `GuestDetails`.

use hull_protocol::agent::GuestDetailsResponse;

use crate::sandbox::AgentError;
use crate::selftest::GuestFacts;

/// This agent's version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The guest's CPUs, memory, kernel and cgroup controllers.
pub fn details() -> Result<GuestDetailsResponse, AgentError> {
    let facts = GuestFacts::read().map_err(|e| {
        AgentError::Io(
            "cannot read the guest's facts".into(),
            std::io::Error::other(e),
        )
    })?;
    let kernel_release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(GuestDetailsResponse {
        cpus: facts.cpus,
        mem_total_kib: facts.mem_total_kib,
        kernel_release,
        agent_version: AGENT_VERSION.to_owned(),
        cgroup_controllers: facts.cgroup_controllers,
        ..Default::default()
    })
}
