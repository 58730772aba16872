//! CRI end to end: a private containerd with its CRI plugin on, runtime handlers `hull` and
//! `runc`, a CNI bridge network (bridge + host-local, loopback) from a conf dir of its own, all in
//! a network namespace the test creates; and a Rust CRI v1 client (`k8s-cri`, tonic over the unix
//! socket) with the calls the kubelet makes, as blocking helpers. The same client drives a private
//! CRI-O ([`Cri::start_crio`], [`crate::crio`]) with the same CNI network.
//!
//! Network tests reach pods from the namespace with [`Cri::netns`] (`netns().command("wget")`).
//! Dropping a [`Cri`] stops and removes every pod through CRI first (so containerd deletes their
//! network namespaces), then everything the engine left.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, DnsConfig, ExecSyncRequest, ExecSyncResponse, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    PodSandboxStatusResponse, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

use crate::containerd::{Containerd, LaunchError, Options, IMAGE};
use crate::crio::Crio;

/// The runtime handler hull is registered as.
pub const HANDLER: &str = "hull";

/// The runc handler, for comparisons.
pub const RUNC_HANDLER: &str = "runc";

/// The pause image (busybox, sleeping), built offline like the busybox image.
pub const PAUSE_IMAGE: &str = "hull.test/pause:latest";

/// The pause image's entrypoint.
pub const PAUSE_COMMAND: &[&str] = &["sleep", "2147483647"];

/// The pods' subnet on the test's CNI bridge.
pub const POD_SUBNET: &str = "10.88.0.0/24";

/// The configuration of a containerd with CRI for `base`; writes the CNI configuration under
/// `base/cni` too.
pub fn containerd_config(base: &Path) -> String {
    let cni = write_cni_config(base);
    format!(
        r#"version = 2
root = "{b}/root"
state = "{b}/state"

[grpc]
  address = "{b}/c.sock"

[ttrpc]
  address = "{b}/c.sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
    runtime_type = "{runtime}"
    pod_annotations = ["io.hull.*"]
    container_annotations = ["io.hull.*"]
"#,
        b = base.display(),
        cni = cni.display(),
        runtime = crate::containerd::RUNTIME,
    )
}

/// Writes the test's CNI network (a bridge, host-local addresses in [`POD_SUBNET`]) under
/// `base/cni`, for either engine; returns that directory.
pub fn write_cni_config(base: &Path) -> PathBuf {
    let cni = base.join("cni");
    std::fs::create_dir_all(&cni).expect("CNI conf dir");
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "hull-test",
        "plugins": [{
            "type": "bridge",
            "bridge": "hull-cni0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": base.join("cni-ipam")
            }
        }]
    });
    std::fs::write(
        cni.join("10-hull-test.conflist"),
        serde_json::to_vec_pretty(&conflist).unwrap(),
    )
    .expect("CNI conf");
    cni
}

/// A private containerd with CRI (or a private CRI-O: [`Cri::start_crio`]), and a client for it.
#[derive(Debug)]
pub struct Cri {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    containerd: Option<Containerd>,
    crio: Option<Crio>,
    /// Makes this engine's pod cgroups its own (see [`Cri::pod_cgroup`]).
    tag: String,
}

