//! The monitor: the host process that stands for one container. `create` starts it (as
//! `hull oci-monitor`, in its own session, holding the engine's stdio as fds 0-2); it boots the
//! pod VM and creates the container through the shim's own Task logic ([`crate::shim::task`]),
//! then serves the control socket ([`super::control`]) until the container's process exits. It
//! forwards the signals it receives to that process, records every status change in the state
//! directory, stops the VM once the process is gone, and exits with the process's status (128+n
//! for signal n): the pid engines read from `--pid-file` and wait on.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::ExitSignal;
use containerd_shim_protos::protobuf::MessageDyn;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::console::Console;
use super::control::{self, Reply, Request, StdioSpec};
use super::hooks;
use super::state::{self, Record, StateDir, Status};
use super::stdio;
use crate::agent::client::error_chain;
use crate::shim::config::HullConfig;
use crate::shim::events::EventSink;
use crate::shim::pod::{Pod, ProcessState};
use crate::shim::task;

/// What `create` tells the monitor.
#[derive(Debug, Clone)]
pub struct MonitorArgs {
    /// The state root.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// The bundle (absolute).
    pub bundle: PathBuf,
    /// The engine's console socket (with `process.terminal`).
    pub console_socket: Option<PathBuf>,
}

/// Task events go nowhere: an OCI engine learns of exits from the monitor's own exit.
#[derive(Debug)]
struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn publish(&self, _topic: &'static str, _event: Box<dyn MessageDyn>) {}
}

/// One container's monitor.
#[derive(Debug)]
struct Monitor {
    pod: Arc<Pod>,
    /// Held while a `start` is handled and answered.
    starting: tokio::sync::Mutex<()>,
    dir: StateDir,
    record: Mutex<Record>,
    /// The container's exit status, once decided (the first to decide wins).
    ended: watch::Sender<Option<i32>>,
    execs: std::sync::atomic::AtomicU64,
    /// The init process's terminal, and the window size last passed to the guest.
    console: Option<Console>,
    last_size: Mutex<Option<(u16, u16)>>,
}

/// Runs the monitor of `args` and exits with the container's status; never returns.
pub fn run(args: MonitorArgs) -> ! {
    let dir = StateDir {
        dir: args.root.join(&args.id),
        id: args.id.clone(),
    };
    // Its own session: the engine's terminal or process group signals reach it only on purpose.
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    init_logging(&dir);
    // Before any thread exists, so every thread (and every process it starts) shares it.
    let netns = match own_netns(&args.bundle) {
        Ok(n) => n,
        Err(msg) => {
            fail(&dir, &msg);
            std::process::exit(1)
        }
    };
    let code = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(serve(args, dir, netns)),
        Err(e) => {
            fail(&dir, &format!("cannot start the monitor's runtime: {e}"));
            1
        }
    };
    std::process::exit(code)
}

/// Leaves `msg` for `create` to print and logs it.
fn fail(dir: &StateDir, msg: &str) {
    tracing::error!("{msg}");
    let _ = std::fs::write(dir.dir.join(state::CREATE_ERROR), msg);
}

/// A spec whose `network` namespace names no path asks the runtime for a new one, which the
/// engine then configures through the pid in the state its prestart hook gets (Docker's
/// `libnetwork-setkey` moves the container's veth into `/proc/<pid>/ns/net`): the monitor, that
/// pid, makes it for itself, and the VM takes over what the engine puts there. Returns its path.
fn own_netns(bundle: &std::path::Path) -> Result<Option<PathBuf>, String> {
    let spec = task::create::read_spec(bundle).map_err(|e| error_chain(&e))?;
    let unnamed = spec
        .spec()
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|list| {
            list.iter().any(|ns| {
                ns.typ() == oci_spec::runtime::LinuxNamespaceType::Network
                    && ns.path().as_ref().is_none_or(|p| p.as_os_str().is_empty())
            })
        });
    if !unnamed {
        return Ok(None);
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot make the container's network namespace: {e}"))?;
    Ok(Some(PathBuf::from(format!(
        "/proc/{}/ns/net",
        std::process::id()
    ))))
}

async fn serve(args: MonitorArgs, dir: StateDir, netns: Option<PathBuf>) -> i32 {
    let (listener, pod, record, console) = match create(&args, &dir, netns).await {
        Ok(created) => created,
        Err(msg) => {
            fail(&dir, &msg);
            return 1;
        }
    };
    let monitor = Arc::new(Monitor {
        pod,
        starting: Default::default(),
        dir,
        record: Mutex::new(record.clone()),
        ended: watch::channel(None).0,
        execs: Default::default(),
        console,
        last_size: Mutex::new(None),
    });
    if let Err(e) = monitor.dir.write(&record) {
        fail(&monitor.dir, &error_chain(&e));
        monitor.teardown().await;
        return 1;
    }
    tracing::info!(id = %args.id, "container created");
    tokio::spawn(accept(listener, monitor.clone()));
    forward_signals(monitor.clone());
    if monitor.console.is_some() {
        tokio::spawn(follow_size(monitor.clone()));
    }
    run_to_end(monitor).await
}

