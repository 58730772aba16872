//! One vsock stream between a guest port and a host unix socket: its state, its credit in both
//! directions (virtio 1.2 §5.10.6.3) and the bytes waiting for a slow host reader.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// Bytes hull-vmm buffers per connection for the host side; advertised to the guest as
/// `buf_alloc`, so a guest that respects credit never overflows it.
pub const BUF_ALLOC: u32 = 256 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The host asked (`CONNECT`); waiting for the guest's RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

/// A connection's outcome after the host side was written to.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything written or buffered.
    Ok,
    /// The host side is gone or the guest overran its credit: reset the connection.
    Reset,
}

/// One connection.
#[derive(Debug)]
pub struct Connection {
    /// The host side.
    pub stream: UnixStream,
    /// Host-side port (ours).
    pub local_port: u32,
    /// Guest-side port.
    pub peer_port: u32,
    /// State.
    pub state: State,
    /// Guest's receive buffer size.
    pub peer_buf_alloc: u32,
    /// Guest's consumed-bytes counter.
    pub peer_fwd_cnt: u32,
    /// Bytes sent to the guest, ever (wrapping).
    pub rx_cnt: u32,
    /// Bytes from the guest written to the host stream, ever (wrapping).
    pub fwd_cnt: u32,
    /// `fwd_cnt` last told to the guest.
    pub last_fwd_cnt_sent: u32,
    /// Bytes from the guest the host stream did not take yet.
    pub pending: Vec<u8>,
    /// The host stream may have data to read (edge-triggered readiness not yet drained).
    pub readable: bool,
    /// The host stream reached EOF (the guest was told with a SHUTDOWN).
    pub host_eof: bool,
    /// The guest said it sends no more.
    pub guest_shut_send: bool,
    /// The host stream was shut down for writing (once: each shutdown wakes the stream's
    /// edge-triggered epoll entry again, so repeating it on every wake-up spun the event loop).
    pub host_shut_write: bool,
}

impl Connection {
    /// A connection over `stream`.
    pub fn new(stream: UnixStream, local_port: u32, peer_port: u32, state: State) -> Self {
        Self {
            stream,
            local_port,
            peer_port,
            state,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            rx_cnt: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            pending: Vec::new(),
            readable: state == State::Established,
            host_eof: false,
            guest_shut_send: false,
            host_shut_write: false,
        }
    }

    /// Bytes the guest can still take.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Records the guest's credit from any packet header.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
    }

    /// Whether the guest should hear about freed buffer space without waiting for data.
    pub fn needs_credit_update(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= BUF_ALLOC / 2
    }

    /// Data from the guest for the host stream.
    pub fn send_to_host(&mut self, data: &[u8]) -> Flush {
        let pending = u32::try_from(self.pending.len() + data.len()).unwrap_or(u32::MAX);
        if pending > BUF_ALLOC {
            return Flush::Reset;
        }
        self.pending.extend_from_slice(data);
        self.flush()
    }

    /// Writes buffered bytes to the host stream until it would block.
    pub fn flush(&mut self) -> Flush {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return Flush::Reset,
                Ok(n) => {
                    self.pending.drain(..n);
                    self.fwd_cnt = self
                        .fwd_cnt
                        .wrapping_add(u32::try_from(n).unwrap_or(u32::MAX));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Flush::Reset,
            }
        }
        if self.pending.is_empty() && self.guest_shut_send && !self.host_shut_write {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.host_shut_write = true;
        }
        Flush::Ok
    }

    /// Reads up to `max` bytes from the host stream. `Ok(None)`: nothing now (would block);
    /// `Ok(Some(0))`: EOF.
    pub fn read_from_host(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Connection::new(a, 1 << 30, 5000, State::Established), b)
    }

    #[test]
    fn the_host_stream_is_shut_for_writing_once_so_its_edge_fires_once() {
        use std::os::fd::AsRawFd;
        use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
        let (mut c, mut b) = pair();
        let epoll = Epoll::new().unwrap();
        let fd = c.stream.as_raw_fd();
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(set, 1))
            .unwrap();
        let mut events = [EpollEvent::default(); 4];
        assert_eq!(epoll.wait(0, &mut events).unwrap(), 1, "the first edge");
        c.pending.extend_from_slice(b"bye");
        c.guest_shut_send = true;
        assert_eq!(c.flush(), Flush::Ok);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bye", "the data, then the end of the stream");
        // The shutdown woke the stream once; flushing again must not wake it again (it did, and
        // the muxer's event loop flushed on every wake-up: a guest could spin it forever).
        while epoll.wait(0, &mut events).unwrap() > 0 {}
        assert_eq!(c.flush(), Flush::Ok);
        assert_eq!(
            epoll.wait(0, &mut events).unwrap(),
            0,
            "a new edge after a no-op flush"
        );
    }

    #[test]
    fn credit_follows_the_counters_and_wraps() {
        let (mut c, _b) = pair();
        assert_eq!(c.peer_credit(), 0);
        c.update_peer_credit(1000, 0);
        c.rx_cnt = 600;
        assert_eq!(c.peer_credit(), 400);
        c.update_peer_credit(1000, 600);
        assert_eq!(c.peer_credit(), 1000);
        c.rx_cnt = 5;
        c.peer_fwd_cnt = u32::MAX - 4; // 10 bytes in flight across the wrap
        assert_eq!(c.peer_credit(), 990);
        c.rx_cnt = 2000;
        c.peer_fwd_cnt = 0;
        assert_eq!(
            c.peer_credit(),
            0,
            "a guest that lies about credit gets none"
        );
    }

    #[test]
    fn host_writes_count_forwarded_bytes_and_overrun_resets() {
        let (mut c, mut b) = pair();
        assert_eq!(c.send_to_host(b"hello"), Flush::Ok);
        assert_eq!(c.fwd_cnt, 5);
        let mut got = [0u8; 5];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        c.pending = vec![0; BUF_ALLOC as usize];
        assert_eq!(c.send_to_host(b"x"), Flush::Reset);
    }

    #[test]
    fn credit_update_is_due_after_half_the_buffer() {
        let (mut c, _b) = pair();
        assert!(!c.needs_credit_update());
        c.fwd_cnt = BUF_ALLOC / 2;
        assert!(c.needs_credit_update());
        c.last_fwd_cnt_sent = c.fwd_cnt;
        assert!(!c.needs_credit_update());
    }
}
