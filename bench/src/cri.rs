//! `hull-bench cri`: hull against runc through containerd's CRI plugin, in one run, the way the
//! kubelet drives a node — pod start (RunPodSandbox → CreateContainer → StartContainer → the
//! container reported running) median/p95, and host memory per idle pod (pause + one `sleep`
//! container) with 1 and with N pods running, and pod ⇄ host TCP throughput with iperf3
//! (`crate::iperf`). The private containerd runs in a network namespace
//! of its own with a CNI bridge (`hull_tests::cri`); hull boots the production initramfs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hull_runtime::images::GuestImages;
use hull_tests::containerd::Options;
use hull_tests::cri::{Cri, HANDLER, RUNC_HANDLER};
use k8s_cri::v1::ContainerState;
use serde::Serialize;

use crate::compare::procs;
use crate::iperf::{self, Throughput};
use crate::stats::Summary;

/// What to measure.
#[derive(Debug, Clone)]
pub struct CriOptions {
    /// Pod starts per runtime.
    pub runs: usize,
    /// Idle pods in the second memory reading.
    pub pods: usize,
    /// Guest RAM of a hull pod, MiB.
    pub guest_memory_mib: u32,
    /// Seconds of iperf3 each way per runtime (0: no throughput figures).
    pub iperf_secs: u32,
}

/// One runtime's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CriRuntime {
    /// The CRI handler.
    pub handler: String,
    /// RunPodSandbox → first container running, ms.
    pub pod_start_ms: Option<Summary>,
    /// Host PSS per idle pod with one pod running, MiB.
    pub pss_per_pod_1_mib: f64,
    /// Host PSS per idle pod with `pods` pods running, MiB.
    pub pss_per_pod_n_mib: f64,
    /// RSS per pod with `pods` running, MiB (guest RAM touched counts once per VM in PSS, fully
    /// here).
    pub rss_per_pod_n_mib: f64,
    /// Pod ⇄ host TCP throughput (iperf3), when measured.
    pub throughput: Option<Throughput>,
}

/// The suite's results.
#[derive(Debug, Clone, Serialize)]
pub struct CriResults {
    /// Pod starts per runtime.
    pub runs: usize,
    /// Idle pods in the second memory reading.
    pub pods: usize,
    /// Guest RAM of a hull pod, MiB.
    pub guest_memory_mib: u32,
    /// How hull's VMs ran.
    pub accel: String,
    /// Seconds of iperf3 each way per runtime.
    pub iperf_secs: u32,
    /// Per runtime.
    pub runtimes: Vec<CriRuntime>,
    /// hull's throughput over runc's (pod → host, host → pod), when both were measured.
    pub throughput_ratio: Option<ThroughputRatio>,
}

/// hull / runc throughput.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRatio {
    /// Pod → host.
    pub pod_to_host: f64,
    /// Host → pod.
    pub host_to_pod: f64,
}

fn throughput_ratio(runtimes: &[CriRuntime]) -> Option<ThroughputRatio> {
    let of = |handler: &str| {
        runtimes
            .iter()
            .find(|r| r.handler == handler)?
            .throughput
            .clone()
    };
    let (hull, runc) = (of(HANDLER)?, of(RUNC_HANDLER)?);
    Some(ThroughputRatio {
        pod_to_host: hull.pod_to_host_gbit_s / runc.pod_to_host_gbit_s,
        host_to_pod: hull.host_to_pod_gbit_s / runc.host_to_pod_gbit_s,
    })
}

const SLEEP: &[&str] = &["sleep", "1000000"];
const WAIT: Duration = Duration::from_secs(120);

fn shim_beside() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let shim = exe.parent()?.join("containerd-shim-hull-v2");
    (std::env::var_os("HULL_SHIM").is_none() && shim.is_file()).then_some(shim)
}

/// Starts one pod with an idle container; its sandbox id and the start time (ms).
fn start_pod(cri: &Cri, name: &str, handler: &str) -> anyhow::Result<(String, f64)> {
    let config = cri.pod_config(name);
    let t0 = Instant::now();
    let pod = cri
        .run_pod(&config, handler)
        .map_err(|e| anyhow::anyhow!("RunPodSandbox ({handler}): {}", e.message()))?;
    let container = Cri::container_config("idle", 0, SLEEP);
    let id = cri
        .create_container(&pod, &config, container)
        .map_err(|e| anyhow::anyhow!("CreateContainer ({handler}): {}", e.message()))?;
    cri.start_container(&id)
        .map_err(|e| anyhow::anyhow!("StartContainer ({handler}): {}", e.message()))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let status = cri
            .container_status(&id)
            .map_err(|e| anyhow::anyhow!("ContainerStatus: {}", e.message()))?;
        if status.state == i32::from(ContainerState::ContainerRunning) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((pod, t0.elapsed().as_secs_f64() * 1e3))
}

/// Host memory (PSS, RSS; KiB) of the pods `pods`.
fn pods_memory(cri: &Cri, handler: &str, pods: &[String]) -> (u64, u64) {
    let c = cri.containerd();
    let (mut pss, mut rss) = (0, 0);
    for pod in pods {
        let list = if handler == HANDLER {
            let dir = c.run_dir().join(pod);
            procs::pod_processes("containerd-shim-hull-v2", &c.socket(), pod, Some(&dir))
        } else {
            procs::pod_processes("containerd-shim-runc-v2", &c.socket(), pod, None)
        };
        for p in procs::measure(&list) {
            pss += p.pss_kib;
            rss += p.rss_kib;
        }
    }
    (pss, rss)
}

#[allow(clippy::cast_precision_loss)]
fn per_pod_mib(kib: u64, pods: usize) -> f64 {
    kib as f64 / 1024.0 / pods.max(1) as f64
}

