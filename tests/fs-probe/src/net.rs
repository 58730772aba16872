//! Connection attempts busybox cannot make (AF_VSOCK) or cannot report precisely (the errno of a
//! TCP connect), for the escape tests: each prints `connected` or the errno's name, so a test can
//! tell "refused by the host" from "no route at all".

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

/// How long a connect or a reply may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The name of `errno` (the ones a connect can give), else `errno <n>`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENODEV => "ENODEV",
        libc::ENXIO => "ENXIO",
        libc::EAGAIN => "EAGAIN",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ESTALE => "ESTALE",
        libc::EPIPE => "EPIPE",
        libc::EBADF => "EBADF",
        libc::ENOTDIR => "ENOTDIR",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

/// The size of `T` as a socket-address or option length.
fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

fn report(e: &std::io::Error) -> ExitCode {
    match e.raw_os_error() {
        Some(errno) => println!("{}", errno_name(errno)),
        None => println!("{}", e.kind()),
    }
    ExitCode::FAILURE
}

/// Sends `message` and a newline on a connected stream and prints what comes back (until EOF,
/// an error or [`TIMEOUT`], at most 4 KiB) as `reply: …`; an error before any byte came back is
/// printed as its errno's name instead.
fn converse(stream: &mut (impl Read + Write), message: &str) -> ExitCode {
    if let Err(e) = stream.write_all(format!("{message}\n").as_bytes()) {
        return report(&e);
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while reply.len() < buf.len() {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if reply.is_empty() => return report(&e),
            Err(_) => break,
        }
    }
    println!("reply: {}", String::from_utf8_lossy(&reply).trim_end());
    ExitCode::SUCCESS
}

/// A vsock stream socket connected to `cid`:`port` (the kernel's own connect timeout, two
/// seconds by default, bounds the wait).
fn vsock_stream(cid: u32, port: u32) -> std::io::Result<std::fs::File> {
    // SAFETY: a plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; all-zero is a valid value to fill in.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::sa_family_t::try_from(libc::AF_VSOCK).unwrap_or_default();
    addr.svm_cid = cid;
    addr.svm_port = port;
    let len = socklen::<libc::sockaddr_vm>();
    // SAFETY: `addr` is a valid sockaddr_vm of `len` bytes for the whole call.
    let rc = unsafe { libc::connect(owned.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let file = std::fs::File::from(owned);
    let timeout = libc::timeval {
        tv_sec: libc::time_t::try_from(TIMEOUT.as_secs()).unwrap_or(10),
        tv_usec: 0,
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: a timeval of the size given, on a socket this function owns.
        unsafe {
            libc::setsockopt(
                file.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(timeout).cast(),
                socklen::<libc::timeval>(),
            );
        }
    }
    Ok(file)
}

/// `vsock-connect CID PORT [MESSAGE]`: prints `connected` (then, with MESSAGE, sends it and
/// prints the reply) or the errno's name (exit 1).
pub fn vsock_connect(cid: &str, port: &str, message: Option<&str>) -> ExitCode {
    let (Ok(cid), Ok(port)) = (cid.parse::<u32>(), port.parse::<u32>()) else {
        eprintln!("hull-fs-probe: vsock-connect CID PORT: numbers expected");
        return ExitCode::from(2);
    };
    match vsock_stream(cid, port) {
        Ok(mut stream) => {
            println!("connected");
            message.map_or(ExitCode::SUCCESS, |m| converse(&mut stream, m))
        }
        Err(e) => report(&e),
    }
}

/// A ttrpc request frame for `service`/`method` with an empty payload: the 10-byte header
/// (length, stream id 1, type 1 = request, no flags) and the protobuf `Request` (fields 1 and 2).
fn ttrpc_request(service: &str, method: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (tag, text) in [(0x0a_u8, service), (0x12, method)] {
        body.push(tag);
        body.push(u8::try_from(text.len()).unwrap_or(0));
        body.extend_from_slice(text.as_bytes());
    }
    let mut frame = u32::try_from(body.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&[1, 0]);
    frame.extend_from_slice(&body);
    frame
}

/// `ttrpc-call CID PORT SERVICE METHOD`: prints `connected`, sends one ttrpc request and prints
/// `response: <n> bytes` (a ttrpc server answered, even if with an error status), `closed` (the
/// peer closed without answering) or the errno's name.
pub fn ttrpc_call(cid: &str, port: &str, service: &str, method: &str) -> ExitCode {
    let (Ok(cid), Ok(port)) = (cid.parse::<u32>(), port.parse::<u32>()) else {
        eprintln!("hull-fs-probe: ttrpc-call CID PORT SERVICE METHOD: numbers expected");
        return ExitCode::from(2);
    };
    if service.len() > 100 || method.len() > 100 {
        return ExitCode::from(2);
    }
    let mut stream = match vsock_stream(cid, port) {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    println!("connected");
    if let Err(e) = stream.write_all(&ttrpc_request(service, method)) {
        return report(&e);
    }
    let mut header = [0u8; 10];
    match stream.read_exact(&mut header) {
        Ok(()) => {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            println!("response: {len} bytes");
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            println!("closed");
            ExitCode::FAILURE
        }
        Err(e) => report(&e),
    }
}

/// `tcp-connect ADDR:PORT [MESSAGE]`: as [`vsock_connect`], over TCP.
pub fn tcp_connect(addr: &str, message: Option<&str>) -> ExitCode {
    let Ok(addr) = addr.parse::<SocketAddr>() else {
        eprintln!("hull-fs-probe: tcp-connect ADDR:PORT: an address expected");
        return ExitCode::from(2);
    };
    match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(mut stream) => {
            println!("connected");
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            message.map_or(ExitCode::SUCCESS, |m| converse(&mut stream, m))
        }
        Err(e) => report(&e),
    }
}
