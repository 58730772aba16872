//! `inotify-watch PATH`: a real inotify watcher, as a ConfigMap reloader runs one: watches PATH
//! (a directory: the events of its entries) and prints one line per event, `<EVENT> <name>`
//! (`IN_MOVED_TO ..data`), flushed at once, until killed. busybox-static has no `inotifyd`.

use std::io::Write;
use std::process::ExitCode;

use super::{cstr, fail};

/// The event bits printed, by name.
const NAMES: [(u32, &str); 12] = [
    (libc::IN_ACCESS, "IN_ACCESS"),
    (libc::IN_MODIFY, "IN_MODIFY"),
    (libc::IN_ATTRIB, "IN_ATTRIB"),
    (libc::IN_CLOSE_WRITE, "IN_CLOSE_WRITE"),
    (libc::IN_CREATE, "IN_CREATE"),
    (libc::IN_DELETE, "IN_DELETE"),
    (libc::IN_DELETE_SELF, "IN_DELETE_SELF"),
    (libc::IN_MOVED_FROM, "IN_MOVED_FROM"),
    (libc::IN_MOVED_TO, "IN_MOVED_TO"),
    (libc::IN_MOVE_SELF, "IN_MOVE_SELF"),
    (libc::IN_IGNORED, "IN_IGNORED"),
    (libc::IN_Q_OVERFLOW, "IN_Q_OVERFLOW"),
];

pub fn inotify_watch(path: &str) -> ExitCode {
    // SAFETY: no arguments but flags; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return fail("inotify_init1");
    }
    let p = cstr(path);
    let mask = libc::IN_ALL_EVENTS & !(libc::IN_ACCESS | libc::IN_OPEN | libc::IN_CLOSE_NOWRITE);
    // SAFETY: an inotify descriptor and a NUL-terminated path; checked.
    if unsafe { libc::inotify_add_watch(fd, p.as_ptr(), mask) } < 0 {
        return fail("inotify_add_watch");
    }
    println!("watching {path}");
    let header = std::mem::size_of::<libc::inotify_event>();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = std::io::stdout();
    loop {
        // SAFETY: the buffer is writable for its length; the result is checked.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else {
            return fail("read");
        };
        let mut at = 0;
        while at + header <= n {
            // SAFETY: `header` bytes at `at` are inside what the kernel wrote; read unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf.as_ptr().add(at).cast()) };
            let len = usize::try_from(ev.len).unwrap_or(0);
            let name_bytes = buf.get(at + header..at + header + len).unwrap_or_default();
            let name = String::from_utf8_lossy(name_bytes);
            let name = name.trim_end_matches('\0');
            for (bit, label) in NAMES {
                if ev.mask & bit != 0 {
                    let _ = writeln!(out, "{label} {name}");
                }
            }
            at += header + len;
        }
        let _ = out.flush();
    }
}
