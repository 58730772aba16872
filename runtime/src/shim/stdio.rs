//! containerd's stdio (fifos, or `file://` paths) ↔ the agent's vsock stdio streams.
//!
//! Without a terminal each channel is its own stream; with one, a single pty stream carries the
//! output to containerd's stdout and the input from its stdin. Input goes through an
//! [`InputWriter`] (framed, end of input in band); `CloseIO` and the end of the stdin fifo both
//! end it. Output streams end when the guest pipe reaches EOF, so a process's output is complete
//! once they have ([`Attached::drain`]).
//!
//! An output fifo is written only once its reader (containerd, or its client: `ctr` opens its end
//! in the background) has it open: bytes left in a fifo that nobody holds open are discarded, so
//! a short-lived process's output written and closed before the reader came would be lost. And a
//! copy ends only once the reader has taken what was written (bounded by [`READ_BOUND`]): `ctr`
//! gives up a fifo whose background open has not finished when the process is deleted, so the
//! exit must not be reported while the output still sits in the fifo.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::stdio::Channel;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::{pipe, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::agent::client::StdioConfig;
use crate::agent::stdio::{attach, split_pty, InputWriter, StdioAttachError};

/// Connecting or copying stdio failed.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// The agent's stream could not be attached.
    #[error("cannot attach the guest's stream")]
    Attach(#[from] StdioAttachError),
    /// containerd's end could not be opened.
    #[error("cannot open {0}")]
    Open(String, #[source] std::io::Error),
    /// The kind of stdio path is not supported.
    #[error("unsupported stdio {0:?} (fifos and file:// paths are)")]
    Unsupported(String),
}

/// containerd's stdio of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// stdin fifo, empty for none.
    pub stdin: String,
    /// stdout fifo or `file://` path, empty for none.
    pub stdout: String,
    /// stderr fifo or `file://` path, empty for none (and unused with a terminal).
    pub stderr: String,
    /// A pty instead of pipes.
    pub terminal: bool,
}

impl StdioPaths {
    /// Which streams the host will attach.
    pub fn agent_config(&self) -> StdioConfig {
        if self.terminal {
            StdioConfig {
                terminal: true,
                ..Default::default()
            }
        } else {
            StdioConfig {
                stdin: !self.stdin.is_empty(),
                stdout: !self.stdout.is_empty(),
                stderr: !self.stderr.is_empty(),
                ..Default::default()
            }
        }
    }
}

/// The input side of a process.
#[derive(Debug)]
enum Input {
    Pipe(InputWriter<UnixStream>),
    Pty(InputWriter<OwnedWriteHalf>),
}

impl Input {
    async fn write(&mut self, data: &[u8]) -> Result<(), StdioAttachError> {
        match self {
            Input::Pipe(w) => w.write(data).await,
            Input::Pty(w) => w.write(data).await,
        }
    }

    async fn close(self) -> Result<(), StdioAttachError> {
        match self {
            Input::Pipe(w) => w.close().await.map(drop),
            // Dropping the write half would shut the socket down for writing, which ends the
            // whole hybrid vsock connection (and so the pty's output): keep it open.
            Input::Pty(w) => w.close().await.map(OwnedWriteHalf::forget),
        }
    }
}

type Shared<T> = Arc<Mutex<Option<T>>>;

/// The host ends of one process's stdio, copying in the background.
#[derive(Debug, Default)]
pub struct Attached {
    input: Shared<Input>,
    stdin_copy: Option<JoinHandle<()>>,
    outputs: Vec<JoinHandle<()>>,
}

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Attaches `cid`/`eid`'s streams through the VM's vsock socket `uds` and starts copying
/// between them and containerd's `paths`.
pub async fn attach_process(
    uds: &Path,
    cid: &str,
    eid: &str,
    paths: &StdioPaths,
) -> Result<Attached, StdioError> {
    let mut attached = Attached::default();
    if paths.terminal {
        let stream = attach(uds, cid, eid, Channel::Pty).await?;
        let (out, input) = split_pty(stream);
        if !paths.stdout.is_empty() {
            let sink = Sink::open(&paths.stdout).await?;
            let label = format!("{cid}/{eid} pty");
            attached
                .outputs
                .push(tokio::spawn(copy_out(out, sink, label)));
        }
        *attached.input.lock().await = Some(Input::Pty(input));
    } else {
        for (path, channel) in [
            (&paths.stdout, Channel::Stdout),
            (&paths.stderr, Channel::Stderr),
        ] {
            if path.is_empty() {
                continue;
            }
            let sink = Sink::open(path).await?;
            let stream = attach(uds, cid, eid, channel).await?;
            let label = format!("{cid}/{eid} {channel:?}");
            attached
                .outputs
                .push(tokio::spawn(copy_out(stream, sink, label)));
        }
        if !paths.stdin.is_empty() {
            let stream = attach(uds, cid, eid, Channel::Stdin).await?;
            *attached.input.lock().await = Some(Input::Pipe(InputWriter::new(stream)));
        }
    }
    if !paths.stdin.is_empty() {
        let input = attached.input.clone();
        let path = paths.stdin.clone();
        let close_at_eof = !paths.terminal;
        attached.stdin_copy = Some(tokio::spawn(copy_in(path, input, close_at_eof)));
    }
    Ok(attached)
}

