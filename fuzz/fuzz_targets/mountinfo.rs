//! The mount-table reader the runtime trusts to find what to unmount.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for p in hull_runtime::share::mountinfo::mounts_under(&text, Path::new("/run/hull/p")) {
        assert!(p.starts_with("/run/hull/p"));
    }
});
