//! A terminal for a container or exec process (`process.terminal` with `--console-socket`): the
//! guest has the process's real pty; the host side is a pty pair of the monitor's. Its master goes
//! to the engine over the console socket (SCM_RIGHTS, as runc sends it); its slave, in raw mode
//! (the guest's pty already cooks), carries the guest's output to the engine, and the engine's
//! input through a fifo (the shim's stdin copy reads fifos) fed by a thread. Window sizes the
//! engine sets on the master are read back from the slave and passed on ([`Console::size`]).

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios;

use super::OciError;

/// The fifo the engine's input goes through.
const INPUT_FIFO: &str = "tty-in";

/// The host side of a process's terminal.
#[derive(Debug)]
pub struct Console {
    slave: OwnedFd,
    slave_path: PathBuf,
    input: PathBuf,
}

fn os(what: &str) -> impl FnOnce(nix::Error) -> OciError + '_ {
    move |e| OciError::Io(what.to_owned(), std::io::Error::from(e))
}

impl Console {
    /// Makes the pty pair, sends its master to `socket`, and starts feeding input into a fifo
    /// under `dir` (named after `tag`, which tells processes of one container apart).
    pub fn open(socket: &Path, dir: &Path, tag: &str) -> Result<Self, OciError> {
        let pty = nix::pty::openpty(None, None).map_err(os("cannot open a pty"))?;
        let mut attrs = termios::tcgetattr(&pty.slave).map_err(os("cannot read the pty's mode"))?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &attrs)
            .map_err(os("cannot make the pty raw"))?;
        let slave_path =
            nix::unistd::ttyname(pty.slave.as_fd()).map_err(os("cannot name the pty"))?;
        send_master(socket, &pty.master, &slave_path)?;
        drop(pty.master);
        let input = dir.join(format!("{INPUT_FIFO}-{tag}"));
        let _ = std::fs::remove_file(&input);
        nix::unistd::mkfifo(&input, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(os("cannot make the terminal's input fifo"))?;
        let reader = std::fs::File::from(
            pty.slave
                .try_clone()
                .map_err(OciError::io("cannot share the pty"))?,
        );
        let fifo = input.clone();
        std::thread::spawn(move || feed(reader, &fifo));
        Ok(Self {
            slave: pty.slave,
            slave_path,
            input,
        })
    }

    /// Where the guest's output goes (the slave).
    pub fn output_path(&self) -> String {
        self.slave_path.display().to_string()
    }

    /// Where the engine's input comes from (the fifo).
    pub fn input_path(&self) -> String {
        self.input.display().to_string()
    }

    /// The window size the engine last set: (rows, columns); `None` while unset.
    pub fn size(&self) -> Option<(u16, u16)> {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call; the fd is
        // the slave this Console owns; the return value is checked.
        let rc = unsafe { libc::ioctl(self.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.input);
    }
}

/// Sends `master` over the console socket with the pty's name, as runc does.
fn send_master(socket: &Path, master: &OwnedFd, name: &Path) -> Result<(), OciError> {
    let stream = UnixStream::connect(socket).map_err(OciError::io(format!(
        "cannot connect to the console socket {}",
        socket.display()
    )))?;
    let name = name.display().to_string();
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(os("cannot send the pty to the console socket"))?;
    Ok(())
}

/// Copies the engine's input (read from the slave) into the fifo until the engine hangs up.
fn feed(mut from: std::fs::File, fifo: &Path) {
    // Blocks until the stdin copy opens its end.
    let Ok(mut to) = std::fs::OpenOptions::new().write(true).open(fifo) else {
        return;
    };
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
