//! A tap device: `/dev/net/tun` attached to the named interface with `TUNSETIFF` (the
//! interface is created if it does not exist), non-blocking, without the packet-info prefix and
//! without a vnet header: reads and writes are whole Ethernet frames.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::NetError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An attached tap.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to (or creates) the tap `name` (at most 15 bytes; the config checked it).
    pub fn open(name: &str) -> Result<Self, NetError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(NetError::OpenTun)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
            return Err(NetError::Attach(
                name.into(),
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            ));
        }
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: valid tun fd owned by `file`; `req` is a live ifreq-shaped buffer the kernel
        // reads and writes within its size; the return value is checked.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if r < 0 {
            return Err(NetError::Attach(
                name.into(),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            file,
            name: name.into(),
        })
    }

    /// Frames over an already-open descriptor that keeps frame boundaries (the tests use one
    /// end of a `SOCK_DGRAM` socket pair in place of a tap).
    pub fn from_file(file: File, name: &str) -> Self {
        Self {
            file,
            name: name.into(),
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    pub fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one frame.
    pub fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        self.file.write(frame)
    }

    /// The descriptor the event loop watches.
    pub fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
