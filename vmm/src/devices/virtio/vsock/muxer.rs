//! The host side of vsock, as unix sockets (the "hybrid" protocol, the same for hull-vmm and the
//! QEMU backend's vhost-user daemon):
//!
//! - host → guest: a host process connects to `<uds>` and writes `CONNECT <port>\n`; the guest
//!   gets a REQUEST for `<port>`; once it answers, the host reads `OK <host port>\n` and the
//!   stream carries data both ways;
//! - guest → host: a guest connection to CID 2 port P is connected to the unix socket `<uds>_P`,
//!   where a host process listens; no handshake on that side.
//!
//! The muxer owns the listener, the per-connection streams (edge-triggered on its own epoll, which
//! the VMM's event loop watches) and the queue of packets waiting for guest RX buffers.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::{Connection, Flush, State, BUF_ALLOC};
use super::packet::{Header, Op, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::VsockError;

/// The host's CID.
pub const HOST_CID: u64 = 2;
/// First host-side port given to host-initiated connections.
pub const LOCAL_PORT_BASE: u32 = 1 << 30;
/// Longest `CONNECT <port>\n` line.
const MAX_CONNECT_LINE: usize = 32;
/// Most control packets (REQUEST, RESPONSE, RST, CREDIT_UPDATE) waiting for guest RX buffers.
/// A guest can make every TX packet call for an answer and never post an RX buffer; past this
/// many, answers are dropped (an RST or a credit update: the guest asked for the loss) or their
/// connection is refused (a REQUEST or RESPONSE that could never arrive), so host memory stays
/// bounded.
pub const MAX_CONTROL: usize = 1024;
const LISTENER_TOKEN: u64 = u64::MAX;

type Key = (u32, u32); // (host port, guest port)

#[derive(Debug, Clone, Copy)]
struct Control {
    op: Op,
    flags: u32,
    local: u32,
    peer: u32,
}

#[derive(Debug)]
struct PendingHost {
    stream: UnixStream,
    line: Vec<u8>,
}

/// Counters for tests and debugging.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MuxerStats {
    /// RST packets sent to the guest.
    pub rst_sent: u64,
    /// Host `CONNECT` lines refused.
    pub bad_connect: u64,
    /// Control packets dropped, or connections refused, because [`MAX_CONTROL`] answers were
    /// already waiting for the guest.
    pub control_dropped: u64,
}

/// The host side of one vsock device.
#[derive(Debug)]
pub struct Muxer {
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    pending: HashMap<RawFd, PendingHost>,
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    control: VecDeque<Control>,
    next_local_port: u32,
    stats: MuxerStats,
    closed: bool,
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> VsockError {
    move |e| VsockError::Os(what, e)
}

/// Parses `CONNECT <port>` (without the newline).
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let port = text.strip_prefix("CONNECT ")?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

/// The unix socket a guest connection to host port `port` goes to.
pub fn guest_to_host_path(uds: &Path, port: u32) -> PathBuf {
    let mut p = uds.as_os_str().to_owned();
    p.push(format!("_{port}"));
    PathBuf::from(p)
}

impl Muxer {
    /// Listens on `uds` (a stale socket file there is replaced) for guest CID `cid`.
    pub fn new(cid: u64, uds: PathBuf) -> Result<Self, VsockError> {
        if let Ok(meta) = std::fs::symlink_metadata(&uds) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(VsockError::NotASocket(uds));
            }
            std::fs::remove_file(&uds).map_err(os("remove a stale vsock socket"))?;
        }
        let listener = UnixListener::bind(&uds).map_err(|e| VsockError::Bind(uds.clone(), e))?;
        listener
            .set_nonblocking(true)
            .map_err(os("make the vsock socket non-blocking"))?;
        let epoll = Epoll::new().map_err(os("create the vsock epoll"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
            )
            .map_err(os("watch the vsock socket"))?;
        Ok(Self {
            cid,
            uds,
            listener,
            epoll,
            pending: HashMap::new(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            control: VecDeque::new(),
            next_local_port: LOCAL_PORT_BASE,
            stats: MuxerStats::default(),
            closed: false,
        })
    }

    /// The epoll descriptor the VMM's event loop watches.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Counters.
    pub fn stats(&self) -> MuxerStats {
        self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Control packets waiting for guest RX buffers (at most [`MAX_CONTROL`]).
    pub fn pending_control(&self) -> usize {
        self.control.len()
    }

    /// Queues a control packet for the guest; `false` (and counted) when [`MAX_CONTROL`] are
    /// already waiting.
    fn push_control(&mut self, op: Op, local: u32, peer: u32) -> bool {
        if self.control.len() >= MAX_CONTROL {
            self.stats.control_dropped += 1;
            return false;
        }
        self.control.push_back(Control {
            op,
            flags: 0,
            local,
            peer,
        });
        true
    }

    fn watch(&self, fd: RawFd) -> std::io::Result<()> {
        let events =
            EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(events, u64::try_from(fd).unwrap_or(0)),
        )
    }

    fn reply_rst(&mut self, local: u32, peer: u32) {
        self.push_control(Op::Rst, local, peer);
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            self.by_fd.remove(&c.stream.as_raw_fd());
        }
    }

