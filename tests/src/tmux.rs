//! A tmux server on a private socket for terminal tests (`run -t` with a real terminal and its
//! resizes), killed on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server on the socket at its path, one session `t`.
#[derive(Debug)]
pub struct Tmux(pub PathBuf);

impl Tmux {
    /// `tmux -S <socket>`.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.0);
        c
    }

    /// Starts session `t` of `cols`×`rows` running the shell command `run`.
    pub fn start(&self, cols: u16, rows: u16, run: &str) {
        let ok = self
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x", &cols.to_string()])
            .args(["-y", &rows.to_string(), run])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Resizes the session's window.
    pub fn resize(&self, cols: u16, rows: u16) {
        let ok = self
            .cmd()
            .args(["resize-window", "-t", "t", "-x", &cols.to_string()])
            .args(["-y", &rows.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// What the pane shows.
    pub fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane shows `what`; returns the pane.
    pub fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let pane = self.pane();
            if pane.contains(what) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the pane:\n{pane}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `keys` and Enter.
    pub fn keys(&self, keys: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "t", keys, "Enter"])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}