/// What `create` made: the control socket's listener, the pod with the container created in its
/// VM, the container's first state record and its terminal if it has one.
type Created = (UnixListener, Arc<Pod>, Record, Option<Console>);

/// Listens on the control socket, loads hull's configuration and the bundle's spec, opens the
/// terminal or takes the engine's stdio, runs the spec's `prestart` and `createRuntime` hooks on
/// the host (the state's pid is the monitor's, whose network namespace the container's VM
/// takes over), and creates the container (booting its VM); the message for `create` to print
/// if any step fails.
async fn create(
    args: &MonitorArgs,
    dir: &StateDir,
    netns: Option<PathBuf>,
) -> Result<Created, String> {
    let listener = UnixListener::bind(dir.socket())
        .map_err(|e| format!("cannot listen on {}: {e}", dir.socket().display()))?;
    let config = HullConfig::load().map_err(|e| error_chain(&e))?;
    if let Some(v) = &config.virtiofsd {
        // crate::share starts virtiofsd from HULL_VIRTIOFSD; set before the VM boots.
        std::env::set_var("HULL_VIRTIOFSD", v);
    }
    let spec = task::create::read_spec(&args.bundle).map_err(|e| error_chain(&e))?;
    let terminal = spec
        .spec()
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let annotations = spec
        .spec()
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let me = std::process::id();
    let console = match (terminal, &args.console_socket) {
        (true, Some(socket)) => {
            Some(Console::open(socket, &dir.dir, "init").map_err(|e| error_chain(&e))?)
        }
        _ => None,
    };
    let io = match &console {
        Some(c) => StdioSpec {
            stdin: c.input_path(),
            stdout: c.output_path(),
            stderr: String::new(),
            terminal: true,
        },
        None => stdio::of_process(me, false).map_err(|e| error_chain(&e))?,
    };
    let mut record = Record {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        pid: me,
        pid_start: state::start_time(me).unwrap_or(0),
        status: Status::Creating,
        exit_status: None,
        created: state::rfc3339_now(),
        annotations,
        run_dir: PathBuf::new(),
    };
    let hook_spec = spec.spec().clone();
    let hook_state = serde_json::to_vec(&record.oci_state()).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        hooks::check_supported(&hook_spec)?;
        hooks::run_stage(&hook_spec, hooks::Stage::Create, &hook_state)
    })
    .await
    .map_err(|e| format!("hook runner: {e}"))?
    .map_err(|e| error_chain(&e))?;
    let pod = Arc::new(Pod::new(
        &args.id,
        config,
        Arc::new(NoEvents),
        Arc::new(ExitSignal::default()),
    ));
    let create = task::create::CreateArgs {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        rootfs: Vec::new(),
        stdio: stdio::paths(&io),
        oci: Some(task::create::OciHost { netns }),
    };
    task::create::create(&pod, create)
        .await
        .map_err(|e| format!("cannot create the container: {}", error_chain(&e)))?;
    record.status = Status::Created;
    record.run_dir = pod.run_dir.clone();
    Ok((listener, pod, record, console))
}

/// Waits for the container's process to end (or for `kill`/`delete` to end it), records its
/// status, stops the VM and returns the status the monitor exits with.
async fn run_to_end(monitor: Arc<Monitor>) -> i32 {
    let init_exit = {
        let m = monitor.clone();
        async move {
            match m.pod.process(&m.dir.id, "") {
                Ok(p) => i32::try_from(p.wait().await.status).unwrap_or(255),
                Err(_) => 255,
            }
        }
    };
    let mut ended = monitor.ended.subscribe();
    let status = tokio::select! {
        s = init_exit => s,
        Ok(s) = ended.wait_for(Option::is_some) => s.unwrap_or(255),
    };
    monitor.end(status);
    monitor.set_status(Status::Stopped, Some(status));
    tracing::info!(status, "container process ended; stopping the VM");
    monitor.teardown().await;
    let _ = std::fs::remove_file(monitor.dir.socket());
    // A `start` being handled gets its reply first (bounded), even when the process ended at
    // once.
    let _ = tokio::time::timeout(START_REPLY_BOUND, monitor.starting.lock()).await;
    status
}

