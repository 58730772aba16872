//! `handle-open PATH [NODEID GENERATION]`: the "shocker" attempt on virtio-fs. Takes PATH's file
//! handle (`name_to_handle_at`), optionally rewrites the FUSE node id and generation in it, opens
//! it with `open_by_handle_at` against PATH's mount and prints the directory's entries (`opened:
//! a b …`) or the errno's name. Without a node id it reopens PATH itself (the positive control).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use crate::net::errno_name;

/// Room for the handle (MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// `struct file_handle` with room for [`MAX_HANDLE`] bytes.
#[repr(C)]
struct FileHandle {
    bytes: u32,
    kind: i32,
    data: [u8; MAX_HANDLE],
}

fn errno() -> ExitCode {
    let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    println!("{}", errno_name(e));
    ExitCode::FAILURE
}

/// See the module documentation.
pub fn handle_open(path: &str, node: Option<(u64, u32)>) -> ExitCode {
    let Ok(cpath) = CString::new(path.as_bytes()) else {
        return ExitCode::from(2);
    };
    let mut handle = FileHandle {
        bytes: u32::try_from(MAX_HANDLE).unwrap_or(0),
        kind: 0,
        data: [0; MAX_HANDLE],
    };
    let mut mount_id = 0;
    // SAFETY: a valid path and a handle buffer of the size announced in `bytes`; checked.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            std::ptr::addr_of_mut!(handle),
            std::ptr::addr_of_mut!(mount_id),
            0,
        )
    };
    if rc != 0 {
        return errno();
    }
    println!("handle type {:#x}, {} bytes", handle.kind, handle.bytes);
    if let Some((nodeid, generation)) = node {
        // FUSE's handle: node id high and low 32 bits, then the generation (fuse_encode_fh).
        let id = nodeid.to_ne_bytes();
        let (high, low) = if cfg!(target_endian = "little") {
            (&id[4..], &id[..4])
        } else {
            (&id[..4], &id[4..])
        };
        handle.data[..4].copy_from_slice(high);
        handle.data[4..8].copy_from_slice(low);
        handle.data[8..12].copy_from_slice(&generation.to_ne_bytes());
    }
    let mount = match std::fs::File::open(std::ffi::OsStr::from_bytes(path.as_bytes())) {
        Ok(f) => f,
        Err(e) => {
            println!("{}", errno_name(e.raw_os_error().unwrap_or(0)));
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: `mount` is an open fd on PATH's mount and `handle` a filled-in file_handle.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            std::ptr::addr_of_mut!(handle),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    let Ok(fd) = i32::try_from(fd) else {
        return ExitCode::FAILURE;
    };
    if fd < 0 {
        return errno();
    }
    // SAFETY: a fresh descriptor the call above returned; nothing else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut names: Vec<String> = listing
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    println!("opened: {}", names.join(" "));
    ExitCode::SUCCESS
}
