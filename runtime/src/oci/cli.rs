//! The runc command line on the `hull` binary: its global flags ([`GlobalArgs`]) and verbs
//! ([`OciCommand`]), parsed by clap (an unknown verb or flag is an error with exit status 2
//! naming it), handed to [`super::verbs`]; errors are printed once, as runc does, to stderr and
//! to the `--log` file (JSON lines with `--log-format json`, which engines read back).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::verbs::{self, create::CreateOpts, exec::ExecOpts, Globals};
use super::{OciError, DEFAULT_ROOT};
use crate::agent::client::error_chain;

/// runc's global flags.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Directory of the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Where errors and logs go (besides stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// `text` or `json`: the form of `--log`'s lines.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Accepted for engines that pass it: the VM's host cgroup follows `linux.cgroupsPath`
    /// through cgroupfs either way.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
}

/// The OCI runtime verbs (runc's command line).
#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Create a container from a bundle: boot its VM, hold its process at the start barrier.
    Create {
        /// `create`'s flags.
        #[command(flatten)]
        create: CreateArgs,
        /// Container id.
        id: String,
    },
    /// Start a created container's process.
    Start {
        /// Container id.
        id: String,
    },
    /// Print a container's OCI state JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (name or number; default SIGTERM) to a container's process.
    Kill {
        /// Signal every process of the container.
        #[arg(long, short = 'a')]
        all: bool,
        /// Container id.
        id: String,
        /// The signal.
        signal: Option<String>,
    },
    /// Delete a container (and its VM); `--force` kills it first.
    Delete {
        /// Kill a running container.
        #[arg(long, short = 'f')]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Create and start a container; without `--detach`, wait and exit with its status.
    Run {
        /// `create`'s flags.
        #[command(flatten)]
        create: CreateArgs,
        /// Return once it runs.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
        /// Container id.
        id: String,
    },
    /// Run a process in a running container.
    Exec {
        /// An OCI process JSON file.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        /// Return once the process runs.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Where the host pid goes.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// A terminal.
        #[arg(long, short = 't')]
        tty: bool,
        /// The engine's console socket.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Extra environment (`KEY=value`).
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// `uid[:gid]`.
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Extra fds to pass (refused when non-zero: fds cannot cross into a VM).
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Container id.
        id: String,
        /// The command (without `--process`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List a container's processes (guest pids).
    Ps {
        /// `table` or `json`.
        #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Container id.
        id: String,
    },
    /// Freeze a container's processes.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the containers.
    List {
        /// `table` or `json`.
        #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Ids only.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Print the container's statistics (`--stats`: once), from its cgroup in the guest.
    Events {
        /// One line of statistics, then exit.
        #[arg(long)]
        stats: bool,
        /// Seconds between lines without `--stats`.
        #[arg(long, default_value = "5s", value_parser = parse_interval)]
        interval: std::time::Duration,
        /// Container id.
        id: String,
    },
    /// Change a running container's resource limits (in its guest cgroup).
    Update {
        /// The limits.
        #[command(flatten)]
        limits: Box<UpdateArgs>,
        /// Container id.
        id: String,
    },
    /// Print what this runtime supports (JSON).
    Features,
    /// Write a starting config.json into the bundle.
    Spec {
        /// The bundle directory.
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// (internal) The host process that stands for a container; `create` starts it.
    #[command(hide = true)]
    OciMonitor {
        /// The bundle (absolute).
        #[arg(long)]
        bundle: PathBuf,
        /// The engine's console socket.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Container id.
        id: String,
    },
    /// (internal) The host process of a detached exec; `exec --detach` starts it.
    #[command(hide = true)]
    OciExecMonitor {
        /// The engine's console socket.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// The process JSON file.
        #[arg(long)]
        process: PathBuf,
        /// Where to say that the process runs.
        #[arg(long)]
        ready_file: PathBuf,
        /// Container id.
        id: String,
    },
}

/// `update`'s flags.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// OCI `linux.resources` JSON file (`-`: stdin).
    #[arg(long, short = 'r')]
    resources: Option<String>,
    /// Memory limit (bytes or with a k/m/g suffix; -1 unlimited).
    #[arg(long, short = 'm')]
    memory: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit.
    #[arg(long)]
    memory_swap: Option<String>,
    /// Accepted and ignored: the guest kernel accounts no kernel memory apart.
    #[arg(long)]
    kernel_memory: Option<String>,
    /// Accepted and ignored (see `--kernel-memory`).
    #[arg(long)]
    kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    cpu_share: Option<u64>,
    /// CPU CFS quota (µs per period).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS period (µs).
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CPUs the container may use.
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Most processes (-1 unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
}

/// `create`'s and `run`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Where the host pid goes.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// The engine's console socket.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Extra fds to pass (refused when non-zero: fds cannot cross into a VM).
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted: the guest, not the host, builds the container's root.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted: the guest kernel's keyring is the VM's own.
    #[arg(long)]
    no_new_keyring: bool,
}

impl CreateArgs {
    fn opts(&self) -> CreateOpts {
        CreateOpts {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
        }
    }
}

/// Whether `command` sets up its own logging (the monitors: their stderr is the container's).
pub fn logs_itself(command: &OciCommand) -> bool {
    matches!(
        command,
        OciCommand::OciMonitor { .. } | OciCommand::OciExecMonitor { .. }
    )
}

/// Runs `command`; returns the exit status (errors printed: 1, as runc exits).
pub fn dispatch(globals: &GlobalArgs, command: OciCommand) -> i32 {
    let g = Globals {
        root: globals.root.clone(),
    };
    let result = match command {
        OciCommand::Create { create, id } => verbs::create::run(&g, &id, &create.opts()),
        OciCommand::Start { id } => verbs::start::run(&g, &id),
        OciCommand::State { id } => verbs::state::run(&g, &id),
        OciCommand::Kill { all, id, signal } => verbs::kill::run(&g, &id, signal.as_deref(), all),
        OciCommand::Delete { force, id } => verbs::delete::run(&g, &id, force),
        OciCommand::Run {
            create,
            detach,
            keep,
            id,
        } => verbs::run::run(&g, &id, &create.opts(), detach, keep),
        OciCommand::Exec {
            process,
            detach,
            pid_file,
            tty,
            console_socket,
            env,
            cwd,
            user,
            preserve_fds,
            id,
            args,
        } => {
            if preserve_fds > 0 {
                Err(OciError::InvalidArgument(format!(
                    "--preserve-fds {preserve_fds}: file descriptors cannot be passed into a VM"
                )))
            } else {
                let opts = ExecOpts {
                    process,
                    detach,
                    pid_file,
                    tty,
                    console_socket,
                    env,
                    cwd,
                    user,
                    args,
                };
                verbs::exec::run(&g, &id, &opts)
            }
        }
        OciCommand::Ps { format, id } => verbs::ps::run(&g, &id, format == "json"),
        OciCommand::Pause { id } => verbs::pause::run(&g, &id, true),
        OciCommand::Resume { id } => verbs::pause::run(&g, &id, false),
        OciCommand::List { format, quiet } => verbs::list::run(&g, quiet, format == "json"),
        OciCommand::Events {
            stats,
            interval,
            id,
        } => verbs::events::run(&g, &id, stats, interval),
        OciCommand::Update { limits, id } => {
            let a = *limits;
            let flags = verbs::update::UpdateFlags {
                resources: a.resources,
                memory: a.memory,
                memory_reservation: a.memory_reservation,
                memory_swap: a.memory_swap,
                cpu_shares: a.cpu_share,
                cpu_quota: a.cpu_quota,
                cpu_period: a.cpu_period,
                cpuset_cpus: a.cpuset_cpus,
                cpuset_mems: a.cpuset_mems,
                pids_limit: a.pids_limit,
                blkio_weight: a.blkio_weight,
            };
            verbs::update::run(&g, &id, &flags)
        }
        OciCommand::Features => verbs::features::run(),
        OciCommand::Spec { bundle } => verbs::spec::run(&bundle),
        OciCommand::OciMonitor {
            bundle,
            console_socket,
            id,
        } => super::monitor::run(super::monitor::MonitorArgs {
            root: globals.root.clone(),
            id,
            bundle,
            console_socket,
        }),
        OciCommand::OciExecMonitor {
            console_socket,
            process,
            ready_file,
            id,
        } => verbs::exec::monitor(&g, &id, (&process, &ready_file), console_socket.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(globals, &e);
            1
        }
    }
}

/// runc's `--interval`: a duration such as `5s`, `500ms`, `1m` (a bare number is seconds).
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (such as 5s)"))?;
    let d = match unit {
        "" | "s" => std::time::Duration::from_secs(n),
        "ms" => std::time::Duration::from_millis(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => return Err(format!("{s:?} is not a duration (such as 5s)")),
    };
    if d.is_zero() {
        return Err("the interval must be above zero".into());
    }
    Ok(d)
}

/// Prints `e` to stderr and appends it to the `--log` file.
fn report(globals: &GlobalArgs, e: &OciError) {
    let msg = error_chain(e);
    eprintln!("hull: {msg}");
    let Some(path) = &globals.log else { return };
    let line = if globals.log_format == "json" {
        serde_json::json!({
            "level": "error",
            "msg": msg,
            "time": super::state::rfc3339_now(),
        })
        .to_string()
    } else {
        format!(
            "time=\"{}\" level=error msg={msg:?}",
            super::state::rfc3339_now()
        )
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
