//! Agent API requests as the agent decodes them: protobuf, then the limits, then the JSON inside.
#![no_main]

use hull_protocol::agent::{CreateContainerRequest, CreateSandboxRequest, ExecProcessRequest, UpdateContainerRequest};
use hull_protocol::limits;
use libfuzzer_sys::fuzz_target;
use protobuf::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(r) = CreateContainerRequest::parse_from_bytes(bytes) {
                let ok = limits::check_id("container id", &r.container_id).is_ok()
                    && limits::check_len("spec", r.oci_spec_json.len(), limits::MAX_SPEC_LEN).is_ok()
                    && limits::check_abs_path("rootfs", &r.rootfs).is_ok();
                if ok {
                    let _ = serde_json::from_slice::<oci_spec::runtime::Spec>(&r.oci_spec_json);
                }
            }
        }
        1 => {
            if let Ok(r) = ExecProcessRequest::parse_from_bytes(bytes) {
                if limits::check_exec_id(&r.exec_id).is_ok() {
                    let _ = serde_json::from_slice::<oci_spec::runtime::Process>(&r.oci_process_json);
                }
            }
        }
        2 => {
            if let Ok(r) = CreateSandboxRequest::parse_from_bytes(bytes) {
                let _ = limits::check_sandbox(&r);
            }
        }
        _ => {
            if let Ok(r) = UpdateContainerRequest::parse_from_bytes(bytes) {
                if let Ok(res) = serde_json::from_slice::<oci_spec::runtime::LinuxResources>(&r.resources_json) {
                    let _ = hull_agent::container::resources::translate(&res, &|_| true);
                }
            }
        }
    }
});
