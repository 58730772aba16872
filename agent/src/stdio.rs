//! The guest end of the stdio streams (protocol: `hull_protocol::stdio`).
//!
//! Each process's stdio ends are made before it is spawned: pipes (close-on-exec on our side), or
//! a pty. Our ends wait in [`ProcessStdio`] until the host attaches the matching stream, so output
//! written before the host attaches stays in the pipe, and a slow reader of one channel never
//! blocks another. An output stream is closed only once its pipe reached end of file; output is
//! gathered into large stream writes on the way ([`crate::gather`]).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_protocol::agent::StdioConfig;
use hull_protocol::stdio::{self as proto, Channel, StdioHeader};
use hull_protocol::STDIO_PORT;
use nix::fcntl::OFlag;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_vsock::VsockStream;

use crate::container::ProcessIo;
use crate::fdio::FdStream;
use crate::gather::{copy_output, Gather};
use crate::host_vsock::HostListener;

/// Our ends of one process's stdio, waiting for the host's streams.
#[derive(Debug, Default)]
pub struct ProcessStdio {
    stdin: Mutex<Option<OwnedFd>>,
    stdout: Mutex<Option<OwnedFd>>,
    stderr: Mutex<Option<OwnedFd>>,
    pty_master: Mutex<Option<Arc<OwnedFd>>>,
    pty_attached: Mutex<bool>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

impl ProcessStdio {
    /// Makes the process's ends (returned as [`ProcessIo`]) and keeps ours.
    pub fn prepare(config: &StdioConfig) -> std::io::Result<(ProcessIo, Self)> {
        let ours = Self::default();
        if config.terminal {
            return Ok((ProcessIo::Terminal, ours));
        }
        let mut child = (None, None, None);
        if config.stdin {
            let (r, w) = pipe()?;
            child.0 = Some(r);
            *lock(&ours.stdin) = Some(w);
        }
        if config.stdout {
            let (r, w) = pipe()?;
            child.1 = Some(w);
            *lock(&ours.stdout) = Some(r);
        }
        if config.stderr {
            let (r, w) = pipe()?;
            child.2 = Some(w);
            *lock(&ours.stderr) = Some(r);
        }
        let io = ProcessIo::Pipes {
            stdin: child.0,
            stdout: child.1,
            stderr: child.2,
        };
        Ok((io, ours))
    }

    /// Keeps the pty master of a `terminal: true` process.
    pub fn set_pty_master(&self, master: OwnedFd) {
        *lock(&self.pty_master) = Some(Arc::new(master));
    }

    /// The pty master, for resizing.
    pub fn pty_master(&self) -> Option<Arc<OwnedFd>> {
        lock(&self.pty_master).clone()
    }