/// A tag no other `Cri` alive on the host has: this process's id and a count within it.
fn unique_tag() -> String {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Namespaces as the kubelet asks for them: the pod's network and IPC, a PID namespace per
/// container.
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod.into(),
        pid: NamespaceMode::Container.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

impl Cri {
    /// Starts containerd with CRI and connects; `None` (after the skip-or-fail rule) when the
    /// host lacks what it needs.
    pub fn start() -> Option<Self> {
        Self::start_with(Options::default())
    }

    /// Like [`Cri::start`] with `options` for hull's configuration.
    pub fn start_with(options: Options) -> Option<Self> {
        if !Self::host_has_cni() {
            return None;
        }
        let containerd = Containerd::start_with(&Options {
            cri: true,
            ..options
        })?;
        let (rt, channel) = connect(containerd.socket());
        let me = Self {
            rt,
            channel,
            containerd: Some(containerd),
            crio: None,
            tag: unique_tag(),
        };
        // CRI learns of imported images through events: wait until it knows both.
        let deadline = Instant::now() + Duration::from_secs(20);
        for image in [IMAGE, PAUSE_IMAGE] {
            while !me.has_image(image) {
                assert!(
                    Instant::now() < deadline,
                    "CRI does not see {image}\n{}",
                    crate::containerd::tail(&me.containerd().log(), 40)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Some(me)
    }

    /// Starts a private CRI-O ([`Crio`]) with hull's configuration from `options` and connects;
    /// `None` (after the skip-or-fail rule) when the host lacks CRI-O or what it needs.
    pub fn start_crio(options: Options) -> Option<Self> {
        if !Self::host_has_cni() {
            return None;
        }
        let dir = crate::engines::crio()?;
        let crio = match Crio::launch(&dir, &options) {
            Ok(crio) => crio,
            Err(LaunchError::Missing(why)) => {
                crate::skip_or_fail(&why);
                return None;
            }
            Err(LaunchError::Failed(why)) => panic!("{why}"),
        };
        let (rt, channel) = connect(crio.socket());
        Some(Self {
            rt,
            channel,
            containerd: None,
            crio: Some(crio),
            tag: unique_tag(),
        })
    }

    /// Whether the host has the network tools and CNI plugins the CRI tests need (after the
    /// skip-or-fail rule).
    fn host_has_cni() -> bool {
        for tool in ["ip", "nsenter"] {
            if crate::pod::which(tool).is_none() {
                crate::skip_or_fail(&format!("{tool} is not installed"));
                return false;
            }
        }
        if !Path::new("/usr/lib/cni/bridge").is_file() {
            crate::skip_or_fail(
                "CNI plugins are not installed (containernetworking-plugins, scripts/install-deps.sh)",
            );
            return false;
        }
        true
    }

    /// The containerd (panics under CRI-O).
    pub fn containerd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("a containerd (this Cri drives CRI-O)")
    }

    /// The CRI-O (panics under containerd).
    pub fn crio(&self) -> &Crio {
        self.crio
            .as_ref()
            .expect("a CRI-O (this Cri drives containerd)")
    }

    /// Whether the engine is CRI-O.
    pub fn is_crio(&self) -> bool {
        self.crio.is_some()
    }

    /// The engine's private directory.
    pub fn dir(&self) -> &Path {
        match &self.crio {
            Some(crio) => crio.dir(),
            None => self.containerd().dir(),
        }
    }

    /// hull's run directory for the engine's pods.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    /// The network namespace of the engine, CNI and the pods' host sides.
    pub fn netns(&self) -> &crate::netns::TestNetns {
        match &self.crio {
            Some(crio) => crio.netns(),
            None => self.containerd().netns().expect("CRI runs in a netns"),
        }
    }

    /// A client of CRI's runtime service.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    /// A client of CRI's image service.
    pub fn images(&self) -> k8s_cri::v1::image_service_client::ImageServiceClient<Channel> {
        k8s_cri::v1::image_service_client::ImageServiceClient::new(self.channel.clone())
    }

    /// Runs `f` to completion on the client's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Imports the OCI archive `archive` holding `image` and waits until CRI sees it.
    pub fn import_image(&self, archive: &Path, image: &str) -> Result<(), String> {
        self.containerd().import(archive)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.has_image(image) {
            if Instant::now() >= deadline {
                return Err(format!("CRI does not see {image} after importing it"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn has_image(&self, image: &str) -> bool {
        let req = k8s_cri::v1::ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.block_on(self.images().image_status(req))
            .is_ok_and(|r| r.into_inner().image.is_some())
    }

    /// Where pods' container logs go (`<dir>/<pod name>/<container>/<attempt>.log`).
    pub fn log_root(&self) -> PathBuf {
        self.dir().join("logs")
    }

    /// The host cgroup (relative to the cgroup root) pod `name` of this engine gets as its
    /// parent: `hull-test/pod-<name>-<tag>`. The tag keeps two test runs on one host (or two
    /// engines in one run) out of each other's cgroups, and their checks for leftovers apart.
    pub fn pod_cgroup(&self, name: &str) -> String {
        format!("hull-test/pod-{name}-{}", self.tag)
    }

    /// A pod configuration as the kubelet writes one: hostname = `name`, a log directory, DNS,
    /// a cgroup parent ([`Cri::pod_cgroup`]), the pod's network and IPC namespaces.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("uid-{name}"),
                namespace: "hull-test".into(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: self.log_root().join(name).display().to_string(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.88.0.53".into()],
                searches: vec!["hull-test.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", self.pod_cgroup(name)),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A busybox container `name` (attempt `attempt`) running `command`, logging to
    /// `<name>/<attempt>.log` in the pod's log directory.
    pub fn container_config(name: &str, attempt: u32, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_owned(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}/{attempt}.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources::default()),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// `RunPodSandbox` with `handler`; the sandbox id.
    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> Result<String, Status> {
        std::fs::create_dir_all(&config.log_directory).expect("pod log dir");
        if let (Some(crio), Some(linux)) = (&self.crio, &config.linux) {
            crio.note_cgroup_parent(&linux.cgroup_parent);
        }
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        Ok(self
            .block_on(self.runtime().run_pod_sandbox(req))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// `CreateContainer` + `StartContainer`; the container id. Panics when either fails.
    pub fn run_container(
        &self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let id = self
            .create_container(pod, pod_config, config)
            .unwrap_or_else(|e| panic!("CreateContainer {name:?}: {e}\n{}", self.log_tail()));
        self.start_container(&id)
            .unwrap_or_else(|e| panic!("StartContainer {name:?}: {e}\n{}", self.log_tail()));
        id
    }

    /// `CreateContainer`; the container id.
    pub fn create_container(
        &self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, Status> {
        // The container's log directory, as the kubelet makes it (containerd makes it too; CRI-O
        // does not).
        if let Some(dir) = Path::new(&pod_config.log_directory)
            .join(&config.log_path)
            .parent()
        {
            std::fs::create_dir_all(dir).expect("container log dir");
        }
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .block_on(self.runtime().create_container(req))?
            .into_inner()
            .container_id)
    }

    /// `StartContainer`.
    pub fn start_container(&self, id: &str) -> Result<(), Status> {
        let req = StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.block_on(self.runtime().start_container(req))?;
        Ok(())
    }

    /// Starts container `polite` in `pod`: a PID 1 that exits with 7 on SIGTERM, returned once
    /// its trap is set (before that, a PID 1 without a handler ignores SIGTERM).
    pub fn run_sigterm_trapper(&self, pod: &str, pod_config: &PodSandboxConfig) -> String {
        let polite = Self::container_config(
            "polite",
            0,
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; touch /tmp/trapped; while :; do sleep 1; done",
            ],
        );
        let id = self.run_container(pod, pod_config, polite);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .exec_sync(&id, &["test", "-e", "/tmp/trapped"], 10)
            .is_ok_and(|r| r.exit_code == 0)
        {
            assert!(
                Instant::now() < deadline,
                "the polite container never set its trap"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        id
    }

    /// `ExecSync` of `cmd` in container `id` with a timeout in seconds (0: none).
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<ExecSyncResponse, Status> {
        let req = ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout,
        };
        Ok(self.block_on(self.runtime().exec_sync(req))?.into_inner())
    }

    /// `ExecSync` that must exit 0; its stdout. Panics otherwise.
    pub fn exec_out(&self, id: &str, cmd: &[&str]) -> String {
        let r = self
            .exec_sync(id, cmd, 60)
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}\n{}", self.log_tail()));
        assert_eq!(
            r.exit_code,
            0,
            "ExecSync {cmd:?}: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    /// `Exec`: the streaming URL for `cmd` in container `id` (stdout and stderr, stdin if asked).
    pub fn exec_url(&self, id: &str, cmd: &[&str], stdin: bool) -> Result<String, Status> {
        let req = k8s_cri::v1::ExecRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: true,
        };
        Ok(self.block_on(self.runtime().exec(req))?.into_inner().url)
    }

    /// `Attach`: the streaming URL for container `id`'s stdio (stdin if asked).
    pub fn attach_url(&self, id: &str, stdin: bool) -> Result<String, Status> {
        let req = k8s_cri::v1::AttachRequest {
            container_id: id.to_owned(),
            stdin,
            tty: false,
            stdout: true,
            stderr: true,
        };
        Ok(self.block_on(self.runtime().attach(req))?.into_inner().url)
    }

    /// `PortForward`: the streaming URL for pod `pod`'s `port` (the WebSocket client adds
    /// `?port=<port>`).
    pub fn port_forward_url(&self, pod: &str, port: i32) -> Result<String, Status> {
        let req = k8s_cri::v1::PortForwardRequest {
            pod_sandbox_id: pod.to_owned(),
            port: vec![port],
        };
        Ok(self
            .block_on(self.runtime().port_forward(req))?
            .into_inner()
            .url)
    }

    /// Opens a streaming session on `url` (from [`Cri::exec_url`] or [`Cri::attach_url`]).
    pub fn stream(&self, url: &str) -> crate::cri_stream::Session {
        crate::cri_stream::Session::open(self.netns(), url)
            .unwrap_or_else(|e| panic!("streaming {url}: {e}\n{}", self.log_tail()))
    }

    /// `ContainerStatus`.
    pub fn container_status(&self, id: &str) -> Result<ContainerStatus, Status> {
        let req = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let r = self
            .block_on(self.runtime().container_status(req))?
            .into_inner();
        r.status
            .ok_or_else(|| Status::not_found(format!("no status for {id}")))
    }

    /// Waits until container `id` is in `state`; its status. Panics after `within`.
    pub fn wait_container(
        &self,
        id: &str,
        state: ContainerState,
        within: Duration,
    ) -> ContainerStatus {
        let deadline = Instant::now() + within;
        loop {
            let status = self
                .container_status(id)
                .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
            if status.state == i32::from(state) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} is {:?}, not {state:?}, after {within:?}\n{}",
                ContainerState::try_from(status.state),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `StopContainer` with a grace period of `timeout` seconds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let req = StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        };
        self.block_on(self.runtime().stop_container(req))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub fn remove_container(&self, id: &str) -> Result<(), Status> {
        let req = RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.block_on(self.runtime().remove_container(req))?;
        Ok(())
    }

    /// `PodSandboxStatus` (verbose: with containerd's info map).
    pub fn pod_status(&self, id: &str) -> Result<PodSandboxStatusResponse, Status> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        Ok(self
            .block_on(self.runtime().pod_sandbox_status(req))?
            .into_inner())
    }

    /// The pod's IP address (from `PodSandboxStatus`).
    pub fn pod_ip(&self, id: &str) -> Option<String> {
        let status = self.pod_status(id).ok()?.status?;
        Some(status.network?.ip).filter(|ip| !ip.is_empty())
    }

    /// containerd's `info` of the pod (verbose `PodSandboxStatus`), parsed.
    pub fn pod_info(&self, id: &str) -> Option<serde_json::Value> {
        let info: HashMap<String, String> = self.pod_status(id).ok()?.info;
        serde_json::from_str(info.get("info")?).ok()
    }

    /// The host network namespace file CRI made for the pod.
    pub fn pod_netns_path(&self, id: &str) -> Option<PathBuf> {
        let info = self.pod_info(id)?;
        let namespaces = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()?
            .clone();
        namespaces.iter().find(|ns| ns["type"] == "network")?["path"]
            .as_str()
            .map(PathBuf::from)
    }

    /// `StopPodSandbox` + `RemovePodSandbox`.
    pub fn remove_pod(&self, id: &str) -> Result<(), Status> {
        self.block_on(self.runtime().stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }))?;
        self.block_on(self.runtime().remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        }))?;
        Ok(())
    }

    /// The ids of every pod CRI knows.
    pub fn pods(&self) -> Vec<String> {
        self.block_on(
            self.runtime()
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .map(|r| r.into_inner().items.into_iter().map(|p| p.id).collect())
        .unwrap_or_default()
    }

    /// The last lines of the engine's log (shims log there too).
    pub fn log_tail(&self) -> String {
        match &self.crio {
            Some(crio) => format!(
                "--- CRI-O log (tail) ---\n{}",
                crate::containerd::tail(&crio.log(), 60)
            ),
            None => format!(
                "--- containerd log (tail) ---\n{}",
                crate::containerd::tail(&self.containerd().log(), 60)
            ),
        }
    }

    /// What pod `id` left on the host: its processes, mounts, run directory and shim socket
    /// ([`Containerd::leftovers`]), and its network namespace file `netns` if given.
    pub fn leftovers(&self, id: &str, netns: Option<&Path>) -> Vec<String> {
        let mut left = self.containerd().leftovers(id);
        if let Some(netns) = netns.filter(|p| p.exists()) {
            left.push(format!("network namespace {}", netns.display()));
        }
        left
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        for pod in self.pods() {
            if let Err(e) = self.remove_pod(&pod) {
                eprintln!("cleaning up pod {pod}: {e}");
            }
        }
        drop(self.containerd.take());
        drop(self.crio.take());
    }
}

/// A runtime and a CRI channel to the engine listening on `socket`.
fn connect(socket: PathBuf) -> (tokio::runtime::Runtime, Channel) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let channel = rt
        .block_on(async move {
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(socket).await?,
                        ))
                    }
                }))
                .await
        })
        .expect("connect to the engine's CRI");
    (rt, channel)
}