impl Attached {
    /// The output copies, to [`drain`] without holding `self`.
    pub fn take_outputs(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.outputs)
    }

    /// Ends the process's input (`CloseIO`); nothing happens when it has ended already.
    pub async fn close_input(&self) -> Result<(), StdioError> {
        if let Some(copy) = &self.stdin_copy {
            copy.abort();
        }
        if let Some(input) = self.input.lock().await.take() {
            input.close().await?;
        }
        Ok(())
    }

    /// Writes `data` to the process's input (tests and tools).
    pub async fn write_input(&self, data: &[u8]) -> Result<(), StdioError> {
        if let Some(input) = self.input.lock().await.as_mut() {
            input.write(data).await?;
        }
        Ok(())
    }

    /// Stops every copy (the process is gone).
    pub fn abort(&mut self) {
        if let Some(copy) = self.stdin_copy.take() {
            copy.abort();
        }
        for o in self.outputs.drain(..) {
            o.abort();
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Waits until every output copy has ended, at most `bound`; true when they all did. Copies
/// still running go on in the background.
pub async fn drain(outputs: Vec<JoinHandle<()>>, bound: Duration) -> bool {
    let all = async {
        for h in outputs {
            let _ = h.await;
        }
    };
    tokio::time::timeout(bound, all).await.is_ok()
}

/// Copies one output stream to containerd until the guest ends it; `label` names it in logs.
async fn copy_out(mut from: impl AsyncRead + Unpin, sink: Sink, label: String) {
    let (mut to, keep_open) = match sink.connect().await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::warn!("{label}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("{label}: stdio stream read ended: {e}");
                break;
            }
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            tracing::warn!("{label}: cannot write process output to containerd: {e}");
            break;
        }
        total += n;
    }
    let _ = to.flush().await;
    if let Some(fifo) = &keep_open {
        let unread = read_by_the_other_end(fifo).await;
        if unread > 0 {
            tracing::debug!("{label}: {unread} bytes still unread after {READ_BOUND:?}");
        }
    }
    tracing::debug!("{label}: output ended after {total} bytes");
}

/// How long a finished output copy waits for containerd's end to read what is in the fifo.
pub const READ_BOUND: Duration = Duration::from_secs(2);

/// Waits until nothing is left unread in the fifo (`fifo` is our own, never read, end), at most
/// [`READ_BOUND`]; returns what is still unread.
async fn read_by_the_other_end(fifo: &pipe::Receiver) -> u64 {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let unread = rustix::io::ioctl_fionread(fifo).unwrap_or(0);
        if unread == 0 || started.elapsed() >= READ_BOUND {
            return unread;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(FIFO_RETRY_MAX);
    }
}

async fn copy_in(path: String, input: Shared<Input>, close_at_eof: bool) {
    let mut fifo = match open_input(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("{e}");
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match fifo.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading {path}: {e}");
                break;
            }
        };
        let mut guard = input.lock().await;
        let Some(w) = guard.as_mut() else { return };
        if let Err(e) = w.write(&buf[..n]).await {
            tracing::warn!("cannot forward input: {e}");
            return;
        }
    }
    if close_at_eof {
        if let Some(w) = input.lock().await.take() {
            if let Err(e) = w.close().await {
                tracing::debug!("cannot end input: {e}");
            }
        }
    }
}

/// containerd's end of an output channel, checked but not yet connected.
enum Sink {
    /// A file, open for appending.
    File(Writer),
    /// A fifo, connected by [`Sink::connect`].
    Fifo(String),
}

/// The longest pause between two tries to open an output fifo whose reader is not there yet.
const FIFO_RETRY_MAX: Duration = Duration::from_millis(20);

