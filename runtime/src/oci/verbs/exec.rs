//! `exec`: run a process in a running container. The process that stands for it on the host
//! (the pid in `--pid-file`) is `hull exec` itself, or with `--detach` a child started as
//! `hull oci-exec-monitor`: it holds the engine's stdio, asks the container's monitor to run the
//! process, passes its signals on, and exits with the process's status.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use oci_spec::runtime::{Process, User};

use super::{write_pid_file, Globals};
use crate::oci::console::Console;
use crate::oci::control::{call, Reply, Request, Session, StdioSpec};
use crate::oci::state::{StateDir, Status};
use crate::oci::{stdio, OciError};

/// What `exec` is asked.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    /// An OCI process JSON file (the engines' way).
    pub process: Option<PathBuf>,
    /// Return once the process runs.
    pub detach: bool,
    /// Where the host pid goes.
    pub pid_file: Option<PathBuf>,
    /// A terminal.
    pub tty: bool,
    /// The engine's console socket.
    pub console_socket: Option<PathBuf>,
    /// Extra environment (`KEY=value`).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    /// The command, when there is no `process`.
    pub args: Vec<String>,
}

/// How long a detached exec may take to start.
const START_BOUND: Duration = Duration::from_secs(60);

/// Runs the exec; returns the status to exit with.
pub fn run(globals: &Globals, id: &str, opts: &ExecOpts) -> Result<i32, OciError> {
    let dir = StateDir::new(&globals.root, id)?;
    let record = dir.current()?;
    if record.status != Status::Running {
        return Err(OciError::State(format!(
            "cannot exec in a container that is {}",
            record.status
        )));
    }
    let mut process = build_process(&record.bundle, opts)?;
    let terminal = opts.tty || process.terminal() == Some(true);
    let console = match (&opts.console_socket, terminal) {
        (Some(socket), true) => Some(super::absolute(socket)?),
        (None, true) => {
            return Err(OciError::InvalidArgument(
                "exec with a terminal needs --console-socket".into(),
            ))
        }
        _ => None,
    };
    process.set_terminal(Some(terminal));
    let process = serde_json::to_value(&process)
        .map_err(|e| OciError::InvalidArgument(format!("exec process: {e}")))?;
    if !opts.detach {
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, std::process::id())?;
        }
        return foreground(&dir, process, None, console.as_deref());
    }
    let n = std::process::id();
    let job = dir.dir.join(format!("exec-{n}.json"));
    let ready = dir.dir.join(format!("exec-{n}.ready"));
    let json = serde_json::to_vec(&process)
        .map_err(|e| OciError::InvalidArgument(format!("exec process: {e}")))?;
    std::fs::write(&job, json).map_err(OciError::io(format!("cannot write {}", job.display())))?;
    let result = detach(globals, &dir, (&job, &ready), console.as_deref(), opts);
    let _ = std::fs::remove_file(&job);
    let _ = std::fs::remove_file(&ready);
    result
}

fn detach(
    globals: &Globals,
    dir: &StateDir,
    (job, ready): (&Path, &Path),
    console: Option<&Path>,
    opts: &ExecOpts,
) -> Result<i32, OciError> {
    let exe = std::env::current_exe().map_err(OciError::io("cannot find the hull binary"))?;
    let mut command = Command::new(exe);
    command
        .arg("--root")
        .arg(&globals.root)
        .arg("oci-exec-monitor");
    if let Some(socket) = console {
        command.arg("--console-socket").arg(socket);
    }
    let mut child = command
        .arg("--process")
        .arg(job)
        .arg("--ready-file")
        .arg(ready)
        .arg(&dir.id)
        .spawn()
        .map_err(OciError::io("cannot start the exec's host process"))?;
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            if text == "started" {
                break;
            }
            if let Some(e) = text.strip_prefix("error: ") {
                let _ = child.wait();
                return Err(OciError::State(e.to_owned()));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(OciError::Monitor(format!(
                "the exec's host process exited ({status}) before the process started"
            )));
        }
        if started.elapsed() > START_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            return Err(OciError::Monitor(format!(
                "the exec did not start within {START_BOUND:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, child.id())?;
    }
    Ok(0)
}

/// `hull oci-exec-monitor`: the detached exec's host process; exits with the process's status.
pub fn monitor(
    globals: &Globals,
    id: &str,
    (job, ready): (&Path, &Path),
    console: Option<&Path>,
) -> ! {
    let _ = nix::unistd::setsid();
    let result = StateDir::new(&globals.root, id).and_then(|dir| {
        let text =
            std::fs::read(job).map_err(OciError::io(format!("cannot read {}", job.display())))?;
        let process = serde_json::from_slice(&text)
            .map_err(|e| OciError::InvalidArgument(format!("exec process: {e}")))?;
        foreground(&dir, process, Some(ready), console)
    });
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            let msg = crate::agent::client::error_chain(&e);
            let _ = std::fs::write(ready, format!("error: {msg}"));
            std::process::exit(255)
        }
    }
}