    /// Closes stdin now if no stdin stream was attached (an attached stream ends it in band).
    pub fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    /// Takes our end for `channel`, once.
    fn take(&self, channel: Channel) -> Option<Endpoint> {
        match channel {
            Channel::Stdin => lock(&self.stdin).take().map(Endpoint::Input),
            Channel::Stdout => lock(&self.stdout).take().map(Endpoint::Output),
            Channel::Stderr => lock(&self.stderr).take().map(Endpoint::Output),
            Channel::Pty => {
                let mut attached = lock(&self.pty_attached);
                if *attached {
                    return None;
                }
                let master = lock(&self.pty_master).clone()?;
                *attached = true;
                Some(Endpoint::Pty(master))
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Endpoint {
    Input(OwnedFd),
    Output(OwnedFd),
    Pty(Arc<OwnedFd>),
}

/// Finds a process's stdio by ids.
pub trait StdioLookup: Send + Sync + 'static {
    /// The stdio of `container_id`/`exec_id`, if that process exists.
    fn stdio(&self, container_id: &str, exec_id: &str) -> Option<Arc<ProcessStdio>>;
}

/// Accepts stdio streams from the host on [`STDIO_PORT`] forever.
pub async fn serve(lookup: Arc<dyn StdioLookup>) -> std::io::Result<()> {
    let listener = HostListener::bind(STDIO_PORT)?;
    loop {
        let stream = listener.accept().await?;
        let lookup = lookup.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, lookup.as_ref()).await {
                eprintln!("hull-agent: stdio stream: {e}");
            }
        });
    }
}

async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<String> {
    let mut line = Vec::with_capacity(64);
    loop {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() >= proto::MAX_HEADER_LEN {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

async fn handle(mut stream: VsockStream, lookup: &dyn StdioLookup) -> std::io::Result<()> {
    let line = tokio::time::timeout(Duration::from_secs(10), read_header(&mut stream))
        .await
        .map_err(|_| std::io::Error::other("no stdio header within 10 s"))??;
    let header = match StdioHeader::parse(&line) {
        Ok(h) => h,
        Err(e) => return refuse(stream, &e.to_string()).await,
    };
    let Some(stdio) = lookup.stdio(&header.container_id, &header.exec_id) else {
        return refuse(stream, "no such process").await;
    };
    let Some(endpoint) = stdio.take(header.channel) else {
        return refuse(stream, "channel not configured or already attached").await;
    };
    stream.write_all(b"OK\n").await?;
    let exec = if header.exec_id.is_empty() {
        "-"
    } else {
        &header.exec_id
    };
    let name = format!("{}/{exec} {}", header.container_id, header.channel);
    serve_endpoint(stream, endpoint)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{name}: {e}")))
}

async fn serve_endpoint(mut stream: VsockStream, endpoint: Endpoint) -> std::io::Result<()> {
    match endpoint {
        Endpoint::Output(fd) => {
            let mut from = FdStream::new(fd)?;
            copy_output(&mut from, &mut stream, Gather::Stream).await?;
        }
        Endpoint::Input(fd) => {
            let mut to = FdStream::new(fd)?;
            copy_frames(&mut stream, &mut to).await?;
        }
        Endpoint::Pty(master) => {
            let dup = master.try_clone()?;
            let mut output = FdStream::new(master.try_clone()?)?;
            let mut input = FdStream::new(dup)?;
            let (mut rx, mut tx) = tokio::io::split(stream);
            let inbound = tokio::spawn(async move {
                let _ = copy_frames(&mut rx, &mut input).await;
            });
            copy_output(&mut output, &mut tx, Gather::Ready).await?;
            inbound.abort();
        }
    }
    Ok(())
}

/// Copies framed input to `to` until the end-of-input frame or the stream ends, or until the
/// process closed its end of `to` (a normal end: the host drops what it still sends).
async fn copy_frames<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; proto::MAX_FRAME];
    loop {
        let mut prefix = [0u8; 4];
        if from.read_exact(&mut prefix).await.is_err() {
            return Ok(());
        }
        let len = proto::frame_len(prefix).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(());
        }
        from.read_exact(&mut buf[..len]).await?;
        match to.write_all(&buf[..len]).await {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            written => written?,
        }
    }
}

async fn refuse(mut stream: VsockStream, reason: &str) -> std::io::Result<()> {
    let reason: String = reason.chars().filter(|c| *c != '\n').take(200).collect();
    stream
        .write_all(format!("ERR {reason}\n").as_bytes())
        .await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_copied_until_end_of_input() {
        let mut wire = Vec::new();
        for chunk in [&b"hello "[..], b"world"] {
            wire.extend_from_slice(&proto::frame_prefix(chunk.len()).unwrap());
            wire.extend_from_slice(chunk);
        }
        wire.extend_from_slice(&proto::frame_prefix(0).unwrap());
        wire.extend_from_slice(b"ignored after EOF");
        let mut out = Vec::new();
        copy_frames(&mut &wire[..], &mut out).await.unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn oversized_frames_are_refused() {
        let wire = [0xffu8, 0xff, 0xff, 0xff, 1, 2, 3];
        let mut out = Vec::new();
        assert!(copy_frames(&mut &wire[..], &mut out).await.is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn each_channel_is_taken_once() {
        let cfg = StdioConfig {
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        let (_io, ours) = ProcessStdio::prepare(&cfg).unwrap();
        assert!(ours.take(Channel::Stdout).is_some());
        assert!(ours.take(Channel::Stdout).is_none());
        assert!(ours.take(Channel::Stderr).is_none());
        assert!(ours.take(Channel::Pty).is_none());
        ours.close_stdin();
        assert!(ours.take(Channel::Stdin).is_none());
    }
}
