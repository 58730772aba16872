//! containerd's stdio (fifos, or `file://` paths) ↔ the agent's vsock stdio streams.
//!
//! Without a terminal each channel is its own stream; with one, a single pty stream carries the
//! output to containerd's stdout and the input from its stdin. Input goes through the stdin copy
//! ([`super::stdin`]): `CloseIO` and the end of the stdin fifo both end it, only after every byte
//! the client wrote before them. Output streams end when the guest pipe reaches EOF, so a
//! process's output is complete once they have ([`drain`]); small pieces of output are gathered
//! into large fifo writes on the way.
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
use std::time::Duration;

use futures::FutureExt;
use hull_protocol::stdio::Channel;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::stdin::{copy_in, Input, Shared};
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

/// The host ends of one process's stdio, copying in the background.
#[derive(Debug, Default)]
pub struct Attached {
    input: Shared<Input>,
    /// Asks the stdin copy to end the input once it has forwarded what the fifo holds.
    end_input: Option<watch::Sender<bool>>,
    stdin_copy: Option<JoinHandle<()>>,
    outputs: Vec<JoinHandle<()>>,
}

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Attaches `cid`/`eid`'s streams (`eid`: the agent's id of an exec, empty for the init process)
/// through the VM's vsock socket `uds` and starts copying between them and containerd's `paths`.
/// `name` is what the shim's log calls the process (containerd's ids: `exec e1 of c1`).
pub async fn attach_process(
    uds: &Path,
    (cid, eid): (&str, &str),
    name: &str,
    paths: &StdioPaths,
) -> Result<Attached, StdioError> {
    let who = if eid.is_empty() {
        name.to_owned()
    } else {
        format!("{name} (agent id {eid})")
    };
    let mut attached = Attached::default();
    if paths.terminal {
        let stream = attach(uds, cid, eid, Channel::Pty).await?;
        let (out, input) = split_pty(stream);
        if !paths.stdout.is_empty() {
            let sink = Sink::open(&paths.stdout).await?;
            let label = format!("{who} pty");
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
            let label = format!("{who} {channel:?}");
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
        let (end_tx, end_rx) = watch::channel(false);
        attached.end_input = Some(end_tx);
        attached.stdin_copy = Some(tokio::spawn(copy_in(path, input, end_rx, close_at_eof)));
    }
    Ok(attached)
}

impl Attached {
    /// The output copies, to [`drain`] without holding `self`.
    pub fn take_outputs(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.outputs)
    }

    /// Ends the process's input (`CloseIO`); nothing happens when it has ended already.
    ///
    /// With a stdin fifo, the stdin copy ends it once it has forwarded what the fifo holds
    /// ([`super::stdin`]); this returns at once, the guest may take its time to read.
    pub async fn close_input(&self) -> Result<(), StdioError> {
        if let Some(end) = &self.end_input {
            end.send_replace(true);
            return Ok(());
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
    let mut buf = vec![0u8; OUTPUT_BUFFER];
    let mut total = 0usize;
    loop {
        let (n, end) = match gather(&mut from, &mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("{label}: stdio stream read ended: {e}");
                (0, true)
            }
        };
        if n > 0 {
            if let Err(e) = to.write_all(&buf[..n]).await {
                tracing::warn!("{label}: cannot write process output to containerd: {e}");
                break;
            }
            total += n;
        }
        if end {
            break;
        }
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

/// Buffer of an output copy: several of the guest's stream writes go out in one fifo write.
const OUTPUT_BUFFER: usize = 256 << 10;

/// Waits for output, then takes whatever else is already there without waiting, up to
/// `buf`'s size: one write to containerd for many small pieces from the guest (the vsock
/// backend hands them over a packet at a time). Returns the bytes read and whether the stream
/// ended; an error with bytes already read is reported as the end after them.
async fn gather(
    from: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<(usize, bool)> {
    let mut filled = from.read(buf).await?;
    if filled == 0 {
        return Ok((0, true));
    }
    while filled < buf.len() {
        match from.read(&mut buf[filled..]).now_or_never() {
            None => break,
            Some(Ok(0)) => return Ok((filled, true)),
            Some(Ok(n)) => filled += n,
            Some(Err(e)) => {
                tracing::debug!("stdio stream read ended: {e}");
                return Ok((filled, true));
            }
        }
    }
    Ok((filled, false))
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

#[cfg(test)]
mod tests {
    use tokio::net::UnixStream;

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
    async fn output_pieces_already_there_go_out_in_one_write() {
        let (mut guest, mut host) = UnixStream::pair().unwrap();
        for i in 0..3u8 {
            guest.write_all(&[i; 4096]).await.unwrap();
        }
        let mut buf = vec![0u8; OUTPUT_BUFFER];
        let (n, end) = gather(&mut host, &mut buf).await.unwrap();
        assert_eq!((n, end), (3 * 4096, false));
        assert!(buf[..n]
            .chunks(4096)
            .enumerate()
            .all(|(i, c)| c == [u8::try_from(i).unwrap_or(0); 4096]));
        guest.write_all(b"last").await.unwrap();
        drop(guest);
        let (n, end) = gather(&mut host, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"last");
        // The end right behind the bytes: seen now, or by the next call.
        if !end {
            assert_eq!(gather(&mut host, &mut buf).await.unwrap(), (0, true));
        }
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
