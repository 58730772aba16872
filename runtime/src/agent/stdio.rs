//! Host ends of a process's stdio streams (protocol in `hull_protocol::stdio`).

use std::path::Path;
use std::time::Duration;

use hull_protocol::stdio::{self, Channel, StdioHeader};
use hull_protocol::STDIO_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::vsock::{self, VsockError};

/// Attaching a stdio stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StdioAttachError {
    /// The vsock connection failed.
    #[error("cannot open the stdio stream")]
    Connect(#[from] VsockError),
    /// Reading or writing the stream failed.
    #[error("stdio stream failed")]
    Io(#[from] std::io::Error),
    /// The agent refused the stream.
    #[error("the agent refused the {channel} stream: {reason}")]
    Refused {
        /// The channel.
        channel: Channel,
        /// The agent's reason.
        reason: String,
    },
    /// A frame was too large.
    #[error("bad stdio frame")]
    Frame(#[from] stdio::StdioError),
}

/// Opens the stream for `container_id`/`exec_id`'s `channel` through the VM's vsock socket.
pub async fn attach(
    uds: &Path,
    container_id: &str,
    exec_id: &str,
    channel: Channel,
) -> Result<UnixStream, StdioAttachError> {
    let mut stream = vsock::connect(uds, STDIO_PORT, Duration::from_secs(10)).await?;
    let header = StdioHeader {
        container_id: container_id.to_owned(),
        exec_id: exec_id.to_owned(),
        channel,
    };
    stream.write_all(header.encode().as_bytes()).await?;
    let mut reply = Vec::new();
    loop {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await? == 0 || reply.len() > 256 {
            return Err(StdioAttachError::Refused {
                channel,
                reason: "stream closed".into(),
            });
        }
        if b[0] == b'\n' {
            break;
        }
        reply.push(b[0]);
    }
    if reply == b"OK" {
        Ok(stream)
    } else {
        let text = String::from_utf8_lossy(&reply);
        Err(StdioAttachError::Refused {
            channel,
            reason: text.strip_prefix("ERR ").unwrap_or(&text).to_owned(),
        })
    }
}

/// Writes framed input to a `stdin` or `pty` stream.
#[derive(Debug)]
pub struct InputWriter<W> {
    inner: W,
}

impl<W: AsyncWriteExt + Unpin> InputWriter<W> {
    /// Wraps the write side of an attached stream.
    pub fn new(inner: W) -> Self {
        Self { inner }
    }

    /// Sends `data` (split into frames as needed).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StdioAttachError> {
        for chunk in data.chunks(stdio::MAX_FRAME) {
            self.inner
                .write_all(&stdio::frame_prefix(chunk.len())?)
                .await?;
            self.inner.write_all(chunk).await?;
        }
        Ok(())
    }

    /// Sends end of input.
    pub async fn close(mut self) -> Result<W, StdioAttachError> {
        self.inner.write_all(&stdio::frame_prefix(0)?).await?;
        self.inner.flush().await?;
        Ok(self.inner)
    }
}

/// Splits an attached `pty` stream into its output (raw) and input (framed) halves.
pub fn split_pty(stream: UnixStream) -> (OwnedReadHalf, InputWriter<OwnedWriteHalf>) {
    let (r, w) = stream.into_split();
    (r, InputWriter::new(w))
}
