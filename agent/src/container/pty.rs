//! The pty of a `terminal: true` process, opened inside the container as runc does: from the
//! container's own `/dev/ptmx` (its devpts instance), so the slave's name resolves inside the
//! container (`tty`, `ps`, job control). The master goes to the agent over the sync socket
//! (`SCM_RIGHTS`); the slave becomes the controlling terminal and fds 0, 1, 2 (and, for the
//! init process, `/dev/console`).

use std::ffi::CString;
use std::os::fd::RawFd;

use super::stage::{Failure, Stage};
use super::sync;

/// Forked side, inside the container's mount namespace: opens a pty pair, sends the master to
/// the agent and returns the slave (close-on-exec) and its path.
pub fn open_in_container(sock: RawFd) -> Result<(RawFd, CString), Failure> {
    let fail = |step: usize| Failure::last(Stage::Terminal, step);
    // SAFETY: open(2) of a static C string; checked.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(fail(1));
    }
    let result = (|| {
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads an int from a live stack variable; checked.
        if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } != 0 {
            return Err(fail(2));
        }
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes an unsigned int into a live stack variable; checked.
        if unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) } != 0 {
            return Err(fail(3));
        }
        let path = CString::new(format!("/dev/pts/{n}"))
            .map_err(|_| Failure::new(Stage::Terminal, 4, libc::EINVAL))?;
        // SAFETY: open(2) of a live C string; checked.
        let slave = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if slave < 0 {
            return Err(fail(4));
        }
        if !sync::send_fd(sock, master) {
            // SAFETY: closing the descriptor we just opened.
            unsafe { libc::close(slave) };
            return Err(fail(5));
        }
        Ok((slave, path))
    })();
    // SAFETY: the agent has its own copy now (or the step failed); ours is not needed.
    unsafe { libc::close(master) };
    result
}

/// Forked side: `slave` becomes the controlling terminal of this (session leader) process and
/// its fds 0, 1, 2.
pub fn attach(slave: RawFd) -> Result<(), Failure> {
    // SAFETY: ioctl(TIOCSCTTY) on a descriptor this process holds; the result is checked.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } != 0 {
        return Err(Failure::last(Stage::Terminal, 6));
    }
    for target in 0..3 {
        // SAFETY: dup2(2) of a descriptor we hold onto 0..=2; checked.
        if unsafe { libc::dup2(slave, target) } < 0 {
            return Err(Failure::last(Stage::Stdio, target.unsigned_abs() as usize));
        }
    }
    if slave > 2 {
        // SAFETY: the slave now lives on as 0, 1, 2.
        unsafe { libc::close(slave) };
    }
    Ok(())
}

/// Sets a pty's window size (agent side, on the master).
pub fn set_size(master: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a live winsize; a failure only leaves the default size.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Duration;

    #[test]
    fn opens_a_pty_and_passes_the_master() {
        let (parent, child) = sync::channel().unwrap();
        let (slave, path) = open_in_container(child.as_raw_fd()).unwrap();
        // SAFETY: isatty on a descriptor we own; closed below.
        assert_eq!(unsafe { libc::isatty(slave) }, 1);
        assert!(path.to_str().unwrap().starts_with("/dev/pts/"));
        match sync::recv(parent.as_fd(), Duration::from_secs(1), "pty").unwrap() {
            sync::Received::Pty(master) => {
                set_size(master.as_raw_fd(), 24, 80);
                let mut ws = libc::winsize {
                    ws_row: 0,
                    ws_col: 0,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCGWINSZ into a live struct.
                assert_eq!(unsafe { libc::ioctl(slave, libc::TIOCGWINSZ, &mut ws) }, 0);
                assert_eq!((ws.ws_row, ws.ws_col), (24, 80));
            }
            other => panic!("{other:?}"),
        }
        // SAFETY: our descriptor.
        unsafe { libc::close(slave) };
    }
}
