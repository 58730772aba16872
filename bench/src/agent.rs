//! The agent suite: what the host⇄guest path costs inside a running pod VM.
//! - vsock throughput through stdio streams, host → guest (`dd of=/dev/null`) and guest → host
//!   (`dd if=/dev/zero`), 64 KiB blocks, with one stream and with eight at once;
//! - agent RPC round trip (`Check`), p50/p99;
//! - container create + start + wait of `/bin/true` inside the running VM.
//!
//! Containers run from the busybox tree the test initramfs carries (virtio-fs comes later).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_protocol::stdio::Channel;
use hull_runtime::agent::client::StdioConfig;
use hull_runtime::agent::stdio::{attach, InputWriter};
use hull_runtime::agent::AgentClient;
use hull_runtime::images::GuestImages;
use hull_runtime::sandbox::{SandboxVm, SandboxVmConfig};
use hull_runtime::vm::{accel, qemu::Qemu, Hypervisor};
use hull_tests::rootfs::{test_initramfs, GUEST_ROOTFS};
use hull_tests::spec::{process, spec, to_bytes};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::host::HostInfo;
use crate::stats::Summary;

/// Options of the suite.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// RPC round trips measured.
    pub rpcs: usize,
    /// Container runs measured.
    pub runs: usize,
    /// MiB per throughput stream.
    pub stream_mib: usize,
}

/// One throughput figure.
#[derive(Debug, Serialize)]
pub struct Throughput {
    /// `host_to_guest` or `guest_to_host`.
    pub direction: &'static str,
    /// Concurrent streams.
    pub streams: usize,
    /// MiB per stream.
    pub mib_per_stream: usize,
    /// Seconds for all of it.
    pub seconds: f64,
    /// Total MiB/s.
    pub mib_per_s: f64,
}

/// The suite's output.
#[derive(Debug, Serialize)]
pub struct AgentResults {
    /// The suite.
    pub suite: &'static str,
    /// The host.
    pub host: HostInfo,
    /// The backend (and accelerator) that produced every figure.
    pub backend: String,
    /// Why this accelerator.
    pub accel_reason: String,
    /// VMM spawn → agent answered, ms.
    pub boot_to_agent_ms: f64,
    /// Throughput figures.
    pub throughput: Vec<Throughput>,
    /// `Check` round trip, µs.
    pub rpc_round_trip_us: Summary,
    /// create + start + wait of `/bin/true`, ms.
    pub container_true_ms: Summary,
    /// Every `Check` round trip, µs.
    pub rpc_samples_us: Vec<f64>,
    /// Every container run, ms.
    pub container_true_samples_ms: Vec<f64>,
}

async fn new_container(
    agent: &AgentClient,
    id: &str,
    args: &[&str],
    stdio: StdioConfig,
) -> anyhow::Result<()> {
    agent
        .create_container(id, to_bytes(&spec(args)), GUEST_ROOTFS, stdio)
        .await?;
    agent.start_container(id).await?;
    Ok(())
}

async fn exec(
    agent: &AgentClient,
    id: &str,
    eid: &str,
    args: &[&str],
    stdio: StdioConfig,
) -> anyhow::Result<()> {
    agent
        .exec_process(id, eid, serde_json::to_vec(&process(args))?, stdio)
        .await?;
    Ok(())
}

