//! The comparison's JSON: every sample, the environment, and what could not be measured and why.
//! `hull bench report results.json` re-renders the report from this alone, so everything the
//! report shows is here. Changing a field means a new [`SCHEMA`].

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// The schema name written into every results file.
pub const SCHEMA: &str = "hull-bench/compare/v4";

/// One run of `hull bench`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: String,
    /// `--quick` (smaller sample counts and sizes).
    pub quick: bool,
    /// What the figures were measured on.
    pub env: Environment,
    /// Runtimes, backends and accelerators that could not be measured, and why.
    pub unavailable: Vec<Unavailable>,
    /// `ctr run --rm busybox true`, per runtime, interleaved.
    pub start: Vec<Latency>,
    /// Where hull's start latency goes: runs with the shim's per-call log.
    pub start_breakdown: Vec<StartBreakdown>,
    /// VMM start → agent answers, split.
    pub boot: Option<BootSplit>,
    /// One idle container per runtime: every process's memory.
    pub memory: Vec<PodMemory>,
    /// 1, 2, 4 … N idle containers per runtime.
    pub density: Vec<Density>,
    /// The RuntimeClass overhead measured per hull backend (absent from results written before
    /// it existed: an added field, so the schema is unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overhead: Vec<hull_runtime::overhead::BackendOverhead>,
    /// CPU workloads inside each runtime and on the host.
    pub cpu: Vec<CpuFigure>,
    /// stdout throughput through each runtime's shim, per write size.
    pub stdio: Vec<Stdio>,
    /// virtio-fs against the host directory.
    pub fs: Option<FsFigures>,
    /// vsock and the agent's RPC.
    pub agent: Option<AgentFigures>,
    /// `podman`/`docker run --rm busybox true` with hull and with runc (absent from results
    /// written before it existed, or when the step did not run: the schema is unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engines: Option<crate::engines::EngineResults>,
    /// Steps that failed, with their error (the rest still ran).
    pub errors: Vec<String>,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
}

/// The host, the tools and the guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Start of the run (UTC, RFC 3339).
    pub date: String,
    /// The command line.
    pub command: String,
    /// CPU model.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Host memory, MiB.
    pub memory_mib: u64,
    /// Host kernel (`uname -r`).
    pub host_kernel: String,
    /// What `/dev/kvm` is (`pvm (kvm_pvm)`, `hardware (kvm_intel)`, `none`).
    pub kvm: String,
    /// The accelerator hull's QEMU backend uses here.
    pub accel: String,
    /// Why.
    pub accel_reason: String,
    /// containerd's version.
    pub containerd: String,
    /// runc's version.
    pub runc: String,
    /// crun's version, or why there is none.
    pub crun: String,
    /// hull's version (crate version and git commit when known).
    pub hull: String,
    /// QEMU's version.
    pub qemu: String,
    /// virtiofsd's version.
    pub virtiofsd: String,
    /// The guest kernel (`uname -r` in a hull container).
    pub guest_kernel: String,
    /// Guest vCPUs per pod.
    pub guest_vcpus: u32,
    /// Guest RAM per pod, MiB.
    pub guest_memory_mib: u32,
    /// `MemTotal` seen inside the guest, KiB (0 if not read).
    pub guest_mem_total_kib: u64,
    /// Load average (1, 5, 15 min) when the run started.
    pub load_before: [f64; 3],
    /// Load average when it ended.
    pub load_after: [f64; 3],
}

/// Something not measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unavailable {
    /// `crun`, `hull/hull-vmm`, `hull/qemu-kvm`, …
    pub what: String,
    /// Why, in words a user can act on.
    pub reason: String,
}

/// Latency samples of one runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// `hull/qemu-tcg`, `runc`, …
    pub runtime: String,
    /// Every sample, ms, in run order.
    pub samples_ms: Vec<f64>,
    /// Their summary.
    pub summary: Summary,
}

/// One shim Task call of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimCall {
    /// `create`, `start`, `wait`, `delete`, `shutdown`, …
    pub call: String,
    /// How long the shim took to answer it, ms.
    pub ms: f64,
}

/// One `ctr run --rm … true` with its shim calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakdownRun {
    /// The whole `ctr run`, ms.
    pub total_ms: f64,
    /// The calls, in log order.
    pub calls: Vec<ShimCall>,
}

/// The breakdown runs of one hull backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBreakdown {
    /// Runtime.
    pub runtime: String,
    /// The runs.
    pub runs: Vec<BreakdownRun>,
}

/// One boot of a pod VM (vsock + virtio-fs attached, as the shim boots it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootRun {
    /// Booted with `loglevel=7 printk.time=1` (kernel messages on the console, timestamped).
    pub verbose: bool,
    /// vsock backend + virtiofsd + VMM spawn → agent answered `Check`, ms.
    pub total_ms: f64,
    /// Spawn → the guest kernel's clock starts (VMM set-up, firmware, decompression), ms.
    pub vmm_ms: Option<f64>,
    /// Kernel clock start → `Run /init` (the kernel's own timestamp), ms.
    pub kernel_ms: Option<f64>,
    /// `Run /init` → the agent's "serving" line (user space: agent start, mounts, listeners), ms.
    pub userspace_ms: Option<f64>,
    /// "serving" line → first `Check` answered over vsock, ms.
    pub connect_ms: Option<f64>,
    /// Timestamped boots: the largest gaps between consecutive kernel lines up to `Run /init`
    /// (where the kernel's time goes), largest first.
    pub kernel_gaps: Vec<KernelGap>,
}

