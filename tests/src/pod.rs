//! A pod VM for tests: the test initramfs booted through the backend `HULL_TEST_HYPERVISOR` names
//! (QEMU by default, see [`crate::hypervisor`]) with vsock, an agent
//! client, and helpers to run containers and collect their output. Dropping it stops everything.

use std::path::Path;
use std::time::Duration;

use hull_protocol::stdio::Channel;
use hull_runtime::agent::client::StdioConfig;
use hull_runtime::agent::stdio::{attach, InputWriter};
use hull_runtime::agent::{AgentClient, ExitInfo};
use hull_runtime::images::GuestImages;
use hull_runtime::sandbox::{SandboxVm, SandboxVmConfig};
use hull_runtime::share::CacheMode;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::rootfs::{test_initramfs, GUEST_ROOTFS};
use crate::spec;

/// The longest a test's container or exec may run before the test fails as stuck: generous for
/// double emulation (the nested-KVM tier), short of the tier's per-group limit.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(240);

/// A booted test pod.
#[derive(Debug)]
pub struct TestPod {
    /// The VM with its agent.
    pub vm: SandboxVm,
    _run_dir: tempfile::TempDir,
}

/// What a finished process left.
#[derive(Debug)]
pub struct Finished {
    /// Its exit.
    pub exit: ExitInfo,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// stderr as text.
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Stdio config with stdout and stderr (and stdin when asked).
pub fn pipes(stdin: bool) -> StdioConfig {
    StdioConfig {
        stdin,
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

impl TestPod {
    /// Boots a pod with `vcpus` and `memory_mib`; `None` (after the skip-or-fail rule) when the
    /// host cannot run one.
    pub async fn boot(vcpus: u32, memory_mib: u32) -> Option<Self> {
        Self::boot_with(vcpus, memory_mib, None).await
    }

    /// Like [`TestPod::boot`], with a virtio-fs share in the given cache mode.
    pub async fn boot_shared(vcpus: u32, memory_mib: u32, cache: CacheMode) -> Option<Self> {
        Self::boot_with(vcpus, memory_mib, Some(cache)).await
    }

    /// Like [`TestPod::boot`], taking over the interface in the network namespace `netns`.
    pub async fn boot_in_netns(vcpus: u32, memory_mib: u32, netns: &Path) -> Option<Self> {
        Self::boot_full(vcpus, memory_mib, None, Some(netns.to_owned())).await
    }

    async fn boot_with(vcpus: u32, memory_mib: u32, share: Option<CacheMode>) -> Option<Self> {
        Self::boot_full(vcpus, memory_mib, share, None).await
    }

    async fn boot_full(
        vcpus: u32,
        memory_mib: u32,
        share: Option<CacheMode>,
        netns: Option<std::path::PathBuf>,
    ) -> Option<Self> {
        let images = crate::guest_images()?;
        let hypervisor = crate::hypervisor()?;
        let initramfs = test_initramfs().unwrap_or_else(|e| panic!("test initramfs: {e}"));
        let run_dir = tempfile::tempdir().expect("run dir");
        let config = SandboxVmConfig {
            images: GuestImages {
                kernel: images.kernel,
                initramfs,
            },
            vcpus,
            memory_mib,
            run_dir: run_dir.path().to_owned(),
            cmdline: vec![],
            boot_timeout: Duration::from_secs(60),
            share,
            netns,
            confine_host: false,
            template_root: None,
        };
        let vm = match SandboxVm::start(hypervisor.as_ref(), &config).await {
            Ok(vm) => vm,
            Err(e) => {
                let read = |name: &str| {
                    std::fs::read_to_string(run_dir.path().join(name)).unwrap_or_default()
                };
                panic!(
                    "pod did not boot: {e:?}\n--- console ---\n{}\n--- VMM log ---\n{}",
                    read("console.log"),
                    read("vmm.log")
                );
            }
        };
        Some(Self {
            vm,
            _run_dir: run_dir,
        })
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        self._run_dir.path()
    }

    /// The agent.
    pub fn agent(&self) -> &AgentClient {
        self.vm.agent()
    }

    /// Opens one stdio stream.
    pub async fn attach(&self, cid: &str, eid: &str, channel: Channel) -> UnixStream {
        attach(self.vm.vsock_uds(), cid, eid, channel)
            .await
            .unwrap_or_else(|e| panic!("attach {channel}: {e:?}"))
    }

    /// Creates container `cid` from `spec` on the busybox rootfs with stdout/stderr attached,
    /// starts it, and returns its output and exit once it exits.
    pub async fn run(&self, cid: &str, spec: &serde_json::Value) -> Finished {
        self.run_on(cid, spec, GUEST_ROOTFS).await
    }

    /// [`TestPod::run`] with the root filesystem at guest path `rootfs`.
    pub async fn run_on(&self, cid: &str, spec: &serde_json::Value, rootfs: &str) -> Finished {
        self.bounded(cid, async {
            self.agent()
                .create_container(cid, spec::to_bytes(spec), rootfs, pipes(false))
                .await
                .unwrap_or_else(|e| panic!("create {cid}: {e:?}"));
            let (out, err) = (
                self.output(cid, "", Channel::Stdout),
                self.output(cid, "", Channel::Stderr),
            );
            self.agent()
                .start_container(cid)
                .await
                .unwrap_or_else(|e| panic!("start {cid}: {e:?}"));
            let exit = self.agent().wait_process(cid, "").await.expect("wait");
            Finished {
                exit,
                stdout: out.await.expect("stdout task"),
                stderr: err.await.expect("stderr task"),
            }
        })
        .await
    }

    /// Runs `work` (a container's or exec's whole life) to its end, or panics with the guest's
    /// console and the VMM's log once it has taken [`PROCESS_LIMIT`]: a stuck guest fails the
    /// test with what it printed instead of hanging the run.
    async fn bounded<T>(&self, what: &str, work: impl std::future::Future<Output = T>) -> T {
        match tokio::time::timeout(PROCESS_LIMIT, work).await {
            Ok(done) => done,
            Err(_) => {
                let read = |name: &str| {
                    std::fs::read_to_string(self.run_dir().join(name)).unwrap_or_default()
                };
                panic!(
                    "{what} did not finish within {PROCESS_LIMIT:?}\n--- console ---\n{}\n--- VMM log ---\n{}",
                    read("console.log"),
                    read("vmm.log")
                )
            }
        }
    }

    /// Attaches `cid`/`eid`'s output `channel` and reads it to its end, in a task.
    fn output(&self, cid: &str, eid: &str, channel: Channel) -> tokio::task::JoinHandle<Vec<u8>> {
        let (uds, cid, eid) = (
            self.vm.vsock_uds().to_owned(),
            cid.to_owned(),
            eid.to_owned(),
        );
        tokio::spawn(async move {
            let mut stream = attach(&uds, &cid, &eid, channel)
                .await
                .unwrap_or_else(|e| panic!("attach {channel}: {e:?}"));
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await.expect("read output");
            buf
        })
    }

    /// Execs `process` in running container `cid` with stdout/stderr, and waits for it.
    pub async fn exec(&self, cid: &str, eid: &str, process: &serde_json::Value) -> Finished {
        self.bounded(eid, async {
            self.agent()
                .exec_process(cid, eid, serde_json::to_vec(process).unwrap(), pipes(false))
                .await
                .unwrap_or_else(|e| panic!("exec {eid}: {e:?}"));
            let (out, err) = (
                self.output(cid, eid, Channel::Stdout),
                self.output(cid, eid, Channel::Stderr),
            );
            let exit = self
                .agent()
                .wait_process(cid, eid)
                .await
                .expect("wait exec");
            Finished {
                exit,
                stdout: out.await.expect("stdout task"),
                stderr: err.await.expect("stderr task"),
            }
        })
        .await
    }

    /// An input writer on `cid`/`eid`'s stdin stream.
    pub async fn stdin(&self, cid: &str, eid: &str) -> InputWriter<UnixStream> {
        InputWriter::new(self.attach(cid, eid, Channel::Stdin).await)
    }
}

/// `name` on `PATH`, if there.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
