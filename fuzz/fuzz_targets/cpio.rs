//! The cpio reader used to check initramfs images.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = hull_guest_image::cpio::read(data) {
        // What reads writes back to something that reads the same.
        let mut again = Vec::new();
        hull_guest_image::cpio::write(&mut again, &entries).expect("re-encode");
        assert_eq!(hull_guest_image::cpio::read(&again).expect("re-read"), entries);
    }
});
