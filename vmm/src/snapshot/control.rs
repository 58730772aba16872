//! The control socket (`--api-sock PATH`): a unix stream socket the VMM's event loop serves, one
//! request line per connection, one answer line back, then the connection is closed.
//!
//! | request | effect | answer |
//! |---|---|---|
//! | `pause` | vCPUs stop at a safe point | `OK paused` |
//! | `resume` | paused vCPUs carry on | `OK running` |
//! | `snapshot DIR` | pauses, writes the snapshot into `DIR`; the VM stays paused | `OK snapshot BYTES` |
//! | `balloon MIB` | sets the balloon's target (the guest is asked to give up `MIB` MiB) | `OK balloon target=MIB actual=MIB guest=MIB` (actual: MiB in the balloon now) |
//!
//! Anything else, or a failure, answers `ERR <reason>` and changes nothing. The socket is for
//! the host (the runtime, a test); only the process that owns the VM should be able to reach it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest request line.
const MAX_LINE: u64 = 4096;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop the vCPUs.
    Pause,
    /// Start them again.
    Resume,
    /// Pause and write a snapshot into the directory.
    Snapshot(PathBuf),
    /// Set the balloon's target, MiB.
    Balloon(u32),
}

/// Parses one request line (without its newline).
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    match line.split_once(' ') {
        None if line == "pause" => Ok(Command::Pause),
        None if line == "resume" => Ok(Command::Resume),
        Some(("snapshot", dir)) if !dir.is_empty() && Path::new(dir).is_absolute() => {
            Ok(Command::Snapshot(PathBuf::from(dir)))
        }
        Some(("snapshot", _)) => Err("snapshot needs an absolute directory".into()),
        Some(("balloon", mib)) => mib
            .parse()
            .map(Command::Balloon)
            .map_err(|_| format!("balloon needs a size in MiB, not {mib:?}")),
        _ => Err(format!(
            "unknown request {:?} (pause, resume, snapshot DIR, balloon MIB)",
            line.chars().take(64).collect::<String>()
        )),
    }
}

/// Reads the request line of an accepted connection (at most [`MAX_LINE`] bytes, 2 s).
pub fn read_request(stream: &UnixStream) -> std::io::Result<String> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_LINE)).read_line(&mut line)?;
    Ok(line)
}

/// Writes the answer line.
pub fn answer(mut stream: &UnixStream, result: &Result<String, String>) {
    let line = match result {
        Ok(s) => format!("OK {s}\n"),
        Err(e) => format!("ERR {}\n", e.replace('\n', " ")),
    };
    let _ = stream.write_all(line.as_bytes());
}

/// A client: sends `request` to the socket at `path` and returns the answer line (without its
/// newline).
pub fn request(path: &Path, request: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_mistakes_are_named() {
        assert_eq!(parse("pause\n"), Ok(Command::Pause));
        assert_eq!(parse("resume"), Ok(Command::Resume));
        assert_eq!(
            parse("snapshot /tmp/s\n"),
            Ok(Command::Snapshot("/tmp/s".into()))
        );
        assert!(parse("snapshot relative").unwrap_err().contains("absolute"));
        assert!(parse("snapshot ").is_err());
        assert!(parse("reboot").unwrap_err().contains("unknown request"));
        assert_eq!(parse("balloon 64\n"), Ok(Command::Balloon(64)));
        assert!(parse("balloon -1").unwrap_err().contains("MiB"));
        assert!(parse("balloon 99999999999").is_err());
    }
}
