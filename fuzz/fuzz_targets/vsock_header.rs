//! hull-vmm's virtio-vsock packet header, as it arrives from the guest.
#![no_main]

use hull_vmm::devices::virtio::vsock::packet::{Header, HDR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.get(..HDR_LEN) else {
        return;
    };
    let mut raw = [0u8; HDR_LEN];
    raw.copy_from_slice(bytes);
    let header = Header::decode(&raw);
    let _ = header.op();
    assert_eq!(Header::decode(&header.encode()).encode(), header.encode());
});
