//! Reading a guest's serial console log while the guest runs.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Vm, VmError};

/// How often the console file is polled.
const POLL: Duration = Duration::from_millis(5);

/// Follows a console log, remembering what was read.
#[derive(Debug, Default)]
pub struct ConsoleWatcher {
    seen: Vec<u8>,
    offset: u64,
}

impl ConsoleWatcher {
    /// One look: `Some(line)` once a complete line holds `prefix`; an error once the VMM exited
    /// without printing it.
    pub fn poll(&mut self, vm: &mut dyn Vm, prefix: &str) -> Result<Option<String>, VmError> {
        let console = vm.console_path().to_owned();
        self.offset = read_new(&console, self.offset, &mut self.seen)?;
        if let Some(line) = find_line(&self.seen, prefix) {
            return Ok(Some(line));
        }
        if let Some(status) = vm.wait_timeout(Duration::ZERO)? {
            // The guest may have printed the line just before the VMM exited.
            self.offset = read_new(&console, self.offset, &mut self.seen)?;
            if let Some(line) = find_line(&self.seen, prefix) {
                return Ok(Some(line));
            }
            return Err(match vm.fatal() {
                Some(line) => VmError::Stopped {
                    line: line.to_owned(),
                },
                None => VmError::ExitedEarly {
                    status,
                    log: vm.log_path().to_owned(),
                },
            });
        }
        Ok(None)
    }
}

fn timeout_error(vm: &dyn Vm, prefix: &str, timeout: Duration) -> VmError {
    VmError::Timeout {
        what: prefix.to_owned(),
        timeout,
        console: vm.console_path().to_owned(),
    }
}

/// Waits until a line of the console holds `prefix` and returns that line from the prefix on.
/// Fails if the VMM exits first or `timeout` passes.
pub fn wait_for_line(vm: &mut dyn Vm, prefix: &str, timeout: Duration) -> Result<String, VmError> {
    let deadline = Instant::now() + timeout;
    let mut watcher = ConsoleWatcher::default();
    loop {
        if let Some(line) = watcher.poll(vm, prefix)? {
            return Ok(line);
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(vm, prefix, timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_for_line`] for async callers: sleeps on the runtime's timer between looks.
pub async fn wait_for_line_async(
    vm: &mut dyn Vm,
    prefix: &str,
    timeout: Duration,
) -> Result<String, VmError> {
    let deadline = Instant::now() + timeout;
    let mut watcher = ConsoleWatcher::default();
    loop {
        if let Some(line) = watcher.poll(vm, prefix)? {
            return Ok(line);
        }
        if Instant::now() >= deadline {
            return Err(timeout_error(vm, prefix, timeout));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Appends what was written to `path` after `offset`; returns the offset read up to. A file
/// shorter than `offset` was moved aside when full (see [`super::output`]): the new one is read
/// from its start.
fn read_new(path: &Path, offset: u64, buf: &mut Vec<u8>) -> Result<u64, VmError> {
    let err = |e| VmError::Console(path.to_owned(), e);
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        // QEMU creates the file right after it starts; not there yet is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(err(e)),
    };
    let len = file.metadata().map_err(err)?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start)).map_err(err)?;
    let n = file.read_to_end(buf).map_err(err)? as u64;
    Ok(start + n)
}

/// The first complete line holding `prefix`, from the prefix to the end of the line.
pub fn find_line(console: &[u8], prefix: &str) -> Option<String> {
    let text = String::from_utf8_lossy(console);
    let complete = &text[..text.rfind('\n')? + 1];
    complete.lines().find_map(|line| {
        let at = line.find(prefix)?;
        Some(line[at..].trim_end_matches('\r').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_complete_lines() {
        let log =
            b"[    0.1] booting\r\nnoise hull-agent ready: cpus=2\r\nhull-agent ready: cpus=9";
        assert_eq!(
            find_line(log, "hull-agent ready:").as_deref(),
            Some("hull-agent ready: cpus=2")
        );
        assert_eq!(
            find_line(b"hull-agent ready: cpus=1", "hull-agent ready:"),
            None
        );
        assert_eq!(find_line(b"other\n", "hull-agent ready:"), None);
    }

    #[test]
    fn survives_invalid_utf8() {
        assert_eq!(
            find_line(b"\xff\xfe ok: 1\n", "ok:").as_deref(),
            Some("ok: 1")
        );
    }
}