fn measure_runtime(cri: &Cri, handler: &str, opts: &CriOptions) -> anyhow::Result<CriRuntime> {
    let mut samples = Vec::new();
    for n in 0..opts.runs {
        let (pod, ms) = start_pod(cri, &format!("{handler}-start-{n}"), handler)?;
        samples.push(ms);
        cri.remove_pod(&pod)
            .map_err(|e| anyhow::anyhow!("removing a pod: {}", e.message()))?;
    }
    eprintln!(
        "hull-bench cri: {handler}: pod start median {:.0} ms",
        Summary::of(&samples).map_or(0.0, |s| s.median)
    );
    let settle = if handler == HANDLER {
        Duration::from_secs(4)
    } else {
        Duration::from_millis(500)
    };
    let mut pods = Vec::new();
    let result = (|| -> anyhow::Result<CriRuntime> {
        pods.push(start_pod(cri, &format!("{handler}-idle-0"), handler)?.0);
        std::thread::sleep(settle);
        let (one, _) = pods_memory(cri, handler, &pods);
        for n in 1..opts.pods {
            pods.push(start_pod(cri, &format!("{handler}-idle-{n}"), handler)?.0);
        }
        std::thread::sleep(settle);
        let (pss_n, rss_n) = pods_memory(cri, handler, &pods);
        Ok(CriRuntime {
            handler: handler.to_owned(),
            pod_start_ms: Summary::of(&samples),
            pss_per_pod_1_mib: per_pod_mib(one, 1),
            pss_per_pod_n_mib: per_pod_mib(pss_n, pods.len()),
            rss_per_pod_n_mib: per_pod_mib(rss_n, pods.len()),
            throughput: None,
        })
    })();
    for pod in &pods {
        let _ = cri.remove_pod(pod);
    }
    result
}

/// Runs the suite and writes `cri.json` and `cri.md` into `out`.
pub fn run(opts: &CriOptions, out: &Path) -> anyhow::Result<CriResults> {
    let images = GuestImages::from_env();
    let cri = Cri::start_with(Options {
        initramfs: Some(images.initramfs),
        shim: shim_beside(),
        log_level: Some("info".to_owned()),
        extra_config: format!("default_memory_mib = {}\n", opts.guest_memory_mib),
        ..Options::default()
    })
    .context("this host cannot run the CRI benchmark (see the message above)")?;
    let accel = hull_runtime::vm::accel::detect()
        .map(|c| format!("{:?}", c.accel))
        .unwrap_or_else(|e| e.to_string());
    if opts.iperf_secs > 0 {
        iperf::import_image(&cri, cri.containerd().dir())?;
    }
    let mut runtimes = Vec::new();
    for handler in [RUNC_HANDLER, HANDLER] {
        let mut runtime = measure_runtime(&cri, handler, opts)?;
        if opts.iperf_secs > 0 {
            runtime.throughput = Some(iperf::measure(&cri, handler, opts.iperf_secs)?);
        }
        runtimes.push(runtime);
    }
    let results = CriResults {
        runs: opts.runs,
        pods: opts.pods,
        guest_memory_mib: opts.guest_memory_mib,
        accel,
        iperf_secs: opts.iperf_secs,
        throughput_ratio: throughput_ratio(&runtimes),
        runtimes,
    };
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("cri.json"), serde_json::to_vec_pretty(&results)?)?;
    std::fs::write(out.join("cri.md"), markdown(&results))?;
    Ok(results)
}

/// The Markdown report.
pub fn markdown(r: &CriResults) -> String {
    let mut s = format!(
        "# CRI: hull vs runc\n\nPod start = RunPodSandbox → CreateContainer → StartContainer → \
         running, {} runs; memory = host PSS of each pod's processes (shim, VMM, virtiofsd, vsock \
         backend / pause, container), idle `sleep` pods, hull guest RAM {} MiB, accel {}.\n\n\
         | handler | start median ms | start p95 ms | PSS/pod, 1 pod (MiB) | PSS/pod, {} pods (MiB) | RSS/pod, {} pods (MiB) |\n\
         |---|---|---|---|---|---|\n",
        r.runs, r.guest_memory_mib, r.accel, r.pods, r.pods
    );
    for rt in &r.runtimes {
        let (median, p95) = rt
            .pod_start_ms
            .as_ref()
            .map_or((0.0, 0.0), |s| (s.median, s.p95));
        s.push_str(&format!(
            "| {} | {median:.0} | {p95:.0} | {:.1} | {:.1} | {:.1} |\n",
            rt.handler, rt.pss_per_pod_1_mib, rt.pss_per_pod_n_mib, rt.rss_per_pod_n_mib
        ));
    }
    if r.runtimes.iter().any(|rt| rt.throughput.is_some()) {
        s.push_str(&format!(
            "\nTCP throughput between a pod and its node (iperf3, {} s each way; the server in the \
             CRI network namespace on the CNI bridge's gateway address, the client in the pod; \
             Gbit/s as the receiver counted):\n\n\
             | handler | pod → host Gbit/s | host → pod Gbit/s |\n|---|---|---|\n",
            r.iperf_secs
        ));
        for rt in &r.runtimes {
            if let Some(t) = &rt.throughput {
                s.push_str(&format!(
                    "| {} | {:.3} | {:.3} |\n",
                    rt.handler, t.pod_to_host_gbit_s, t.host_to_pod_gbit_s
                ));
            }
        }
        if let Some(ratio) = &r.throughput_ratio {
            s.push_str(&format!(
                "| hull / runc | {:.3} | {:.3} |\n",
                ratio.pod_to_host, ratio.host_to_pod
            ));
        }
    }
    s
}