/// Runs the exec through the monitor with this process's stdio; `ready` is told once it runs.
fn foreground(
    dir: &StateDir,
    process: serde_json::Value,
    ready: Option<&Path>,
    console: Option<&Path>,
) -> Result<i32, OciError> {
    let me = std::process::id();
    let console = match console {
        Some(socket) => Some(Console::open(socket, &dir.dir, &format!("exec-{me}"))?),
        None => None,
    };
    let io = match &console {
        Some(c) => StdioSpec {
            stdin: c.input_path(),
            stdout: c.output_path(),
            stderr: String::new(),
            terminal: true,
        },
        None => stdio::of_process(me, false)?,
    };
    // Blocked before any thread starts, so that only the forwarding thread takes them.
    let mut set = SigSet::empty();
    for s in crate::oci::signal::FORWARDED {
        if let Ok(s) = Signal::try_from(*s) {
            set.add(s);
        }
    }
    let _ = set.thread_block();
    let mut session = Session::open(&dir.socket(), &Request::Exec { process, stdio: io })?;
    let exec_id = match session.reply()? {
        Reply::ExecStarted { exec_id } => exec_id,
        Reply::Error { message } => return Err(OciError::State(message)),
        other => return Err(OciError::Monitor(format!("unexpected reply {other:?}"))),
    };
    if let Some(ready) = ready {
        let _ = std::fs::write(ready, "started");
    }
    let socket = dir.socket();
    if let Some(console) = console {
        let (socket, exec_id) = (socket.clone(), exec_id.clone());
        std::thread::spawn(move || follow_size(&console, &socket, &exec_id));
    }
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        let request = Request::Kill {
            signal: u32::try_from(sig as i32).unwrap_or(15),
            all: false,
            exec_id: exec_id.clone(),
        };
        if let Err(e) = call(&socket, &request) {
            tracing::debug!("forwarding {sig}: {e}");
        }
    });
    match session.reply()? {
        Reply::Exited { status } => Ok(status),
        Reply::Error { message } => Err(OciError::State(message)),
        other => Err(OciError::Monitor(format!("unexpected reply {other:?}"))),
    }
}

/// Passes the window sizes the engine sets on the exec's terminal to the monitor, until it is
/// gone.
fn follow_size(console: &Console, socket: &Path, exec_id: &str) {
    let mut last = None;
    loop {
        let size = console.size();
        if size.is_some() && size != last {
            if let Some((rows, cols)) = size {
                let request = Request::Resize {
                    exec_id: exec_id.to_owned(),
                    width: u32::from(cols),
                    height: u32::from(rows),
                };
                if let Err(OciError::Monitor(_)) = call(socket, &request) {
                    return;
                }
            }
            last = size;
        }
        std::thread::sleep(crate::oci::monitor::SIZE_POLL);
    }
}

/// The process to run: the engine's process file, or the container's own process with the
/// command and the flags put in.
fn build_process(bundle: &Path, opts: &ExecOpts) -> Result<Process, OciError> {
    /// The one part of the bundle's config.json an exec needs.
    #[derive(serde::Deserialize)]
    struct Config {
        process: Option<Process>,
    }
    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, OciError> {
        let text =
            std::fs::read(path).map_err(OciError::io(format!("cannot read {}", path.display())))?;
        serde_json::from_slice(&text)
            .map_err(|e| OciError::InvalidArgument(format!("{}: {e}", path.display())))
    }
    let mut process = match &opts.process {
        Some(p) => read::<Process>(p)?,
        None => {
            if opts.args.is_empty() {
                return Err(OciError::InvalidArgument(
                    "exec needs a command or --process".into(),
                ));
            }
            let config: Config = read(&bundle.join("config.json"))?;
            let mut p = match config.process {
                Some(p) => p,
                // A bundle without a process: run as root in `/`, nothing else set.
                None => serde_json::from_value(serde_json::json!({"cwd": "/", "user": {}}))
                    .map_err(|e| OciError::InvalidArgument(format!("exec process: {e}")))?,
            };
            p.set_args(Some(opts.args.clone()));
            p.set_terminal(Some(opts.tty));
            p
        }
    };
    if !opts.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        env.extend(opts.env.iter().cloned());
        process.set_env(Some(env));
    }
    if let Some(cwd) = &opts.cwd {
        process.set_cwd(cwd.into());
    }
    if let Some(user) = &opts.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                OciError::InvalidArgument(format!("--user {user:?}: expected uid[:gid]"))
            })
        };
        let mut ids = User::default();
        ids.set_uid(parse(uid)?);
        ids.set_gid(parse(gid)?);
        process.set_user(ids);
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(OciError::InvalidArgument(
            "the exec process has no args".into(),
        ));
    }
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_and_flags_go_into_the_containers_process() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"process":{"args":["sh"],"cwd":"/","env":["A=1"],"user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap();
        let opts = ExecOpts {
            args: vec!["echo".into(), "hi".into()],
            env: vec!["B=2".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:100".into()),
            ..Default::default()
        };
        let p = build_process(bundle.path(), &opts).unwrap();
        assert_eq!(
            p.args().as_deref(),
            Some(&["echo".to_owned(), "hi".to_owned()][..])
        );
        assert_eq!(
            p.env().as_deref(),
            Some(&["A=1".to_owned(), "B=2".to_owned()][..])
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.terminal(), Some(false));
        // A bundle without a process still gets one, as root in `/`.
        std::fs::write(bundle.path().join("config.json"), "{}").unwrap();
        let p = build_process(bundle.path(), &opts).unwrap();
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.env().as_deref(), Some(&["B=2".to_owned()][..]));
        let e = build_process(bundle.path(), &ExecOpts::default()).unwrap_err();
        assert!(e.to_string().contains("needs a command"), "{e}");
        let bad = ExecOpts {
            user: Some("me".into()),
            ..opts
        };
        assert!(build_process(bundle.path(), &bad).is_err());
    }
}
