//! The stdio stream header and input framing, as the agent reads them from the host.
#![no_main]

use hull_protocol::stdio::{frame_len, StdioHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(header) = StdioHeader::parse(&line) {
        // Whatever parses re-encodes to itself.
        assert_eq!(StdioHeader::parse(&header.encode()).as_ref(), Ok(&header));
    }
    if let Some(prefix) = data.get(..4) {
        let _ = frame_len([prefix[0], prefix[1], prefix[2], prefix[3]]);
    }
});
