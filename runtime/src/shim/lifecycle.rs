//! The shim binary's life as containerd drives it: `start` (spawn the server, print its
//! address), `delete` (clean up after a dead shim), and the server itself (logging to the
//! bundle's `log` fifo, the Task service, exit when the pod is gone).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{spawn, Config, ExitSignal, Flags, Shim, StartOpts};

use super::config::HullConfig;
use super::events::ContainerdEvents;
use super::pod::{Pod, PIDS_FILE};
use super::service::TaskService;
use super::spec::BundleHints;
use super::task::timestamp;

/// The options the shim runs with: hull reaps its own children (QEMU, vhost-device-vsock) and
/// sets up its own logging.
pub fn shim_config() -> Config {
    Config {
        no_setup_logger: true,
        default_log_level: "info".into(),
        no_reaper: true,
        no_sub_reaper: true,
    }
}

/// hull's shim.
pub struct HullShim {
    id: String,
    namespace: String,
    socket: String,
    debug: bool,
    exit: Arc<ExitSignal>,
}

impl std::fmt::Debug for HullShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HullShim")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Shim for HullShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            socket: args.socket.clone(),
            debug: args.debug,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // Containers of one pod share its shim: group them by the sandbox id CRI annotates.
        let grouping = sandbox_of_bundle(Path::new(".")).unwrap_or_else(|| opts.id.clone());
        // A container joining a running pod gets the pod shim's address at once. (containerd-shim's
        // `spawn` would start a server process that finds the socket taken and exits — and that
        // takes the socket over when the pod shim does not answer within a second, as on a busy
        // host.)
        if grouping != opts.id {
            let address =
                containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
            if is_served(&address).await {
                std::fs::write("address", &address).map_err(|e| {
                    containerd_shim::Error::Other(format!("cannot write address: {e}"))
                })?;
                return Ok(address);
            }
        }
        let address = spawn(opts, &grouping, Vec::new()).await?;
        std::fs::write("address", &address)
            .map_err(|e| containerd_shim::Error::Other(format!("cannot write address: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let config = HullConfig::load().unwrap_or_default();
        // What is left in the pod's host cgroup (the VMM, virtiofsd and their children) is
        // killed, wherever the pids file says or not, and the cgroup removed.
        if let Some(path) = cgroups_path_of_bundle(Path::new(".")) {
            crate::host_cgroup::cleanup(&path);
        }
        cleanup_dead_pod(&config.run_dir.join(&self.id));
        // The dead server's socket (its address is in the bundle, our working directory).
        if let Ok(address) = std::fs::read_to_string("address") {
            remove_stale_socket(address.trim());
        }
        Ok(DeleteResponse {
            pid: 0,
            exit_status: super::fault::KILLED_STATUS,
            exited_at: Some(timestamp(SystemTime::now())).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // containerd-shim removes the socket named in the bundle's `address` file after shutting
        // the server down — by then containerd may have removed the bundle, and the socket stays
        // behind. Unlink ours now: nothing connects to an exiting shim.
        if !self.socket.is_empty() {
            let path = self.socket.strip_prefix("unix://").unwrap_or(&self.socket);
            let _ = std::fs::remove_file(path);
        }
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let (config, config_error) = match HullConfig::load() {
            Ok(c) => (c, None),
            Err(e) => (
                HullConfig::default(),
                Some(crate::agent::client::error_chain(&e)),
            ),
        };
        let level = if self.debug {
            "debug".to_owned()
        } else {
            config.log_level.clone()
        };
        init_logging(&level);
        if let Some(e) = &config_error {
            tracing::error!("{e}");
        }
        tracing::info!(id = %self.id, namespace = %self.namespace, "hull shim serving");
        if let Some(v) = &config.virtiofsd {
            // crate::share starts virtiofsd from HULL_VIRTIOFSD; set before any pod boots.
            std::env::set_var("HULL_VIRTIOFSD", v);
        }
        let events = Arc::new(ContainerdEvents::new(publisher, &self.namespace));
        let pod = Pod::new(&self.id, config, events, self.exit.clone());
        TaskService::new(Arc::new(pod), config_error)
    }
}

/// The sandbox a bundle's container belongs to (CRI's annotation, or CRI-O's), if it names one.
fn sandbox_of_bundle(bundle: &Path) -> Option<String> {
    let hints = BundleHints::read(bundle)?;
    let id = hints.sandbox_id()?;
    hull_protocol::limits::check_id("sandbox id", id).ok()?;
    Some(id.to_owned())
}

/// The host cgroup a bundle's spec names (`linux.cgroupsPath`).
fn cgroups_path_of_bundle(bundle: &Path) -> Option<String> {
    Some(BundleHints::read(bundle)?.cgroups_path()?.to_owned())
}

/// Whether a server accepts connections on `address` (`unix://…`).
async fn is_served(address: &str) -> bool {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    tokio::net::UnixStream::connect(path).await.is_ok()
}

/// Removes the unix socket of `address` (`unix://…`) when nothing serves it any more.
fn remove_stale_socket(address: &str) {
    use std::os::unix::fs::FileTypeExt;
    let path = Path::new(address.strip_prefix("unix://").unwrap_or(address));
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Kills what a dead shim left of pod `dir` (its VMM and vsock backend, found through the pids
/// file and checked against their command lines) and removes the directory.
pub fn cleanup_dead_pod(dir: &Path) {
    let mut killed = false;
    if let Ok(text) = std::fs::read_to_string(dir.join(PIDS_FILE)) {
        let marker = dir.display().to_string();
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                killed |= nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok();
            }
        }
    }
    if killed {
        // Let the killed processes let go of the share before it is unmounted.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if dir.exists() {
        super::pod::remove_pod_dir(dir);
    }
}

/// Logs to the bundle's `log` fifo, where containerd collects shim logs (stderr when absent).
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sink: Box<dyn Write + Send> = match std::fs::OpenOptions::new().write(true).open("log") {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::stderr()),
    };
    let sink = Arc::new(Mutex::new(sink));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || LogWriter(sink.clone()))
        .try_init();
}

struct LogWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}
