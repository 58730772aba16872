//! The stdio stream protocol: one vsock stream per stdio channel of a process, so a slow reader of
//! one channel never blocks another.
//!
//! The host connects to the agent's [`crate::STDIO_PORT`] (through the hybrid vsock handshake)
//! and sends one header line, [`StdioHeader`]: `HULL-STDIO 1 <container_id> <exec_id|-> <channel>\n`.
//! The agent answers `OK\n`, or `ERR <reason>\n` and closes. Then, by channel:
//! - `stdout`, `stderr`: raw bytes from the guest until the agent closes the stream, which it does
//!   only after the process's end of the pipe reached EOF (nothing written before exit is lost);
//! - `stdin`: frames from the host, each a big-endian `u32` length and that many bytes (at most
//!   [`MAX_FRAME`]); a zero-length frame is end of input and closes the process's stdin;
//! - `pty`: input from the host framed as for `stdin`, output raw as for `stdout`.
//!
//! Input is framed because a half-close of a hybrid vsock stream is not carried through every
//! backend (vhost-device-vsock drops the connection), so end of input must be in band.

use std::fmt;
use std::str::FromStr;

use crate::limits::{self, LimitError};

/// What every header starts with.
pub const MAGIC: &str = "HULL-STDIO";
/// The protocol version in the header.
pub const VERSION: u32 = 1;
/// Largest input frame.
pub const MAX_FRAME: usize = 64 << 10;
/// Longest header line, newline included.
pub const MAX_HEADER_LEN: usize = 256;

/// A stdio channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The process's standard input.
    Stdin,
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
    /// Its terminal (input and output).
    Pty,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Stdin => "stdin",
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
            Channel::Pty => "pty",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StdioError {
    /// Wrong magic, version, field count or channel name.
    #[error("malformed stdio header {0:?}")]
    Malformed(String),
    /// An id breaks the limits.
    #[error("bad id in stdio header")]
    Id(#[from] LimitError),
    /// A frame is larger than [`MAX_FRAME`].
    #[error("stdin frame of {0} bytes is larger than {MAX_FRAME}")]
    FrameTooLarge(usize),
}

impl FromStr for Channel {
    type Err = StdioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdin" => Ok(Channel::Stdin),
            "stdout" => Ok(Channel::Stdout),
            "stderr" => Ok(Channel::Stderr),
            "pty" => Ok(Channel::Pty),
            other => Err(StdioError::Malformed(other.chars().take(32).collect())),
        }
    }
}

/// The first line of a stdio stream: which process and which channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioHeader {
    /// The container.
    pub container_id: String,
    /// The exec process, empty for the container's init process.
    pub exec_id: String,
    /// The channel.
    pub channel: Channel,
}

impl StdioHeader {
    /// The header line, newline included.
    pub fn encode(&self) -> String {
        let exec = if self.exec_id.is_empty() {
            "-"
        } else {
            &self.exec_id
        };
        format!(
            "{MAGIC} {VERSION} {} {exec} {}\n",
            self.container_id, self.channel
        )
    }

    /// Parses a header line (with or without its newline) and checks its ids.
    pub fn parse(line: &str) -> Result<Self, StdioError> {
        let malformed = || StdioError::Malformed(line.chars().take(80).collect());
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.len() >= MAX_HEADER_LEN {
            return Err(malformed());
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [magic, version, container_id, exec_id, channel] = fields[..] else {
            return Err(malformed());
        };
        if magic != MAGIC || version != VERSION.to_string() {
            return Err(malformed());
        }
        limits::check_id("container id", container_id)?;
        let exec_id = if exec_id == "-" { "" } else { exec_id };
        limits::check_exec_id(exec_id)?;
        Ok(Self {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            channel: channel.parse()?,
        })
    }
}

/// The 4-byte prefix of an input frame of `len` bytes.
pub fn frame_prefix(len: usize) -> Result<[u8; 4], StdioError> {
    if len > MAX_FRAME {
        return Err(StdioError::FrameTooLarge(len));
    }
    // MAX_FRAME fits in u32.
    Ok(u32::try_from(len)
        .map_err(|_| StdioError::FrameTooLarge(len))?
        .to_be_bytes())
}

/// The length announced by a frame prefix, checked against [`MAX_FRAME`]; 0 is end of input.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, StdioError> {
    let len = usize::try_from(u32::from_be_bytes(prefix)).unwrap_or(usize::MAX);
    if len > MAX_FRAME {
        Err(StdioError::FrameTooLarge(len))
    } else {
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        for (exec_id, channel) in [
            ("", Channel::Stdout),
            ("e1", Channel::Pty),
            ("x", Channel::Stdin),
        ] {
            let h = StdioHeader {
                container_id: "c-1".into(),
                exec_id: exec_id.into(),
                channel,
            };
            let line = h.encode();
            assert!(line.ends_with('\n'));
            assert_eq!(StdioHeader::parse(&line).unwrap(), h);
        }
        assert_eq!(
            StdioHeader {
                container_id: "c".into(),
                exec_id: String::new(),
                channel: Channel::Stderr
            }
            .encode(),
            "HULL-STDIO 1 c - stderr\n"
        );
    }

    #[test]
    fn hostile_headers_are_refused() {
        for bad in [
            "",
            "HULL-STDIO 1 c - stdout extra\n",
            "HULL-STDIO 2 c - stdout\n",
            "NOPE 1 c - stdout\n",
            "HULL-STDIO 1 ../c - stdout\n",
            "HULL-STDIO 1 c e/1 stdout\n",
            "HULL-STDIO 1 c - stdlog\n",
            "HULL-STDIO 1  c - stdout\n",
        ] {
            assert!(StdioHeader::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("HULL-STDIO 1 {} - stdout\n", "c".repeat(300));
        assert!(StdioHeader::parse(&long).is_err());
    }

    #[test]
    fn frames() {
        assert_eq!(frame_prefix(5).unwrap(), [0, 0, 0, 5]);
        assert_eq!(frame_len([0, 0, 0, 5]).unwrap(), 5);
        assert_eq!(frame_len([0, 0, 0, 0]).unwrap(), 0);
        assert!(frame_prefix(MAX_FRAME + 1).is_err());
        assert!(frame_len([0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(
            frame_len(frame_prefix(MAX_FRAME).unwrap()).unwrap(),
            MAX_FRAME
        );
    }
}