/// `streams` processes each moving `mib` MiB in `direction`; returns seconds.
async fn throughput(
    vm: &SandboxVm,
    round: usize,
    to_guest: bool,
    streams: usize,
    mib: usize,
) -> anyhow::Result<f64> {
    let agent = vm.agent();
    let uds = Arc::new(vm.vsock_uds().to_owned());
    let bytes = mib << 20;
    // dd with 64 KiB blocks: busybox's `head -c` moves data in small pieces and is itself the
    // bottleneck under TCG (25 MiB/s without any vsock).
    let count = format!("count={}", mib * 16);
    let args: Vec<&str> = if to_guest {
        vec!["dd", "of=/dev/null", "bs=65536"]
    } else {
        vec!["dd", "if=/dev/zero", "bs=65536", &count]
    };
    let stdio = StdioConfig {
        stdin: to_guest,
        stdout: !to_guest,
        ..Default::default()
    };
    let mut eids = Vec::new();
    for i in 0..streams {
        let eid = format!("tp{round}-{i}");
        exec(agent, "bench", &eid, &args, stdio.clone()).await?;
        eids.push(eid);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for eid in &eids {
        let (uds, eid) = (uds.clone(), eid.clone());
        tasks.push(tokio::spawn(async move {
            if to_guest {
                let stream = attach(&uds, "bench", &eid, Channel::Stdin).await?;
                let mut input = InputWriter::new(stream);
                let chunk = vec![0x5au8; 1 << 20];
                for _ in 0..mib {
                    input.write(&chunk).await?;
                }
                drop(input.close().await?);
            } else {
                let mut stream = attach(&uds, "bench", &eid, Channel::Stdout).await?;
                let mut got = 0usize;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                anyhow::ensure!(got == bytes, "{eid}: {got} bytes, expected {bytes}");
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    for eid in &eids {
        let exit = agent.wait_process("bench", eid).await?;
        anyhow::ensure!(
            exit.exit_status == 0,
            "{eid} exited with {}",
            exit.exit_status
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs the suite and writes `agent.json` and `agent.md` into `out`.
pub async fn run(options: &AgentOptions, out: &Path) -> anyhow::Result<AgentResults> {
    let results = measure(options).await?;
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("agent.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    std::fs::write(out.join("agent.md"), report(&results))?;
    Ok(results)
}

/// Runs the suite.
pub async fn measure(options: &AgentOptions) -> anyhow::Result<AgentResults> {
    let choice = accel::detect()?;
    let qemu = Qemu::for_host(choice.accel);
    let images = GuestImages::from_env();
    let initramfs = test_initramfs().map_err(anyhow::Error::msg)?;
    let run_dir = tempfile::tempdir()?;
    let config = SandboxVmConfig {
        images: GuestImages {
            kernel: images.kernel,
            initramfs,
        },
        vcpus: 1,
        memory_mib: 512,
        run_dir: run_dir.path().to_owned(),
        cmdline: vec![],
        boot_timeout: Duration::from_secs(120),
        share: None,
        netns: None,
        confine_host: false,
        template_root: None,
    };
    let vm = SandboxVm::start(&qemu, &config)
        .await
        .context("the pod VM did not start")?;
    let agent = vm.agent();
    new_container(agent, "bench", &["sleep", "100000"], StdioConfig::default()).await?;

    let mut figures = Vec::new();
    let mut round = 0;
    for to_guest in [true, false] {
        for streams in [1usize, 8] {
            round += 1;
            let mib = if streams == 1 {
                options.stream_mib
            } else {
                options.stream_mib / 4
            }
            .max(1);
            let seconds = throughput(&vm, round, to_guest, streams, mib).await?;
            let total = (mib * streams) as f64;
            let direction = if to_guest {
                "host_to_guest"
            } else {
                "guest_to_host"
            };
            eprintln!(
                "hull-bench: {direction} x{streams}: {:.1} MiB/s",
                total / seconds
            );
            figures.push(Throughput {
                direction,
                streams,
                mib_per_stream: mib,
                seconds,
                mib_per_s: total / seconds,
            });
        }
    }

    let mut rpc = Vec::with_capacity(options.rpcs);
    for _ in 0..options.rpcs {
        let t = Instant::now();
        agent.check().await?;
        rpc.push(t.elapsed().as_secs_f64() * 1e6);
    }

    let mut runs = Vec::with_capacity(options.runs);
    for i in 0..options.runs {
        let id = format!("true{i}");
        let t = Instant::now();
        new_container(agent, &id, &["/bin/true"], StdioConfig::default()).await?;
        let exit = agent.wait_process(&id, "").await?;
        runs.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            exit.exit_status == 0,
            "/bin/true exited with {}",
            exit.exit_status
        );
        agent.remove_container(&id).await?;
    }

    let results = AgentResults {
        suite: "agent",
        host: HostInfo::read(hull_runtime::vm::qemu::DEFAULT_BINARY),
        backend: qemu.name(),
        accel_reason: choice.reason,
        boot_to_agent_ms: vm.boot_time().as_secs_f64() * 1e3,
        throughput: figures,
        rpc_round_trip_us: Summary::of(&rpc).context("no RPC samples")?,
        container_true_ms: Summary::of(&runs).context("no container samples")?,
        rpc_samples_us: rpc,
        container_true_samples_ms: runs,
    };
    vm.shutdown(Duration::from_secs(5)).await?;
    Ok(results)
}

/// The readable report.
pub fn report(r: &AgentResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# hull agent benchmark\n");
    let _ = writeln!(
        s,
        "Host: {} ({} CPUs), {}; backend {} ({}). Boot → agent answered: {:.0} ms.\n",
        r.host.cpu_model, r.host.cpus, r.host.date, r.backend, r.accel_reason, r.boot_to_agent_ms
    );
    let _ = writeln!(
        s,
        "| vsock via stdio streams | streams | MiB each | MiB/s |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for t in &r.throughput {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} |",
            t.direction, t.streams, t.mib_per_stream, t.mib_per_s
        );
    }
    let rpc = &r.rpc_round_trip_us;
    let _ = writeln!(
        s,
        "\nAgent RPC round trip (`Check`, n={}): p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs.\n",
        rpc.n, rpc.median, rpc.p95, rpc.p99
    );
    let c = &r.container_true_ms;
    let _ = writeln!(
        s,
        "Container create + start + wait of `/bin/true` in the running VM (n={}): median {:.1} ms, p95 {:.1} ms.",
        c.n, c.median, c.p95
    );
    s
}