/// How long an exiting monitor waits for an in-flight `start` to be answered.
const START_REPLY_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

impl Monitor {
    fn end(&self, status: i32) {
        self.ended.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(status);
                true
            } else {
                false
            }
        });
    }

    fn status(&self) -> Status {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).status
    }

    fn set_status(&self, status: Status, exit: Option<i32>) {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        record.status = status;
        if exit.is_some() {
            record.exit_status = exit;
        }
        if let Err(e) = self.dir.write(&record) {
            tracing::warn!("{}", error_chain(&e));
        }
    }

    /// Passes the init process's terminal size to the guest when it changed.
    async fn sync_size(&self) {
        let Some(size) = self.console.as_ref().and_then(Console::size) else {
            return;
        };
        {
            let mut last = self.last_size.lock().unwrap_or_else(|e| e.into_inner());
            if *last == Some(size) {
                return;
            }
            *last = Some(size);
        }
        let (rows, cols) = size;
        let r = task::resize::resize_pty(
            &self.pod,
            &self.dir.id,
            "",
            u32::from(cols),
            u32::from(rows),
        )
        .await;
        if let Err(e) = r {
            tracing::debug!("resize: {}", error_chain(&e));
        }
    }

    /// Removes the container from the guest (if still there) and stops the VM.
    async fn teardown(&self) {
        let id = &self.dir.id;
        if self.pod.container(id).is_ok() {
            if let Some(ProcessState::Running) = self.pod.process(id, "").ok().map(|p| p.state()) {
                let _ = task::kill::kill(&self.pod, id, "", 9, true).await;
                if let Ok(p) = self.pod.process(id, "") {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p.wait()).await;
                }
            }
            if let Err(e) = task::delete::delete(&self.pod, id, "").await {
                tracing::warn!("removing the container: {}", error_chain(&e));
            }
        }
        self.pod.stop_vm().await;
    }

    async fn handle(self: &Arc<Self>, request: Request, out: &mut UnixStream) -> Reply {
        let id = self.dir.id.clone();
        let refused = |e: crate::shim::ShimError| Reply::Error {
            message: error_chain(&e),
        };
        match request {
            Request::Start => {
                if self.status() != Status::Created {
                    return Reply::Error {
                        message: format!("cannot start a container that is {}", self.status()),
                    };
                }
                // The engine sets the size before it starts the process: the guest's pty has
                // it before the process can ask.
                self.sync_size().await;
                match task::start::start(&self.pod, &id, "").await {
                    Ok(_) => {
                        self.set_status(Status::Running, None);
                        Reply::Ok
                    }
                    Err(e) => refused(e),
                }
            }
            Request::Kill {
                signal,
                all,
                exec_id,
            } => match self.status() {
                Status::Created if exec_id.is_empty() => {
                    // Never started: the process dies at its start barrier.
                    self.end(128 + i32::try_from(signal).unwrap_or(0));
                    Reply::Ok
                }
                Status::Stopped => Reply::Error {
                    message: "container not running".into(),
                },
                _ => match task::kill::kill(&self.pod, &id, &exec_id, signal, all).await {
                    Ok(()) => Reply::Ok,
                    Err(e) => refused(e),
                },
            },
            Request::Delete => {
                if self.status() != Status::Created {
                    return Reply::Error {
                        message: format!(
                            "cannot delete container {id} that is not stopped: {}",
                            self.status()
                        ),
                    };
                }
                self.end(128 + libc::SIGKILL);
                Reply::Ok
            }
            Request::Pause => match task::pause::pause(&self.pod, &id).await {
                Ok(()) => {
                    self.set_status(Status::Paused, None);
                    Reply::Ok
                }
                Err(e) => refused(e),
            },
            Request::Resume => match task::resume::resume(&self.pod, &id).await {
                Ok(()) => {
                    self.set_status(Status::Running, None);
                    Reply::Ok
                }
                Err(e) => refused(e),
            },
            Request::Ps => match task::pids::pids(&self.pod, &id).await {
                Ok(pids) => Reply::Pids { pids },
                Err(e) => refused(e),
            },
            Request::Resize {
                exec_id,
                width,
                height,
            } => match task::resize::resize_pty(&self.pod, &id, &exec_id, width, height).await {
                Ok(()) => Reply::Ok,
                Err(e) => refused(e),
            },
            Request::Exec { process, stdio } => self.exec(process, stdio, out).await,
            Request::Stats => match self.stats().await {
                Ok(stats) => Reply::Stats { stats },
                Err(e) => refused(e),
            },
            Request::Update { resources } => {
                let json = resources.to_string();
                match task::update::update(&self.pod, &id, json.as_bytes()).await {
                    Ok(()) => Reply::Ok,
                    Err(e) => refused(e),
                }
            }
        }
    }

    /// The container's cgroup statistics in the guest, as runc's `events --stats` data.
    async fn stats(&self) -> Result<serde_json::Value, crate::shim::ShimError> {
        self.pod.container(&self.dir.id)?;
        let vm = self.pod.vm().await?;
        let stats = vm.agent.stats_container(&self.dir.id).await?;
        Ok(super::verbs::events::runc_stats(&stats))
    }

    /// Runs an exec: replies `ExecStarted` on `out` at once, and returns its exit.
    async fn exec(
        self: &Arc<Self>,
        process: serde_json::Value,
        io: StdioSpec,
        out: &mut UnixStream,
    ) -> Reply {
        let id = self.dir.id.clone();
        if self.status() != Status::Running {
            return Reply::Error {
                message: format!("cannot exec in a container that is {}", self.status()),
            };
        }
        let n = self.execs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let exec_id = format!("exec{n}");
        let json = match serde_json::to_vec(&process) {
            Ok(j) => j,
            Err(e) => {
                return Reply::Error {
                    message: format!("exec process: {e}"),
                }
            }
        };
        let refused = |e: crate::shim::ShimError| Reply::Error {
            message: error_chain(&e),
        };
        if let Err(e) = task::exec::exec(&self.pod, &id, &exec_id, stdio::paths(&io), json).await {
            return refused(e);
        }
        if let Err(e) = task::start::start(&self.pod, &id, &exec_id).await {
            let _ = task::delete::delete(&self.pod, &id, &exec_id).await;
            return refused(e);
        }
        let started = control::encode(&Reply::ExecStarted {
            exec_id: exec_id.clone(),
        });
        let _ = out.write_all(&started).await;
        let status = match self.pod.process(&id, &exec_id) {
            Ok(p) => i32::try_from(p.wait().await.status).unwrap_or(255),
            Err(e) => return refused(e),
        };
        let _ = task::delete::delete(&self.pod, &id, &exec_id).await;
        Reply::Exited { status }
    }
}