impl Sink {
    /// Opens a `file://` path or a regular file, or checks that a fifo exists.
    async fn open(path: &str) -> Result<Self, StdioError> {
        let open_err = |e| StdioError::Open(path.to_owned(), e);
        if let Some(file) = path.strip_prefix("file://") {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .await
                .map_err(open_err)?;
            return Ok(Sink::File(Box::pin(f)));
        }
        if path.contains("://") {
            return Err(StdioError::Unsupported(path.to_owned()));
        }
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.file_type().is_fifo() {
            return Ok(Sink::Fifo(path.to_owned()));
        }
        let f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .await
            .map_err(open_err)?;
        Ok(Sink::File(Box::pin(f)))
    }

    /// The writer; for a fifo, once its reader has opened it (retrying while the open fails with
    /// ENXIO, until the copy is aborted). A fifo also gets a read end of ours, never read, so
    /// writes neither fail nor lose bytes while containerd closes and reopens its end (a restart).
    async fn connect(self) -> Result<(Writer, Option<pipe::Receiver>), StdioError> {
        let path = match self {
            Sink::File(w) => return Ok((w, None)),
            Sink::Fifo(path) => path,
        };
        let open_err = |e| StdioError::Open(path.clone(), e);
        let mut pause = Duration::from_millis(1);
        let sender = loop {
            match pipe::OpenOptions::new().open_sender(&path) {
                Ok(sender) => break sender,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(FIFO_RETRY_MAX);
                }
                Err(e) => return Err(open_err(e)),
            }
        };
        let keep_open = pipe::OpenOptions::new()
            .open_receiver(&path)
            .map_err(open_err)?;
        Ok((Box::pin(sender), Some(keep_open)))
    }
}

/// Opens containerd's stdin fifo for reading, without blocking. Until a writer has opened the
/// fifo it is neither readable nor hung up, so reads wait for the client rather than ending.
async fn open_input(path: &str) -> Result<pipe::Receiver, StdioError> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| StdioError::Open(path.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_the_paths() {
        let p = StdioPaths {
            stdin: String::new(),
            stdout: "/f/out".into(),
            stderr: "/f/err".into(),
            terminal: false,
        };
        let c = p.agent_config();
        assert!(!c.stdin && c.stdout && c.stderr && !c.terminal);
        let p = StdioPaths {
            stdin: "/f/in".into(),
            terminal: true,
            ..p
        };
        let c = p.agent_config();
        assert!(c.terminal && !c.stdin && !c.stdout && !c.stderr);
    }

    #[tokio::test]
    async fn input_waits_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut r = open_input(fifo.to_str().unwrap()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            r.read_to_end(&mut all).await.unwrap();
            all
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!reader.is_finished(), "EOF before any writer");
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::io::Write::write_all(&mut w, b"data").unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), b"data");
    }

    #[tokio::test]
    async fn output_to_a_fifo_waits_for_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sink = Sink::open(fifo.to_str().unwrap()).await.unwrap();
        // The whole output, then its end, before anyone reads the fifo: as `ctr` sees a short
        // process when its background open of the fifo comes late.
        let copy = tokio::spawn(copy_out(&b"soak\n"[..], sink, "t".into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!copy.is_finished(), "the output was written with no reader");
        let read = tokio::task::spawn_blocking(move || std::fs::read(&fifo).unwrap());
        copy.await.unwrap();
        assert_eq!(read.await.unwrap(), b"soak\n");
    }

    #[tokio::test]
    async fn an_output_copy_ends_once_the_reader_took_the_bytes() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // The reader has the fifo open but has not read yet (ctr's open still finishing).
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let sink = Sink::open(fifo.to_str().unwrap()).await.unwrap();
        let copy = tokio::spawn(copy_out(&b"soak\n"[..], sink, "t".into()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!copy.is_finished(), "the copy ended with its output unread");
        let mut buf = [0u8; 16];
        let n = std::io::Read::read(&mut reader, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"soak\n");
        tokio::time::timeout(Duration::from_secs(1), copy)
            .await
            .expect("the copy ends once the bytes are read")
            .unwrap();
    }

    #[tokio::test]
    async fn output_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        let sink = Sink::open(&format!("file://{}", file.display()))
            .await
            .unwrap();
        copy_out(&b"line\n"[..], sink, "t".into()).await;
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "line\n");
        assert!(matches!(
            Sink::open("binary:///usr/bin/logger").await,
            Err(StdioError::Unsupported(_))
        ));
        assert!(matches!(
            Sink::open(dir.path().join("gone").to_str().unwrap()).await,
            Err(StdioError::Open(..))
        ));
    }
}
