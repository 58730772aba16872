//! A VMM's output, kept on the host with a bound. The guest's serial console is the VMM's stdout
//! and the VMM's own messages its stderr; both are pipes that a thread of the process that
//! started the VMM ([`OutputPump`]) copies into `<run_dir>/console.log` and `<run_dir>/vmm.log`.
//!
//! Why not let the VMM write its files itself: the guest decides how much its console prints,
//! and a file the VMM writes can only be bounded by `RLIMIT_FSIZE`, which also caps the
//! guest-RAM memfd the VMM sizes with `ftruncate` (a 1 GiB limit made every pod above 1 GiB fail
//! with "failed to resize memfd … File too large"). Here each log is a [`BoundedLog`]: once a file
//! reaches its bound it becomes `<name>.1` (replacing the previous one) and a new file starts, so
//! a pod keeps at most twice the bound per log and always its latest lines.
//!
//! The pump also reads the VMM's words for a guest that is dead although the VMM lives on: QEMU
//! does not exit when KVM cannot run the guest (`KVM internal error …`, as on a PVM host forced to
//! KVM); it stops the VM and waits. The first such line ([`FATAL_MARKERS`]) is kept in a
//! [`FatalLine`], and the VMM's owner ends the VMM at once instead of waiting for a boot that
//! cannot come.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdout};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The bound of `console.log` (and of `console.log.1`), bytes.
pub const CONSOLE_LOG_MAX: u64 = 1 << 20;
/// The bound of `vmm.log` (and of `vmm.log.1`), bytes.
pub const VMM_LOG_MAX: u64 = 256 << 10;

/// How long [`OutputPump::finish`] waits for what the VMM wrote last to be copied, after the
/// VMM has exited.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What a VMM writes when it has stopped its guest for good but not exited (QEMU on a KVM error).
pub const FATAL_MARKERS: &[&str] = &["KVM internal error", "KVM: entry failed"];

/// The first fatal line a VMM wrote, once it has (shared between the pump and the VMM's owner).
pub type FatalLine = Arc<OnceLock<String>>;

/// A log file that never grows past its bound: see the module docs.
#[derive(Debug)]
pub struct BoundedLog {
    path: PathBuf,
    file: File,
    written: u64,
    max: u64,
}

/// The name a full log is moved to: `<path>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".1");
    PathBuf::from(name)
}

impl BoundedLog {
    /// Creates (truncates) `path`, and removes an old `<path>.1`.
    pub fn create(path: &Path, max: u64) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(rotated(path));
        Ok(Self {
            path: path.to_owned(),
            file: File::create(path)?,
            written: 0,
            max: max.max(1),
        })
    }

    /// Appends `bytes`, moving the file aside whenever it is full.
    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.written >= self.max {
                std::fs::rename(&self.path, rotated(&self.path))?;
                self.file = File::create(&self.path)?;
                self.written = 0;
            }
            let room = usize::try_from(self.max - self.written).unwrap_or(usize::MAX);
            let n = room.min(bytes.len());
            self.file.write_all(&bytes[..n])?;
            self.written += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// The thread copying a VMM's stdout and stderr into their logs. It ends when both pipes are
/// closed, i.e. when the VMM (and its jailer) have exited.
#[derive(Debug)]
pub struct OutputPump {
    thread: Option<JoinHandle<()>>,
}

impl OutputPump {
    /// Starts copying `console` (the VMM's stdout) and `log` (its stderr); a fatal line on
    /// stderr is put in `fatal`.
    pub fn start(
        stdout: ChildStdout,
        stderr: ChildStderr,
        console: BoundedLog,
        log: BoundedLog,
        fatal: FatalLine,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("vmm-output".into())
            .spawn(move || pump(stdout, stderr, console, log, &fatal))?;
        Ok(Self {
            thread: Some(thread),
        })
    }

    /// Waits up to `within` for the copy to end (call it once the VMM has exited, so the logs
    /// hold everything it wrote). `true` when it has ended.
    pub fn finish(&mut self, within: Duration) -> bool {
        let Some(thread) = &self.thread else {
            return true;
        };
        let deadline = Instant::now() + within;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        true
    }
}