async fn accept(listener: UnixListener, monitor: Arc<Monitor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                continue;
            }
        };
        let monitor = monitor.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut stream = match reader.into_inner().reunite(write) {
                Ok(s) => s,
                Err(_) => return,
            };
            let parsed = serde_json::from_str::<Request>(&line);
            // `start` is answered even when the process ends at once: the monitor does not
            // exit before this reply is written.
            let _starting = match &parsed {
                Ok(Request::Start) => Some(monitor.starting.lock().await),
                _ => None,
            };
            let reply = match parsed {
                Ok(request) => {
                    tracing::debug!(?request, "control request");
                    monitor.handle(request, &mut stream).await
                }
                Err(e) => Reply::Error {
                    message: format!("bad request: {e}"),
                },
            };
            write = stream.into_split().1;
            let _ = write.write_all(&control::encode(&reply)).await;
        });
    }
}

/// How often the terminal's window size is looked at.
pub const SIZE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Passes the window sizes the engine sets on the init process's terminal to the guest while
/// the process lives.
async fn follow_size(monitor: Arc<Monitor>) {
    while monitor.status() != Status::Stopped {
        monitor.sync_size().await;
        tokio::time::sleep(SIZE_POLL).await;
    }
}

/// Passes the signals the monitor receives on to the container's process (a container not yet
/// started ends, as if its process had been killed by the signal).
fn forward_signals(monitor: Arc<Monitor>) {
    use tokio::signal::unix::{signal, SignalKind};
    for &sig in super::signal::FORWARDED {
        let Ok(mut stream) = signal(SignalKind::from_raw(sig)) else {
            continue;
        };
        let monitor = monitor.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let signal = u32::try_from(sig).unwrap_or(15);
                let request = Request::Kill {
                    signal,
                    all: false,
                    exec_id: String::new(),
                };
                let mut sink = match UnixStream::pair() {
                    Ok((a, _b)) => a,
                    Err(_) => continue,
                };
                let reply = monitor.handle(request, &mut sink).await;
                tracing::info!(signal, ?reply, "forwarded a signal");
            }
        });
    }
}

/// Closes every inherited fd but stdio: an engine's pipe held open by a long-lived monitor
/// could keep the engine waiting for its end.
fn close_inherited_fds() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// Logs to the state directory's `monitor.log` (the monitor's stderr is the container's).
fn init_logging(dir: &StateDir) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.dir.join(state::MONITOR_LOG))
    else {
        return;
    };
    let level = std::env::var("HULL_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}
