//! Host side of the hybrid vsock: the guest's AF_VSOCK sockets reach the host as unix sockets.
//!
//! The protocol (Firecracker's, spoken by vhost-device-vsock for QEMU and by hull-vmm's in-process
//! device alike) is documented once in `docs/vsock.md`:
//! - host → guest: connect to the VM's vsock unix socket, write `CONNECT <port>\n`, read
//!   `OK <host side port>\n`; the stream is then connected to the guest's listener on `<port>`;
//! - guest → host: a guest connection to CID 2 port P lands on the unix socket `<uds>_<P>`, where a
//!   host process listens.

mod backend;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub use backend::{uds_path, VsockBackend};

/// Longest handshake reply accepted (`OK 4294967295\n` is 14 bytes).
const MAX_REPLY: usize = 32;

/// A hybrid vsock failure.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The unix socket could not be reached.
    #[error("cannot connect to vsock socket {0}")]
    Connect(PathBuf, #[source] std::io::Error),
    /// Nothing listens on the guest port (the backend closed the stream).
    #[error("guest port {0} refused the connection")]
    Refused(u32),
    /// The reply was not `OK <port>\n`.
    #[error("bad vsock handshake reply {0:?}")]
    BadReply(String),
    /// Reading or writing the handshake failed.
    #[error("vsock handshake failed")]
    Io(#[source] std::io::Error),
    /// The handshake took too long.
    #[error("vsock handshake to port {0} timed out")]
    Timeout(u32),
    /// The vsock backend process failed.
    #[error("cannot start the vsock backend {0}")]
    Backend(PathBuf, #[source] std::io::Error),
    /// The backend did not create its socket in time.
    #[error("the vsock backend did not create {0} in time; see {1}")]
    BackendNotReady(PathBuf, PathBuf),
}

/// Connects to guest `port` through the VM's hybrid vsock socket `uds`.
pub async fn connect(uds: &Path, port: u32, timeout: Duration) -> Result<UnixStream, VsockError> {
    tokio::time::timeout(timeout, handshake(uds, port))
        .await
        .map_err(|_| VsockError::Timeout(port))?
}

async fn handshake(uds: &Path, port: u32) -> Result<UnixStream, VsockError> {
    let mut stream = UnixStream::connect(uds)
        .await
        .map_err(|e| VsockError::Connect(uds.to_owned(), e))?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(VsockError::Io)?;
    // Byte by byte: whatever follows the newline belongs to the guest's protocol.
    let mut reply = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(0) => return Err(VsockError::Refused(port)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(VsockError::Refused(port))
            }
            Err(e) => return Err(VsockError::Io(e)),
        }
        if byte[0] == b'\n' {
            break;
        }
        reply.push(byte[0]);
        if reply.len() > MAX_REPLY {
            return Err(VsockError::BadReply(
                String::from_utf8_lossy(&reply).into_owned(),
            ));
        }
    }
    parse_reply(&reply)?;
    Ok(stream)
}

/// Checks an `OK <port>` reply (newline already removed).
fn parse_reply(reply: &[u8]) -> Result<u32, VsockError> {
    let bad = || VsockError::BadReply(String::from_utf8_lossy(reply).into_owned());
    let text = std::str::from_utf8(reply).map_err(|_| bad())?;
    text.strip_prefix("OK ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"OK 1073741824").unwrap(), 1_073_741_824);
        for bad in [&b"OK"[..], b"OK x", b"ERR 1", b"\xffOK 1", b"OK 1 2"] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
    }

    /// A fake backend that answers the handshake with `reply` and closes.
    async fn fake_backend(dir: &Path, reply: &'static [u8]) -> PathBuf {
        let path = dir.join("v.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 13];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"CONNECT 1024\n");
            s.write_all(reply).await.unwrap();
        });
        path
    }

    #[tokio::test]
    async fn handshake_keeps_what_follows_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_backend(dir.path(), b"OK 99\nhello").await;
        let mut s = connect(&path, 1024, Duration::from_secs(5)).await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn refusal_garbage_and_silence_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_backend(dir.path(), b"").await;
        let err = connect(&path, 1024, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, VsockError::Refused(1024)), "{err:?}");

        let dir2 = tempfile::tempdir().unwrap();
        let path = fake_backend(dir2.path(), &[b'x'; 64]).await;
        let err = connect(&path, 1024, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, VsockError::BadReply(_)), "{err:?}");

        let err = connect(&dir.path().join("none"), 1024, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, VsockError::Connect(..)), "{err:?}");
    }
}
