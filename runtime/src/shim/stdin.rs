//! The stdin copy: containerd's stdin fifo → the process's input stream (framed, end of input in
//! band, [`InputWriter`]).
//!
//! Two rules hold it together:
//! - **End of input comes after every byte before it.** A client calls `CloseIO` once its last
//!   write returned (`ctr` does so as soon as its own stdin reads EOF, before it closes its end of
//!   the fifo), so the fifo may still hold up to its size of input, and more waits while the guest
//!   is slow to take what was sent. `CloseIO` therefore only asks the copy to end the input; the
//!   copy forwards what the fifo holds, then sends the end (stopping the copy at `CloseIO` lost
//!   those bytes: issue 22, always whole 64 KiB reads short). The fifo's own end of file ends
//!   the input too (not for a terminal, which only `CloseIO` ends).
//! - **The fifo stays open while the process lives.** When the guest's end goes (the process
//!   closed its stdin or exited), the copy goes on reading the fifo and drops what it reads: had
//!   it closed the fifo, the client's next write would fail with `EPIPE`, and `ctr` forwards
//!   the `SIGPIPE` that comes with it to the process, killing one that merely stopped reading
//!   (runc's shim keeps its end open too).

use std::sync::Arc;

use tokio::net::unix::{pipe, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{watch, Mutex};

use super::stdio::StdioError;
use crate::agent::stdio::{InputWriter, StdioAttachError};

/// The input side of a process.
#[derive(Debug)]
pub(super) enum Input {
    /// A `stdin` stream.
    Pipe(InputWriter<UnixStream>),
    /// The input half of a `pty` stream.
    Pty(InputWriter<OwnedWriteHalf>),
}

impl Input {
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<(), StdioAttachError> {
        match self {
            Input::Pipe(w) => w.write(data).await,
            Input::Pty(w) => w.write(data).await,
        }
    }

    pub(super) async fn close(self) -> Result<(), StdioAttachError> {
        match self {
            Input::Pipe(w) => w.close().await.map(drop),
            // Dropping the write half would shut the socket down for writing, which ends the
            // whole hybrid vsock connection (and so the pty's output): keep it open.
            Input::Pty(w) => w.close().await.map(OwnedWriteHalf::forget),
        }
    }
}

/// A value the copy and the Task API share.
pub(super) type Shared<T> = Arc<Mutex<Option<T>>>;

/// Copies the stdin fifo `path` to `input` until the fifo's end of file (which ends the input
/// when `close_at_eof`) or `CloseIO` (`end` turning true, which always does), each after
/// everything before it. See the module doc.
pub(super) async fn copy_in(
    path: String,
    input: Shared<Input>,
    mut end: watch::Receiver<bool>,
    close_at_eof: bool,
) {
    let mut to = Forward {
        input: &input,
        gone: false,
    };
    let ended = match open_input(&path).await {
        Ok(fifo) => forward_input(&path, &fifo, &mut to, &mut end).await,
        Err(e) => {
            tracing::warn!("{e}");
            InputEnd::Eof
        }
    };
    if to.gone {
        return;
    }
    if ended == InputEnd::Eof && !close_at_eof {
        end_requested(&mut end).await;
    }
    if let Some(w) = input.lock().await.take() {
        if let Err(e) = w.close().await {
            tracing::debug!("cannot end input: {e}");
        }
    }
}

/// How a stdin copy stopped reading the fifo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputEnd {
    /// The fifo's end of file (every writer closed it).
    Eof,
    /// `CloseIO`, after what the fifo held was read.
    Closed,
}

/// Resolves once `CloseIO` has asked for the end of input; never if it cannot come any more.
async fn end_requested(end: &mut watch::Receiver<bool>) {
    if end.wait_for(|requested| *requested).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Size of the buffer the stdin copy reads the fifo into (a frame's worth).
const INPUT_BUFFER: usize = hull_protocol::stdio::MAX_FRAME;

/// Where the copy's bytes go: the process's input, or nowhere once that is gone.
struct Forward<'a> {
    input: &'a Shared<Input>,
    gone: bool,
}

impl Forward<'_> {
    async fn send(&mut self, data: &[u8]) {
        if self.gone {
            return;
        }
        let mut guard = self.input.lock().await;
        let sent = match guard.as_mut() {
            Some(w) => w.write(data).await,
            None => Ok(()),
        };
        if let Err(e) = sent {
            // The process closed its stdin or exited: a normal end, not a failure.
            tracing::debug!("the process's input is gone ({e}); dropping what the client sends");
            self.gone = true;
        }
    }
}

async fn forward_input(
    path: &str,
    fifo: &pipe::Receiver,
    to: &mut Forward<'_>,
    end: &mut watch::Receiver<bool>,
) -> InputEnd {
    let mut buf = vec![0u8; INPUT_BUFFER];
    loop {
        // `readable` is cancel-safe: a `CloseIO` that wins the race loses no byte, the drain
        // below reads what this would have.
        let ready = tokio::select! {
            ready = fifo.readable() => ready,
            () = end_requested(end) => return drain_input(path, fifo, &mut buf, to).await,
        };
        if let Err(e) = ready {
            tracing::warn!("reading {path}: {e}");
            return InputEnd::Eof;
        }
        let n = match fifo.try_read(&mut buf) {
            Ok(0) => return InputEnd::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!("reading {path}: {e}");
                return InputEnd::Eof;
            }
        };
        to.send(&buf[..n]).await;
    }
}

