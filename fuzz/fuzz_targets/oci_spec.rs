//! OCI spec translation in the agent: everything that runs before any process is forked.
#![no_main]

use hull_agent::container::{config, mounts, resources, seccomp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(data) else {
        return;
    };
    let _ = config::check_supported(&spec);
    for m in spec.mounts().iter().flatten() {
        let _ = mounts::parse(m);
    }
    if let Some(linux) = spec.linux() {
        if let Some(r) = linux.resources() {
            let _ = resources::translate(r, &|_| false);
        }
        if let Some(profile) = linux.seccomp() {
            let _ = seccomp::compile(profile);
        }
    }
});