/// Looks for a fatal line in `stderr`'s new bytes `new`; `pending` holds an unfinished line.
fn scan_fatal(pending: &mut Vec<u8>, new: &[u8], fatal: &FatalLine) {
    if fatal.get().is_some() {
        return;
    }
    pending.extend_from_slice(new);
    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(&pending[..end]).trim().to_owned();
        pending.drain(..=end);
        if FATAL_MARKERS.iter().any(|m| line.contains(m)) {
            let _ = fatal.set(line.chars().take(200).collect());
            pending.clear();
            return;
        }
    }
    // A line longer than this is no marker line.
    if pending.len() > 4096 {
        pending.clear();
    }
}

fn pump(
    mut stdout: ChildStdout,
    mut stderr: ChildStderr,
    console: BoundedLog,
    log: BoundedLog,
    fatal: &FatalLine,
) {
    let mut pending = Vec::new();
    let mut outputs = [Some(console), Some(log)];
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    while open.iter().any(|o| *o) {
        let (mut fds, mut which) = (Vec::with_capacity(2), Vec::with_capacity(2));
        if open[0] {
            fds.push(PollFd::new(stdout.as_fd(), PollFlags::POLLIN));
            which.push(0);
        }
        if open[1] {
            fds.push(PollFd::new(stderr.as_fd(), PollFlags::POLLIN));
            which.push(1);
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(which)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, index)| index)
            .collect();
        drop(fds);
        for index in ready {
            let got = if index == 0 {
                stdout.read(&mut buf)
            } else {
                stderr.read(&mut buf)
            };
            match got {
                Ok(0) => open[index] = false,
                Ok(n) => {
                    if index == 1 {
                        scan_fatal(&mut pending, &buf[..n], fatal);
                    }
                    // A log that cannot be written (its disk is full) drops the output, never
                    // blocks the VMM.
                    if let Some(out) = &mut outputs[index] {
                        if out.write(&buf[..n]).is_err() {
                            outputs[index] = None;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => open[index] = false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_log_moves_aside_and_keeps_the_latest_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(rotated(&path), b"stale").unwrap();
        let mut log = BoundedLog::create(&path, 10).unwrap();
        assert!(!rotated(&path).exists(), "an old .1 is removed");
        log.write(b"0123456789abc").unwrap();
        assert_eq!(std::fs::read(rotated(&path)).unwrap(), b"0123456789");
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        for _ in 0..100 {
            log.write(b"xyz\n").unwrap();
        }
        log.write(b"last").unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(size(&path) <= 10 && size(&rotated(&path)) <= 10);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("last"));
    }

    #[test]
    fn a_fatal_line_is_caught_even_split_across_reads() {
        let fatal = FatalLine::default();
        let mut pending = Vec::new();
        scan_fatal(&mut pending, b"qemu: warning: x\nKVM inte", &fatal);
        assert!(fatal.get().is_none());
        scan_fatal(&mut pending, b"rnal error. Suberror: 1\nextra data", &fatal);
        assert_eq!(
            fatal.get().map(String::as_str),
            Some("KVM internal error. Suberror: 1")
        );
        let quiet = FatalLine::default();
        scan_fatal(
            &mut Vec::new(),
            b"KVM internal error without an end",
            &quiet,
        );
        assert!(quiet.get().is_none(), "only whole lines count");
    }

    #[test]
    fn the_pump_copies_both_streams_until_they_close() {
        let dir = tempfile::tempdir().unwrap();
        let (console, log) = (dir.path().join("console.log"), dir.path().join("vmm.log"));
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "printf 'boot\\nready\\n'; echo oops >&2; head -c 1500 /dev/zero; echo end",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut pump = OutputPump::start(
            child.stdout.take().unwrap(),
            child.stderr.take().unwrap(),
            BoundedLog::create(&console, 1000).unwrap(),
            BoundedLog::create(&log, 1000).unwrap(),
            FatalLine::default(),
        )
        .unwrap();
        child.wait().unwrap();
        assert!(pump.finish(Duration::from_secs(10)));
        let head = std::fs::read(rotated(&console)).unwrap();
        assert!(head.starts_with(b"boot\nready\n"), "{head:?}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "oops\n");
        let tail = std::fs::read(&console).unwrap();
        assert_eq!(tail.len(), 515);
        assert!(tail.ends_with(b"end\n"));
    }
}
