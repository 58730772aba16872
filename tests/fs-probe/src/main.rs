//! `hull-fs-probe`: file-system operations busybox lacks, for the virtio-fs tests (built static and
//! copied into the test rootfs).
//!
//! - `xattr-set PATH NAME VALUE` / `xattr-get PATH NAME` (prints the value)
//! - `mmap-write PATH TEXT`: maps PATH shared, writes TEXT at offset 0, msync
//! - `mmap-read PATH LEN`: maps PATH shared, prints its first LEN bytes
//! - `vsock-connect CID PORT [MESSAGE]`, `ttrpc-call CID PORT SERVICE METHOD`, `tcp-connect
//!   ADDR:PORT [MESSAGE]`: connection attempts for the escape tests, see [`net`]
//! - `ids`: prints `uid=R euid=E` (a setuid copy of the probe shows whether setuid took effect)
//! - `handle-open PATH [NODEID GENERATION]`: `open_by_handle_at` with a forged FUSE handle, see
//!   [`handle`]
//! - `inotify-watch PATH`: prints PATH's inotify events until killed, see [`watch`]

mod handle;
mod net;
mod watch;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn fail(what: &str) -> ExitCode {
    eprintln!("hull-fs-probe: {what}: {}", std::io::Error::last_os_error());
    ExitCode::FAILURE
}

fn xattr_set(path: &str, name: &str, value: &str) -> ExitCode {
    let (p, n) = (cstr(path), cstr(name));
    // SAFETY: valid NUL-terminated strings and a buffer of the given length; checked.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        ExitCode::SUCCESS
    } else {
        fail("setxattr")
    }
}

fn xattr_get(path: &str, name: &str) -> ExitCode {
    let (p, n) = (cstr(path), cstr(name));
    let mut buf = [0u8; 256];
    // SAFETY: valid NUL-terminated strings; the buffer is writable for its length; checked.
    let rc = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let Ok(len) = usize::try_from(rc) else {
        return fail("getxattr");
    };
    println!("{}", String::from_utf8_lossy(&buf[..len]));
    ExitCode::SUCCESS
}

/// Maps `len` bytes of `path` shared and hands the mapping to `f`.
fn with_mapping(path: &str, len: usize, f: impl FnOnce(&mut [u8])) -> ExitCode {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(std::ffi::OsStr::from_bytes(path.as_bytes()))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hull-fs-probe: open {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: a fresh shared mapping of an open file; the result is checked before use.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return fail("mmap");
    }
    // SAFETY: the mapping is `len` bytes, readable and writable, and lives until munmap below.
    let bytes = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), len) };
    f(bytes);
    // SAFETY: `addr`/`len` are the mapping made above; the slice is no longer used.
    let rc = unsafe { libc::msync(addr, len, libc::MS_SYNC) | libc::munmap(addr, len) };
    if rc == 0 {
        ExitCode::SUCCESS
    } else {
        fail("msync/munmap")
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a[..] {
        ["xattr-set", path, name, value] => xattr_set(path, name, value),
        ["xattr-get", path, name] => xattr_get(path, name),
        ["mmap-write", path, text] => {
            with_mapping(path, text.len(), |m| m.copy_from_slice(text.as_bytes()))
        }
        ["mmap-read", path, len] => {
            let Ok(len) = len.parse() else {
                return ExitCode::FAILURE;
            };
            with_mapping(path, len, |m| println!("{}", String::from_utf8_lossy(m)))
        }
        ["ids"] => {
            // SAFETY: getuid/geteuid take no arguments and cannot fail.
            let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
            println!("uid={uid} euid={euid}");
            ExitCode::SUCCESS
        }
        ["vsock-connect", cid, port] => net::vsock_connect(cid, port, None),
        ["vsock-connect", cid, port, message] => net::vsock_connect(cid, port, Some(message)),
        ["handle-open", path] => handle::handle_open(path, None),
        ["handle-open", path, nodeid, generation] => {
            let (Ok(n), Ok(g)) = (nodeid.parse(), generation.parse()) else {
                return ExitCode::from(2);
            };
            handle::handle_open(path, Some((n, g)))
        }
        ["ttrpc-call", cid, port, service, method] => net::ttrpc_call(cid, port, service, method),
        ["tcp-connect", addr] => net::tcp_connect(addr, None),
        ["tcp-connect", addr, message] => net::tcp_connect(addr, Some(message)),
        ["inotify-watch", path] => watch::inotify_watch(path),
        _ => {
            eprintln!(
                "usage: hull-fs-probe xattr-set|xattr-get|mmap-write|mmap-read|ids|vsock-connect|ttrpc-call|tcp-connect|handle-open|inotify-watch …"
            );
            ExitCode::from(2)
        }
    }
}
