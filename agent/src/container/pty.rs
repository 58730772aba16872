//! The pty of a `terminal: true` process, opened inside the container as runc does: from the
//! container's own `/dev/ptmx` (its devpts instance), so the slave's name resolves inside the
//! container (`tty`, `ps`, job control). The master goes to the agent over the sync socket
//! (`SCM_RIGHTS`); the slave becomes the controlling terminal and fds 0, 1, 2 (and, for the
//! init process, `/dev/console`).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::child::dup2_onto;
use super::stage::{Failure, Stage};
use super::sync;
use crate::sys;

/// Forked side, inside the container's mount namespace: opens a pty pair, sends the master to
/// the agent and returns the slave (close-on-exec) and its path.
pub fn open_in_container(sock: BorrowedFd<'_>) -> Result<(OwnedFd, CString), Failure> {
    let fail = |step: usize| move |e| Failure::nix(Stage::Terminal, step, e);
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    // Closed when this returns: the agent has its own copy then (or the step failed).
    let master = open(c"/dev/ptmx", flags, Mode::empty()).map_err(fail(1))?;
    rustix::pty::unlockpt(&master).map_err(|e| Failure::rustix(Stage::Terminal, 2, e))?;
    let n = sys::pty_number(master.as_fd()).map_err(fail(3))?;
    let path = CString::new(format!("/dev/pts/{n}"))
        .map_err(|_| Failure::new(Stage::Terminal, 4, libc::EINVAL))?;
    let slave = open(path.as_c_str(), flags, Mode::empty()).map_err(fail(4))?;
    sync::send_fd(sock, master.as_fd()).map_err(|e| Failure::rustix(Stage::Terminal, 5, e))?;
    Ok((slave, path))
}

/// Forked side: `slave` becomes the controlling terminal of this (session leader) process and
/// its fds 0, 1, 2.
pub fn attach(slave: OwnedFd) -> Result<(), Failure> {
    rustix::process::ioctl_tiocsctty(&slave).map_err(|e| Failure::rustix(Stage::Terminal, 6, e))?;
    for target in 0..3 {
        dup2_onto(slave.as_fd(), target).map_err(|e| Failure::nix(Stage::Stdio, target, e))?;
    }
    if slave.as_raw_fd() <= 2 {
        // It is one of 0, 1, 2 now: keep it open.
        let _ = slave.into_raw_fd();
    }
    Ok(())
}

/// Sets a pty's window size (agent side, on the master).
pub fn set_size(master: BorrowedFd<'_>, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, size)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opens_a_pty_and_passes_the_master() {
        let (parent, child) = sync::channel().unwrap();
        let (slave, path) = open_in_container(child.as_fd()).unwrap();
        assert!(rustix::termios::isatty(&slave));
        assert!(path.to_str().unwrap().starts_with("/dev/pts/"));
        match sync::recv(parent.as_fd(), Duration::from_secs(1), "pty").unwrap() {
            sync::Received::Pty(master) => {
                set_size(master.as_fd(), 24, 80).unwrap();
                let ws = rustix::termios::tcgetwinsize(&slave).unwrap();
                assert_eq!((ws.ws_row, ws.ws_col), (24, 80));
            }
            other => panic!("{other:?}"),
        }
    }
}
