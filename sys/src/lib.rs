//! Linux system calls that hull's host side (the runtime) and its guest side (the agent) both make,
//! and that neither `nix` nor `rustix` offers as safe functions, each behind one small safe function
//! with its kernel structure defined once.
//!
//! Why not in `hull-protocol`, the other crate both sides share: that crate is the host⇄guest wire
//! (message types, limits, how errors are shown), and what is here is the kernel's ABI, which has
//! nothing to do with what crosses the wire. Only `libc` is a dependency, so the static agent
//! gains nothing else from it.
//!
//! Every function makes its system call directly, takes no lock and does not allocate: the agent
//! calls them in a forked child between `fork` and `execve`.
#![warn(missing_docs)]

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The kernel's `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`, the only size Linux 5.12+ requires).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)`: sets the `MOUNT_ATTR_*` bits in `set` and clears those in `clear` on the
/// mount at `path`, resolved from `dir` (`None`: the working directory). `flags` are the `AT_*`
/// flags as `libc` defines them: `AT_RECURSIVE` for the whole tree, `AT_EMPTY_PATH` (with an
/// empty `path`) for the mount `dir` itself. Propagation and ID mapping are left as they are.
pub fn mount_setattr(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
    set: u64,
    clear: u64,
) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let dirfd = dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: `dirfd` is borrowed for the call (or AT_FDCWD), `path` is a live C string and `attr`
    // a live struct of the size passed, which the kernel only reads; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_attr_is_the_kernels_first_size() {
        // MOUNT_ATTR_SIZE_VER0 in <linux/mount.h>.
        assert_eq!(std::mem::size_of::<MountAttr>(), 32);
    }

    #[test]
    fn a_path_that_is_not_there_is_an_error_not_a_change() {
        // (With nothing to set or clear the kernel returns before it looks the path up.)
        let rdonly = libc::MOUNT_ATTR_RDONLY;
        let err = mount_setattr(None, c"/nonexistent/hull-sys", 0, rdonly, 0).unwrap_err();
        // ENOENT; ENOSYS on a kernel without mount_setattr; EPERM without CAP_SYS_ADMIN.
        assert!(
            matches!(
                err.raw_os_error(),
                Some(libc::ENOENT | libc::ENOSYS | libc::EPERM)
            ),
            "{err}"
        );
    }
}