    fn reset(&mut self, key: Key) {
        self.remove(key);
        self.reply_rst(key.0, key.1);
    }

    /// Drops every connection (device reset).
    pub fn reset_all(&mut self) {
        self.conns.clear();
        self.by_fd.clear();
        self.pending.clear();
        self.control.clear();
    }

    /// Handles whatever the host side has ready: new connections, `CONNECT` lines, readable and
    /// writable streams.
    pub fn process_host_events(&mut self) {
        let mut events = [EpollEvent::default(); 32];
        loop {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for ev in &events[..n] {
                let token = ev.data();
                if token == LISTENER_TOKEN {
                    self.accept_all();
                    continue;
                }
                let Ok(fd) = RawFd::try_from(token) else {
                    continue;
                };
                if self.pending.contains_key(&fd) {
                    self.read_connect_line(fd);
                } else if let Some(&key) = self.by_fd.get(&fd) {
                    let set = ev.event_set();
                    let conn = self.conns.get_mut(&key).expect("by_fd and conns agree");
                    if set.intersects(
                        EventSet::IN | EventSet::HANG_UP | EventSet::READ_HANG_UP | EventSet::ERROR,
                    ) {
                        conn.readable = true;
                    }
                    if set.contains(EventSet::OUT) && conn.flush() == Flush::Reset {
                        self.reset(key);
                    }
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    if self.watch(fd).is_ok() {
                        self.pending.insert(
                            fd,
                            PendingHost {
                                stream,
                                line: Vec::new(),
                            },
                        );
                        // Data may already be there (edge-triggered: no event would follow).
                        self.read_connect_line(fd);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_connect_line(&mut self, fd: RawFd) {
        let Some(p) = self.pending.get_mut(&fd) else {
            return;
        };
        // One byte at a time: whatever follows the line belongs to the guest.
        let mut byte = [0u8; 1];
        let line = loop {
            match p.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break Some(std::mem::take(&mut p.line)),
                Ok(1) if p.line.len() < MAX_CONNECT_LINE => p.line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break None, // EOF, error or too long
            }
        };
        let p = self.pending.remove(&fd).expect("present");
        let Some(port) = line.as_deref().and_then(parse_connect) else {
            self.stats.bad_connect += 1;
            return; // dropping the stream closes it
        };
        let local = self.alloc_port();
        // A REQUEST the guest would never see: refuse the host (dropping the stream closes it).
        if !self.push_control(Op::Request, local, port) {
            return;
        }
        self.by_fd.insert(fd, (local, port));
        self.conns.insert(
            (local, port),
            Connection::new(p.stream, local, port, State::Connecting),
        );
    }

    fn alloc_port(&mut self) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(LOCAL_PORT_BASE);
            if !self.conns.keys().any(|(l, _)| *l == p) {
                return p;
            }
        }
    }

    /// A packet from the guest (header already bounds-checked against its buffer).
    pub fn recv(&mut self, hdr: &Header, payload: &[u8]) {
        let op = hdr.op();
        if hdr.dst_cid != HOST_CID || hdr.src_cid != self.cid || hdr.type_ != TYPE_STREAM {
            if op != Some(Op::Rst) {
                self.reply_rst(hdr.dst_port, hdr.src_port);
            }
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if let Some(c) = self.conns.get_mut(&key) {
            if op != Some(Op::Rst) {
                c.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
            }
        }
        match op {
            None => self.reset(key),
            Some(Op::Request) => self.guest_connect(hdr, key),
            Some(Op::Response) => match self.conns.get_mut(&key) {
                Some(c) if c.state == State::Connecting => {
                    c.state = State::Established;
                    c.readable = true;
                    let ok = format!("OK {}\n", c.local_port);
                    if !matches!(c.stream.write(ok.as_bytes()), Ok(n) if n == ok.len()) {
                        self.reset(key);
                    }
                }
                _ => self.reset(key),
            },
            Some(Op::Rst) => self.remove(key),
            Some(Op::Shutdown) => {
                let Some(c) = self.conns.get_mut(&key) else {
                    return self.reply_rst(key.0, key.1);
                };
                if hdr.flags & SHUTDOWN_SEND != 0 {
                    c.guest_shut_send = true;
                }
                let both = SHUTDOWN_SEND | SHUTDOWN_RCV;
                let done = hdr.flags & both == both || (c.guest_shut_send && c.host_eof);
                if done || c.flush() == Flush::Reset {
                    self.reset(key);
                }
            }
            Some(Op::Rw) => {
                let Some(c) = self
                    .conns
                    .get_mut(&key)
                    .filter(|c| c.state == State::Established)
                else {
                    return self.reset(key);
                };
                if c.send_to_host(payload) == Flush::Reset {
                    return self.reset(key);
                }
                if c.needs_credit_update() {
                    self.push_control(Op::CreditUpdate, key.0, key.1);
                }
            }
            Some(Op::CreditUpdate) => {
                if !self.conns.contains_key(&key) {
                    self.reply_rst(key.0, key.1);
                }
            }
            Some(Op::CreditRequest) => {
                if self.conns.contains_key(&key) {
                    self.push_control(Op::CreditUpdate, key.0, key.1);
                } else {
                    self.reply_rst(key.0, key.1);
                }
            }
        }
    }

    fn guest_connect(&mut self, hdr: &Header, key: Key) {
        if self.conns.contains_key(&key) {
            return self.reset(key);
        }
        if self.control.len() >= MAX_CONTROL {
            // Its RESPONSE could not be queued: do not connect at all.
            self.stats.control_dropped += 1;
            return;
        }
        let path = guest_to_host_path(&self.uds, hdr.dst_port);
        let stream = match UnixStream::connect(&path) {
            Ok(s) if s.set_nonblocking(true).is_ok() => s,
            _ => return self.reply_rst(key.0, key.1),
        };
        let fd = stream.as_raw_fd();
        if self.watch(fd).is_err() {
            return self.reply_rst(key.0, key.1);
        }
        let mut c = Connection::new(stream, key.0, key.1, State::Established);
        c.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        self.by_fd.insert(fd, key);
        self.conns.insert(key, c);
        self.push_control(Op::Response, key.0, key.1);
    }

    /// Whether a packet may be waiting for the guest.
    pub fn has_rx(&self) -> bool {
        !self.control.is_empty()
            || self.conns.values().any(|c| {
                c.state == State::Established && c.readable && !c.host_eof && c.peer_credit() > 0
            })
    }

    fn header(&mut self, op: Op, flags: u32, key: Key, len: u32) -> Header {
        let (buf_alloc, fwd_cnt) = match self.conns.get_mut(&key) {
            Some(c) => {
                c.last_fwd_cnt_sent = c.fwd_cnt;
                (BUF_ALLOC, c.fwd_cnt)
            }
            None => (0, 0),
        };
        if op == Op::Rst {
            self.stats.rst_sent += 1;
        }
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: key.0,
            dst_port: key.1,
            len,
            type_: TYPE_STREAM,
            op: op as u16,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// The next packet for the guest, its payload read into `buf` (at most `room` bytes).
    pub fn next_rx(&mut self, room: usize, buf: &mut [u8]) -> Option<(Header, usize)> {
        if let Some(c) = self.control.pop_front() {
            return Some((self.header(c.op, c.flags, (c.local, c.peer), 0), 0));
        }
        let keys: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Established && c.readable && !c.host_eof)
            .map(|(k, _)| *k)
            .collect();
        let cap = usize::try_from(MAX_PAYLOAD)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        for key in keys {
            let c = self.conns.get_mut(&key).expect("listed");
            let credit = usize::try_from(c.peer_credit()).unwrap_or(usize::MAX);
            let max = room.min(credit).min(cap);
            if max == 0 {
                continue;
            }
            match c.read_from_host(&mut buf[..max]) {
                Ok(Some(0)) => {
                    c.host_eof = true;
                    c.readable = false;
                    let flags = SHUTDOWN_SEND;
                    if c.guest_shut_send {
                        self.remove(key);
                        return Some((self.header(Op::Rst, 0, key, 0), 0));
                    }
                    return Some((self.header(Op::Shutdown, flags, key, 0), 0));
                }
                Ok(Some(n)) => {
                    c.rx_cnt = c.rx_cnt.wrapping_add(u32::try_from(n).unwrap_or(0));
                    let len = u32::try_from(n).unwrap_or(0);
                    return Some((self.header(Op::Rw, 0, key, len), n));
                }
                Ok(None) => c.readable = false,
                Err(_) => {
                    self.remove(key);
                    return Some((self.header(Op::Rst, 0, key, 0), 0));
                }
            }
        }
        None
    }
}

impl Muxer {
    /// Closes every connection and removes the listening socket's file.
    pub fn close(&mut self) {
        self.reset_all();
        if !self.closed {
            self.closed = true;
            let _ = std::fs::remove_file(&self.uds);
        }
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        // After `close` the last reference may be dropped on a vCPU thread, whose seccomp filter
        // has no unlink: nothing to do then.
        if !self.closed {
            let _ = std::fs::remove_file(&self.uds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines_are_strict() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Some(1024));
        assert_eq!(parse_connect(b"CONNECT 4294967295"), Some(u32::MAX));
        for bad in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"CONNECT -1",
            b"CONNECT 4294967296",
            b"connect 1",
            b"CONNECT 1 2",
            b"CONNECT +1",
            b"\xffCONNECT 1",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn guest_ports_map_to_suffixed_sockets() {
        assert_eq!(
            guest_to_host_path(Path::new("/run/hull/p/vsock.sock"), 1025),
            PathBuf::from("/run/hull/p/vsock.sock_1025")
        );
    }

    #[test]
    fn a_regular_file_at_the_socket_path_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v");
        std::fs::write(&p, b"data").unwrap();
        assert!(matches!(Muxer::new(3, p), Err(VsockError::NotASocket(_))));
    }
}