/// A stretch of kernel boot with no console output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelGap {
    /// Its length, ms.
    pub ms: f64,
    /// The line printed at its end (what finished), without the timestamp.
    pub line: String,
}

/// The boot figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSplit {
    /// Backend (`qemu-tcg`, …).
    pub backend: String,
    /// Every boot.
    pub runs: Vec<BootRun>,
}

/// One process's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcMemory {
    /// `shim`, `vmm`, `jailer`, `virtiofsd`, `vsock`, `container`, `other`.
    pub role: String,
    /// Executable name.
    pub comm: String,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Proportional set, KiB.
    pub pss_kib: u64,
    /// The part of the PSS that is guest RAM (the shared memfd every vhost-user process maps), KiB.
    pub guest_ram_pss_kib: u64,
    /// The VMM's largest mappings by PSS, guest RAM left out (empty for other roles).
    pub top_mappings: Vec<Mapping>,
}

/// One mapping of a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Its path, or `[anon]`/`[heap]`/…, with permissions and size: `[anon] rwxp 1048576 KiB`.
    pub what: String,
    /// PSS, KiB.
    pub pss_kib: u64,
}

/// One idle container's processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodMemory {
    /// Runtime.
    pub runtime: String,
    /// Every process of it.
    pub processes: Vec<ProcMemory>,
}

/// One step of a density series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DensityStep {
    /// Containers running.
    pub pods: usize,
    /// PSS of all their processes / pods, KiB.
    pub pss_per_pod_kib: u64,
    /// 1-minute load average at this step.
    pub load1: f64,
    /// The host's `MemAvailable` at this step, KiB.
    pub mem_available_kib: u64,
}

/// Containers started one after another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Density {
    /// Runtime.
    pub runtime: String,
    /// `ctr run -d` of the k-th container, ms (k = index + 1).
    pub start_ms: Vec<f64>,
    /// Memory at 1, 10, 20 … N.
    pub steps: Vec<DensityStep>,
    /// The host's `MemAvailable` before the first container started, KiB.
    pub mem_available_before_kib: u64,
    /// The host's `MemAvailable` once every container was removed again, KiB.
    pub mem_available_after_kib: u64,
}

/// One CPU workload in one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuFigure {
    /// `getppid`, `compute`, `spawn`.
    pub workload: String,
    /// `host` or a runtime.
    pub runtime: String,
    /// Operations per sample.
    pub ops: u64,
    /// ns per operation, one per repetition, timed by the probe with the clock of where it ran
    /// (the guest's own clock in a VM).
    pub ns_per_op: Vec<f64>,
    /// Host wall time of each repetition's whole `ctr task exec` (or process), seconds: a check
    /// on the guest clock, exec overhead included.
    pub wall_s: Vec<f64>,
}

/// stdout throughput of one runtime with one write size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stdio {
    /// Runtime.
    pub runtime: String,
    /// Bytes of each `write` the process makes (`dd bs=`).
    pub write_bytes: u64,
    /// Bytes moved per sample.
    pub bytes: u64,
    /// `ctr task exec` of a process writing nothing, seconds (subtracted).
    pub empty_s: Vec<f64>,
    /// The same process writing `bytes` to stdout, seconds.
    pub full_s: Vec<f64>,
}

/// One file workload, seconds (the fs suite's five steps).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsWorkload {
    /// Sequential write with fsync.
    pub seq_write_s: f64,
    /// Sequential read.
    pub seq_read_s: f64,
    /// Create the small files.
    pub create_s: f64,
    /// Stat them.
    pub stat_s: f64,
    /// Unlink them.
    pub unlink_s: f64,
}

/// virtio-fs (the shim's default cache mode) against the host directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsFigures {
    /// Backend of the guest.
    pub backend: String,
    /// virtiofsd cache mode.
    pub cache: String,
    /// MiB of the sequential file.
    pub file_mib: usize,
    /// Small files.
    pub files: usize,
    /// On the host directory.
    pub host: FsWorkload,
    /// In the guest over virtio-fs.
    pub guest: FsWorkload,
}

/// One vsock throughput figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockThroughput {
    /// `host_to_guest` or `guest_to_host`.
    pub direction: String,
    /// Concurrent streams.
    pub streams: usize,
    /// MiB/s in all.
    pub mib_per_s: f64,
}

/// The agent suite's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFigures {
    /// Backend.
    pub backend: String,
    /// `Check` round trips, µs, every sample.
    pub rpc_us: Vec<f64>,
    /// create + start + wait of `/bin/true` in the running VM, ms, every sample.
    pub container_true_ms: Vec<f64>,
    /// vsock throughput through stdio streams.
    pub throughput: Vec<VsockThroughput>,
}
