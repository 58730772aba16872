//! A client of CRI's streaming server (the URL `Exec` and `Attach` return): containerd 1.6 serves
//! the kubelet's streaming protocol over SPDY or WebSocket; this speaks the WebSocket flavour,
//! subprotocol `v4.channel.k8s.io`: every binary message is one channel byte (0 stdin, 1 stdout,
//! 2 stderr, 3 error/status, 4 resize; for port-forward 0 data, 1 error) and its data; the status channel ends a session with a
//! JSON `Status` whose `ExitCode` cause carries a non-zero exit code.
//!
//! containerd's streaming server listens on 127.0.0.1 in its own network namespace, so the
//! session runs on a thread that first enters that namespace.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::netns::TestNetns;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// What a finished streaming session returned.
#[derive(Debug, Default, Clone)]
pub struct StreamOutput {
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: Vec<u8>,
    /// The exit code from the status channel (0 on `Success`), if a status came.
    pub exit_code: Option<i32>,
    /// The status message as sent.
    pub status: String,
    /// Everything the server sent on channel 0 (port-forward's data stream, which starts with
    /// the port as 2 bytes, little endian).
    pub data: Vec<u8>,
}

/// A session on a streaming URL.
pub struct Session {
    ws: WebSocket<TcpStream>,
    out: StreamOutput,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects to `url` (`http://127.0.0.1:<port>/exec/<token>` as CRI returns it) from inside
    /// `netns`.
    pub fn open(netns: &TestNetns, url: &str) -> Result<Self, String> {
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{ws_url}: {e}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "v4.channel.k8s.io".parse().expect("header value"),
        );
        let authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("{ws_url}: no host"))?;
        // The socket is made in containerd's namespace, on a thread of its own.
        let tcp = netns
            .enter(|| TcpStream::connect(&authority))
            .map_err(|e| format!("connect {authority}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let (ws, response) =
            tungstenite::client::client(request, tcp).map_err(|e| format!("handshake: {e}"))?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if protocol != "v4.channel.k8s.io" {
            return Err(format!("server chose protocol {protocol:?}"));
        }
        Ok(Self {
            ws,
            out: StreamOutput::default(),
        })
    }

    /// Sends `data` to the process's stdin.
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<(), String> {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(STDIN);
        frame.extend_from_slice(data);
        self.ws
            .send(Message::binary(frame))
            .map_err(|e| format!("send: {e}"))
    }

    /// Reads until stdout holds `needle` or `within` passes; whether it does.
    pub fn read_until(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if String::from_utf8_lossy(&self.out.stdout).contains(needle) {
                return true;
            }
            if !self.read_one() {
                break;
            }
        }
        String::from_utf8_lossy(&self.out.stdout).contains(needle)
    }

    /// Reads until channel 0's data holds `needle` or `within` passes; whether it does.
    pub fn read_data_until(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if String::from_utf8_lossy(&self.out.data).contains(needle) {
                return true;
            }
            if !self.read_one() {
                break;
            }
        }
        String::from_utf8_lossy(&self.out.data).contains(needle)
    }

    /// Reads to the end of the session (the server closes after the status), or `within`.
    pub fn finish(mut self, within: Duration) -> StreamOutput {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && self.read_one() {}
        let _ = self.ws.close(None);
        self.out
    }

    /// What was read so far.
    pub fn output(&self) -> &StreamOutput {
        &self.out
    }

    /// Closes the session from this side.
    pub fn close(mut self) -> StreamOutput {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        self.out
    }

    /// Reads one message (or times out after the read timeout); false once the session is over.
    fn read_one(&mut self) -> bool {
        match self.ws.read() {
            Ok(Message::Binary(data)) => {
                if let Some((&channel, payload)) = data.split_first() {
                    match channel {
                        STDIN => self.out.data.extend_from_slice(payload),
                        STDOUT => self.out.stdout.extend_from_slice(payload),
                        STDERR => self.out.stderr.extend_from_slice(payload),
                        STATUS if !payload.is_empty() => self.status(payload),
                        _ => {}
                    }
                }
                true
            }
            Ok(Message::Close(_)) => false,
            Ok(_) => true,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => false,
        }
    }

    fn status(&mut self, payload: &[u8]) {
        self.out.status = String::from_utf8_lossy(payload).into_owned();
        let Ok(status) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        if status["status"] == "Success" {
            self.out.exit_code = Some(0);
            return;
        }
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str()?.parse().ok());
        self.out.exit_code = code;
    }
}
