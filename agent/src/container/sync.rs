//! The channel between the agent and the processes it forks to build a container.
//!
//! One `AF_UNIX` stream socketpair, both ends `CLOEXEC`, carries fixed 16-byte records. The forked
//! side never allocates to report: a failure is `(stage, index, errno)`, which the parent turns into
//! a [`ContainerError`](super::ContainerError) with the words. Success of `execve` is the child's
//! end closing (by `CLOEXEC`) without an error record, so nobody ever has to `waitpid`.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{read, write};
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::stage::{Failure, Stage};

/// A failure of the channel itself.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `socketpair(2)` failed.
    #[error("cannot create the sync socket")]
    Create(#[source] nix::Error),
    /// Reading or writing the socket failed.
    #[error("sync socket I/O failed")]
    Io(#[source] io::Error),
    /// The other side went away before saying what was expected.
    #[error("the container process exited before {expected}")]
    Eof {
        /// What the parent was waiting for.
        expected: &'static str,
    },
    /// Nothing came in time.
    #[error("timed out waiting for {expected}")]
    Timeout {
        /// What the parent was waiting for.
        expected: &'static str,
    },
    /// The record does not make sense at this point.
    #[error("unexpected message {kind} while waiting for {expected}")]
    Unexpected {
        /// The kind received.
        kind: u32,
        /// What the parent was waiting for.
        expected: &'static str,
    },
}

/// Record kinds.
pub(crate) const MSG_ERROR: u32 = 1;
pub(crate) const MSG_PID: u32 = 2;
pub(crate) const MSG_READY: u32 = 3;
pub(crate) const MSG_GO: u32 = 4;
pub(crate) const MSG_USERNS: u32 = 5;
pub(crate) const MSG_USERNS_DONE: u32 = 6;
/// Carries the pty master (SCM_RIGHTS) of a `terminal: true` process.
pub(crate) const MSG_PTY: u32 = 7;

/// How long the parent waits for one step of the child (a safety net, not a normal path).
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Msg {
    pub kind: u32,
    pub a: u32,
    pub b: i32,
    pub c: u32,
}

impl Msg {
    pub(crate) const fn new(kind: u32, a: u32) -> Self {
        Msg {
            kind,
            a,
            b: 0,
            c: 0,
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        out[4..8].copy_from_slice(&self.a.to_ne_bytes());
        out[8..12].copy_from_slice(&self.b.to_ne_bytes());
        out[12..16].copy_from_slice(&self.c.to_ne_bytes());
        out
    }

    fn from_bytes(b: &[u8; 16]) -> Self {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Msg {
            kind: u32::from_ne_bytes(word(0)),
            a: u32::from_ne_bytes(word(4)),
            b: i32::from_ne_bytes(word(8)),
            c: u32::from_ne_bytes(word(12)),
        }
    }
}

/// Both ends of a fresh channel: `(parent, child)`.
pub(crate) fn channel() -> Result<(OwnedFd, OwnedFd), SyncError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SyncError::Create)
}

