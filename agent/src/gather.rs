//! Copies a process's output to its vsock stream, gathering small writes into large ones.
//!
//! Each write to a vsock stream is a packet through the virtqueue, a notification of the device
//! and, later, an interrupt for its completion; under TCG each of those is many emulated
//! instructions. A process that writes 4 KiB at a time (busybox's `cat` and `head`) paid that per
//! 4 KiB and got a fraction of the throughput of one writing 64 KiB (issue 22). So after a piece
//! of output the copy waits briefly for the next one (the process is usually in the middle of
//! a stream) and sends what it gathered in one write: at most [`GATHER_GAP`] after the last
//! piece arrived and [`GATHER_MAX`] after the first, so a lone line still leaves at once in
//! human terms. A terminal gathers without waiting (an echo must not lag).
//!
//! Nothing is held back at the end: end of file, or a failed read, sends what was gathered first.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// The most bytes one stream write carries.
pub const OUTPUT_BUFFER: usize = 256 << 10;

/// After a piece of output, how long to wait for the next before sending what there is.
pub const GATHER_GAP: Duration = Duration::from_millis(1);

/// The longest the first piece of a write waits for others.
pub const GATHER_MAX: Duration = Duration::from_millis(5);

/// How long the copy waits for more output before a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// Take only what is there already (a terminal).
    Ready,
    /// Wait for the next piece up to [`GATHER_GAP`], up to [`GATHER_MAX`] in all (pipes).
    Stream,
}

/// Copies `from` to `to` until `from` ends; returns the bytes copied. A read error ends the copy
/// (after what was read is written) and is returned.
pub async fn copy_output<R, W>(from: &mut R, to: &mut W, gather: Gather) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; OUTPUT_BUFFER];
    let mut total = 0u64;
    loop {
        let first = from.read(&mut buf).await?;
        if first == 0 {
            break;
        }
        let (filled, end) = fill(from, &mut buf, first, gather).await;
        to.write_all(&buf[..filled]).await?;
        total += filled as u64;
        match end {
            None => {}
            Some(Ok(())) => break,
            Some(Err(e)) => {
                to.flush().await?;
                return Err(e);
            }
        }
    }
    to.flush().await?;
    Ok(total)
}

/// Reads more into `buf` after its first `filled` bytes, as `gather` allows; returns the bytes
/// in `buf` and, when `from` ended meanwhile, how.
async fn fill<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut [u8],
    mut filled: usize,
    gather: Gather,
) -> (usize, Option<std::io::Result<()>>) {
    let started = Instant::now();
    while filled < buf.len() {
        let wait = match gather {
            Gather::Ready => Duration::ZERO,
            Gather::Stream => GATHER_GAP.min(GATHER_MAX.saturating_sub(started.elapsed())),
        };
        // A read is cancel-safe: a timeout loses no byte.
        match tokio::time::timeout(wait, from.read(&mut buf[filled..])).await {
            Err(_elapsed) => break,
            Ok(Ok(0)) => return (filled, Some(Ok(()))),
            Ok(Ok(n)) => filled += n,
            Ok(Err(e)) => return (filled, Some(Err(e))),
        }
    }
    (filled, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands every write it takes to a channel.
    struct Writes(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let _ = self.0.send(data.to_vec());
            std::task::Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Copies from `pipe` in the background; its writes come out of the receiver.
    fn copy(
        mut pipe: tokio::io::DuplexStream,
        gather: Gather,
    ) -> (
        tokio::task::JoinHandle<u64>,
        tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            copy_output(&mut pipe, &mut Writes(tx), gather)
                .await
                .unwrap()
        });
        (task, rx)
    }

    async fn all(mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        while let Some(w) = rx.recv().await {
            writes.push(w);
        }
        writes
    }

    fn byte(i: usize) -> u8 {
        u8::try_from(i % 251).unwrap_or(0)
    }

    #[tokio::test]
    async fn small_writes_in_a_stream_go_out_together() {
        let (mut process, pipe) = tokio::io::duplex(1 << 20);
        let (task, rx) = copy(pipe, Gather::Stream);
        for i in 0..64 {
            process.write_all(&[byte(i); 4096]).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(process);
        assert_eq!(task.await.unwrap(), 64 * 4096);
        let writes = all(rx).await;
        let bytes: Vec<u8> = writes.concat();
        assert_eq!(bytes.len(), 64 * 4096);
        assert!(bytes
            .chunks(4096)
            .enumerate()
            .all(|(i, c)| c == [byte(i); 4096]));
        assert!(writes.len() <= 16, "{} writes for 64 pieces", writes.len());
    }

    #[tokio::test]
    async fn a_lone_piece_leaves_without_the_next() {
        for gather in [Gather::Stream, Gather::Ready] {
            let (mut process, pipe) = tokio::io::duplex(1 << 16);
            let (task, mut rx) = copy(pipe, gather);
            process.write_all(b"prompt> ").await.unwrap();
            let first = tokio::time::timeout(Duration::from_secs(2), rx.recv())
                .await
                .expect("sent while the process waits");
            assert_eq!(first.unwrap(), b"prompt> ");
            process.write_all(b"more\n").await.unwrap();
            drop(process);
            task.await.unwrap();
            assert_eq!(all(rx).await, [b"more\n".to_vec()]);
        }
    }

    #[tokio::test]
    async fn output_before_the_end_is_all_sent() {
        let data: Vec<u8> = (0..300_000).map(byte).collect();
        let (mut process, pipe) = tokio::io::duplex(1 << 16);
        let (task, rx) = copy(pipe, Gather::Stream);
        let sent = data.clone();
        tokio::spawn(async move {
            process.write_all(&sent).await.unwrap();
        });
        assert_eq!(task.await.unwrap(), data.len() as u64);
        assert_eq!(all(rx).await.concat(), data);
    }
}