/// After `CloseIO`: forwards what the fifo holds now (every write the client made before asking
/// has completed, so this is all of it), reading the fd directly: the runtime's readiness may
/// not have seen the last writes yet.
async fn drain_input(
    path: &str,
    fifo: &pipe::Receiver,
    buf: &mut [u8],
    to: &mut Forward<'_>,
) -> InputEnd {
    loop {
        let n = match rustix::io::read(fifo, &mut *buf) {
            Ok(0) | Err(rustix::io::Errno::AGAIN) => return InputEnd::Closed,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                tracing::warn!("reading {path}: {e}");
                return InputEnd::Closed;
            }
        };
        to.send(&buf[..n]).await;
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
    use std::path::Path;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::task::JoinHandle;

    use super::*;

    fn fifo_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        fifo
    }

    #[tokio::test]
    async fn input_waits_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
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

    /// Reads framed input from the guest's end of a stdin stream until end of input, slowly
    /// when `pause` is set (a guest process that takes its time).
    async fn read_frames(mut guest: UnixStream, pause: Option<Duration>) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let mut prefix = [0u8; 4];
            guest.read_exact(&mut prefix).await.unwrap();
            let len = hull_protocol::stdio::frame_len(prefix).unwrap();
            if len == 0 {
                return all;
            }
            let mut frame = vec![0u8; len];
            guest.read_exact(&mut frame).await.unwrap();
            all.extend_from_slice(&frame);
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
        }
    }

    /// A stdin copy between a fifo and one end of a socket pair; the other end is the guest's.
    fn stdin_copy(fifo: &Path) -> (JoinHandle<()>, watch::Sender<bool>, UnixStream) {
        let (host, guest) = UnixStream::pair().unwrap();
        let input: Shared<Input> = Arc::new(Mutex::new(Some(Input::Pipe(InputWriter::new(host)))));
        let (end, end_rx) = watch::channel(false);
        let path = fifo.to_str().unwrap().to_owned();
        (tokio::spawn(copy_in(path, input, end_rx, true)), end, guest)
    }

    #[tokio::test]
    async fn close_io_ends_the_input_only_after_what_the_fifo_holds() {
        // As `ctr` does it: every write returned, then `CloseIO`, then (later) its end of the
        // fifo closed; meanwhile the guest reads slowly, so the fifo is full when `CloseIO`
        // comes. Issue 22: the tail of the input was lost.
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
        let (copy, end, guest) = stdin_copy(&fifo);
        let data: Vec<u8> = (0..1_333_336u32)
            .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap_or(0))
            .collect();
        let guest = tokio::spawn(read_frames(guest, Some(Duration::from_millis(2))));
        let sent = data.clone();
        let client = tokio::task::spawn_blocking(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            std::io::Write::write_all(&mut w, &sent).unwrap();
            end.send_replace(true);
            std::thread::sleep(Duration::from_millis(300));
            drop(w);
            end
        });
        let got = tokio::time::timeout(Duration::from_secs(30), guest)
            .await
            .expect("end of input reached the guest")
            .unwrap();
        assert_eq!(got.len(), data.len(), "bytes before the end of input");
        assert!(got == data);
        drop(client.await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), copy)
            .await
            .expect("the copy ended")
            .unwrap();
    }

    #[tokio::test]
    async fn close_io_without_any_input_ends_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
        // No client ever opens the fifo (its stdin was empty), then `CloseIO`.
        let (copy, end, guest) = stdin_copy(&fifo);
        tokio::time::sleep(Duration::from_millis(100)).await;
        end.send_replace(true);
        let got = tokio::time::timeout(Duration::from_secs(5), read_frames(guest, None))
            .await
            .expect("end of input reached the guest");
        assert!(got.is_empty());
        copy.await.unwrap();
    }

    #[tokio::test]
    async fn the_fifos_end_ends_the_input_and_a_later_close_io_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
        let (copy, end, guest) = stdin_copy(&fifo);
        let path = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::write(path, b"all of it").unwrap())
            .await
            .unwrap();
        let got = read_frames(guest, None).await;
        assert_eq!(got, b"all of it");
        copy.await.unwrap();
        end.send_replace(true);
    }

    #[tokio::test]
    async fn a_process_that_stops_reading_never_breaks_the_clients_pipe() {
        // The guest's end goes after a little input (the process closed its stdin); the client
        // goes on writing megabytes. Its writes must neither fail (EPIPE, and a SIGPIPE that
        // `ctr` forwards to the process) nor block.
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo_in(&dir);
        let (copy, end, mut guest) = stdin_copy(&fifo);
        let client = tokio::task::spawn_blocking(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..64 {
                std::io::Write::write_all(&mut w, &chunk)?;
            }
            end.send_replace(true);
            Ok::<_, std::io::Error>(end)
        });
        let mut first = [0u8; 4];
        guest.read_exact(&mut first).await.unwrap();
        drop(guest);
        let end = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("the client's writes did not block")
            .unwrap()
            .expect("the client's writes did not fail");
        tokio::time::timeout(Duration::from_secs(5), copy)
            .await
            .expect("the copy ended at CloseIO")
            .unwrap();
        drop(end);
    }
}