/// Writes one record; usable in the forked child (no allocation, retries EINTR).
pub(crate) fn send_raw(fd: BorrowedFd<'_>, msg: Msg) -> bool {
    let bytes = msg.to_bytes();
    let mut off = 0;
    while off < bytes.len() {
        match write(fd, &bytes[off..]) {
            Ok(n) => off += n,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Child side: sends a descriptor (the pty master) with a [`MSG_PTY`] record. No allocation:
/// the control message is built on the stack (`nix`'s `sendmsg` would allocate it).
pub(crate) fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    let bytes = Msg::new(MSG_PTY, 0).to_bytes();
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(rustix::io::Errno::NOBUFS);
    }
    // One record of 16 bytes on a stream socket: a short write is not expected, and would show
    // as a protocol error on the other side.
    match sendmsg(
        sock,
        &[io::IoSlice::new(&bytes)],
        &mut control,
        SendFlags::empty(),
    )? {
        16 => Ok(()),
        _ => Err(rustix::io::Errno::IO),
    }
}

/// Reports a failure from the child.
pub(crate) fn send_failure(fd: BorrowedFd<'_>, f: Failure) {
    send_raw(
        fd,
        Msg {
            kind: MSG_ERROR,
            a: f.stage as u32,
            b: f.errno,
            c: f.index,
        },
    );
}

/// Reads one record in the child (blocking); `None` on EOF or error.
pub(crate) fn recv_raw(fd: BorrowedFd<'_>) -> Option<Msg> {
    let mut buf = [0u8; 16];
    let mut off = 0;
    while off < buf.len() {
        match read(fd, &mut buf[off..]) {
            Ok(0) => return None,
            Ok(n) => off += n,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
        }
    }
    Some(Msg::from_bytes(&buf))
}

/// What the parent got from one read.
#[derive(Debug)]
pub(crate) enum Received {
    /// A record that is not an error.
    Msg(Msg),
    /// The child reported a failure.
    Failed(Failure),
    /// The child sent its pty master.
    Pty(OwnedFd),
    /// The other end closed (for an exec'd process: `execve` succeeded).
    Eof,
}

/// Parent side: sends one record.
pub(crate) fn send(fd: BorrowedFd<'_>, msg: Msg) -> Result<(), SyncError> {
    if send_raw(fd, msg) {
        Ok(())
    } else {
        Err(SyncError::Io(io::Error::last_os_error()))
    }
}

/// Parent side: reads one record, waiting at most `timeout`.
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    expected: &'static str,
) -> Result<Received, SyncError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16];
    let mut off = 0;
    let mut passed: Option<OwnedFd> = None;
    while off < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SyncError::Timeout { expected });
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(SyncError::Io(e.into())),
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(&mut buf[off..])];
        let n = match recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SyncError::Io(e.into())),
        };
        // The first descriptor passed; any more are closed with the iterator.
        let mut got = None;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                for owned in fds {
                    got.get_or_insert(owned);
                }
            }
        }
        if got.is_some() {
            passed = got;
        }
        if n == 0 {
            if off == 0 {
                return Ok(Received::Eof);
            }
            return Err(SyncError::Eof { expected });
        }
        off += n;
    }
    let msg = Msg::from_bytes(&buf);
    if msg.kind == MSG_PTY {
        return match passed {
            Some(fd) => Ok(Received::Pty(fd)),
            None => Err(SyncError::Unexpected {
                kind: MSG_PTY,
                expected,
            }),
        };
    }
    if msg.kind == MSG_ERROR {
        return Ok(Received::Failed(Failure {
            stage: Stage::from_u32(msg.a),
            index: msg.c,
            errno: msg.b,
        }));
    }
    Ok(Received::Msg(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn records_round_trip_and_eof_is_seen() {
        let (p, c) = channel().unwrap();
        assert!(send_raw(c.as_fd(), Msg::new(MSG_PID, 1234)));
        send_failure(
            c.as_fd(),
            Failure {
                stage: Stage::Mount,
                index: 3,
                errno: libc::EPERM,
            },
        );
        drop(c);
        let t = Duration::from_secs(1);
        assert!(matches!(
            recv(p.as_fd(), t, "pid").unwrap(),
            Received::Msg(m) if m == Msg::new(MSG_PID, 1234)
        ));
        assert!(matches!(
            recv(p.as_fd(), t, "x").unwrap(),
            Received::Failed(Failure {
                stage: Stage::Mount,
                index: 3,
                errno: libc::EPERM
            })
        ));
        assert!(matches!(recv(p.as_fd(), t, "x").unwrap(), Received::Eof));
    }

    #[test]
    fn passes_a_descriptor() {
        let (p, c) = channel().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        send_fd(c.as_fd(), f.as_fd()).unwrap();
        match recv(p.as_fd(), Duration::from_secs(1), "pty").unwrap() {
            Received::Pty(fd) => {
                let st = nix::sys::stat::fstat(&fd).unwrap();
                assert_eq!(
                    st.st_rdev,
                    nix::sys::stat::stat("/dev/null").unwrap().st_rdev
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recv_times_out() {
        let (p, _c) = channel().unwrap();
        let e = recv(p.as_fd(), Duration::from_millis(20), "ready").unwrap_err();
        assert!(matches!(e, SyncError::Timeout { .. }));
    }
}
