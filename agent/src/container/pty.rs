//! The pty of a `terminal: true` process: opened in the agent from its own `/dev/ptmx`; the
//! slave becomes the process's controlling terminal and its fds 0, 1, 2, and is bind-mounted on
//! the container's `/dev/console`. The master goes back to the caller.

use std::ffi::CString;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

use super::stage::{Failure, Stage};

/// A pty failure.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// Opening or unlocking the master failed.
    #[error("cannot open a pty master")]
    Master(#[source] nix::Error),
    /// Opening the slave failed.
    #[error("cannot open the pty slave")]
    Slave(#[source] std::io::Error),
}

/// Both sides of a fresh pty.
#[derive(Debug)]
pub struct Pty {
    /// The master (the caller's side).
    pub master: OwnedFd,
    /// The slave (the process's side).
    pub slave: OwnedFd,
    /// The slave's path, for `/dev/console`.
    pub slave_path: CString,
}

/// Opens a pty pair, both ends `CLOEXEC`.
pub fn open() -> Result<Pty, PtyError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(PtyError::Master)?;
    grantpt(&master).map_err(PtyError::Master)?;
    unlockpt(&master).map_err(PtyError::Master)?;
    let name = ptsname_r(&master).map_err(PtyError::Master)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(PtyError::Slave)?;
    let slave_path = CString::new(name).map_err(|e| PtyError::Slave(std::io::Error::other(e)))?;
    // SAFETY: into_raw_fd hands over ownership of a valid, open master descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok(Pty {
        master,
        slave: slave.into(),
        slave_path,
    })
}

/// Forked side: a new session with `slave` as its controlling terminal.
pub fn make_controlling(slave: i32) -> Result<(), Failure> {
    // SAFETY: ioctl(TIOCSCTTY) on a descriptor this process holds; the result is checked.
    let r = unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) };
    if r != 0 {
        return Err(Failure::last(Stage::Terminal, 0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn opens_a_pty_pair() {
        let p = open().unwrap();
        // SAFETY: isatty on a descriptor we own.
        assert_eq!(unsafe { libc::isatty(p.slave.as_raw_fd()) }, 1);
        assert!(p.slave_path.to_str().unwrap().starts_with("/dev/pts/"));
    }
}
