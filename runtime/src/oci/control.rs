//! The monitor's control socket: one JSON request per connection, one JSON reply per line.
//! Every verb but `create` reaches the container through it; `exec` keeps its connection open
//! for a second reply, the exec's exit. Only root reaches the socket (the state root is root's).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::OciError;

/// Where a process's stdio is, as the monitor opens it (`/proc/<pid>/fd/<n>` of the process
/// that holds the engine's fds; empty for none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioSpec {
    /// stdin.
    pub stdin: String,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// A terminal (stdin and stdout are its two ends).
    pub terminal: bool,
}

/// A request to the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Release the created container.
    Start,
    /// Send `signal` to the init process (`exec_id` empty) or to an exec; `all`: every process.
    Kill {
        /// Signal number.
        signal: u32,
        /// Every process of the container.
        all: bool,
        /// An exec's id, empty for the init process.
        exec_id: String,
    },
    /// Remove a container that never started, stop the VM, exit.
    Delete,
    /// Run a process in the container; replies `ExecStarted`, then `Exited`.
    Exec {
        /// The OCI process object.
        process: serde_json::Value,
        /// Its stdio.
        stdio: StdioSpec,
    },
    /// Freeze the container.
    Pause,
    /// Thaw it.
    Resume,
    /// The container's processes (guest pids).
    Ps,
    /// A process's terminal has a new window size.
    Resize {
        /// An exec's id, empty for the init process.
        exec_id: String,
        /// Columns.
        width: u32,
        /// Rows.
        height: u32,
    },
    /// The container's cgroup statistics in the guest (runc's `events --stats` data).
    Stats,
    /// New `linux.resources` for the container's cgroup in the guest.
    Update {
        /// OCI `linux.resources`.
        resources: serde_json::Value,
    },
}

/// A reply from the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok,
    /// Refused or failed.
    Error {
        /// What went wrong (the whole chain).
        message: String,
    },
    /// An exec runs under this id.
    ExecStarted {
        /// The monitor's id of the exec.
        exec_id: String,
    },
    /// A process exited with this status (128+n for signal n).
    Exited {
        /// Exit status.
        status: i32,
    },
    /// Guest pids.
    Pids {
        /// The pids.
        pids: Vec<u32>,
    },
    /// Statistics, as runc's `events --stats` prints them under `data`.
    Stats {
        /// runc's `types.Stats` object.
        stats: serde_json::Value,
    },
}

/// A connection to a monitor.
#[derive(Debug)]
pub struct Session {
    reader: BufReader<UnixStream>,
}

impl Session {
    /// Connects to the monitor at `socket` and sends `request`.
    pub fn open(socket: &Path, request: &Request) -> Result<Self, OciError> {
        let mut stream = UnixStream::connect(socket).map_err(|e| {
            OciError::Monitor(format!(
                "cannot reach the container's monitor at {}: {e}",
                socket.display()
            ))
        })?;
        let mut line = serde_json::to_vec(request)
            .map_err(|e| OciError::Monitor(format!("cannot encode a request: {e}")))?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .map_err(|e| OciError::Monitor(format!("cannot send to the monitor: {e}")))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// The next reply; an error when the monitor hung up.
    pub fn reply(&mut self) -> Result<Reply, OciError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| OciError::Monitor(format!("cannot read the monitor's reply: {e}")))?;
        if n == 0 {
            return Err(OciError::Monitor(
                "the monitor hung up without a reply".into(),
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| OciError::Monitor(format!("bad reply from the monitor: {e}")))
    }
}

/// Sends `request` and returns the one reply; a `Reply::Error` becomes an error.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, OciError> {
    let reply = Session::open(socket, request)?.reply()?;
    match reply {
        Reply::Error { message } => Err(OciError::State(message)),
        other => Ok(other),
    }
}

/// Encodes a reply as one line.
pub fn encode(reply: &Reply) -> Vec<u8> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|_| b"{\"reply\":\"ok\"}".to_vec());
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let r = Request::Kill {
            signal: 15,
            all: false,
            exec_id: String::new(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"op":"kill","signal":15,"all":false,"exec_id":""}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), r);
        let line = encode(&Reply::Exited { status: 42 });
        assert_eq!(line, b"{\"reply\":\"exited\",\"status\":42}\n");
    }
}
