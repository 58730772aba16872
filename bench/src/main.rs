//! `hull-bench` (also `hull bench`): hull's benchmark command. Without a sub-command it compares
//! hull with runc (and crun) through a private containerd and writes `results.json`,
//! `report.md` and SVG plots; `report` re-renders those from a `results.json`. The single
//! suites (`boot`, `agent`, `fs`, `vmm`) each write `<suite>.json` and `<suite>.md`.

mod agent;
mod boot;
mod compare;
mod cri;
mod engines;
mod fs;
mod hardening;
mod host;
mod iperf;
mod kvm_exits;
mod report;
mod start;
mod start_pods;
mod stats;
mod vmm;
mod vmm_snapshot;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    about = "Measure hull on this host: hull against runc through a private containerd (no \
             sub-command), or one suite",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Directory for the JSON figures and the report (default: bench-results; for `report`,
    /// the directory of the results file).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(flatten)]
    compare: CompareArgs,
    #[command(subcommand)]
    suite: Option<Suite>,
}

/// Options of the comparison (the default command).
#[derive(Debug, Args)]
struct CompareArgs {
    /// Small counts and sizes: finishes in a few minutes.
    #[arg(long)]
    quick: bool,
    /// `ctr run --rm … true` runs per runtime (default 30, quick 10).
    #[arg(long)]
    runs: Option<usize>,
    /// Boots for the boot split (each quiet and timestamped; default 10, quick 3).
    #[arg(long)]
    boots: Option<usize>,
    /// Most idle containers in the density series (default 30, quick 10; also bounded by host
    /// memory).
    #[arg(long)]
    max_pods: Option<usize>,
    /// Guest RAM per pod, MiB.
    #[arg(long, default_value_t = 128)]
    guest_memory: u32,
    /// Guest vCPUs per pod.
    #[arg(long, default_value_t = 1)]
    guest_vcpus: u32,
    /// Only these steps (start, memory, cpu, stdio, density, boot, fs, agent, engines).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// Re-render `report.md` and the plots from a `results.json` of the comparison.
    Report {
        /// The results file.
        results: PathBuf,
    },
    /// virtio-fs against the host directory behind it: sequential write/read and small-file
    /// create/stat/unlink, for each virtiofsd cache mode.
    Fs {
        /// Cache modes to measure.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "auto,always,never,metadata"
        )]
        cache: Vec<String>,
        /// MiB of the sequential file.
        #[arg(long, default_value_t = 512)]
        mib: usize,
        /// Small files.
        #[arg(long, default_value_t = 10_000)]
        files: usize,
    },
    /// Inside a running pod VM: vsock throughput (1 and 8 streams each way), agent RPC round
    /// trip, container create + start + wait of /bin/true.
    Agent {
        /// RPC round trips.
        #[arg(long, default_value_t = 1000)]
        rpcs: usize,
        /// Container runs.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// MiB for the single stream (each of the eight moves a quarter of it).
        #[arg(long, default_value_t = 64)]
        stream_mib: usize,
    },
    /// Guest boot: VMM spawn → ready line, and → VMM exit.
    Boot {
        /// Boots per backend.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// vCPUs per boot.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Guest memory per boot, MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
    },
    /// Kubernetes pods through containerd's CRI, hull against runc: pod start (RunPodSandbox →
    /// first container running) median/p95, host memory per idle pod with 1 and N pods, pod ⇄
    /// host TCP throughput (iperf3).
    Cri {
        /// Small counts: 3 pod starts, 3 idle pods, 3 s of iperf3 each way (unless given).
        #[arg(long)]
        quick: bool,
        /// Pod starts per runtime (default 10).
        #[arg(long)]
        runs: Option<usize>,
        /// Idle pods for the second memory reading (default 10).
        #[arg(long)]
        pods: Option<usize>,
        /// Guest RAM of a hull pod, MiB.
        #[arg(long, default_value_t = 128)]
        guest_memory: u32,
        /// Seconds of iperf3 each way per runtime (default 10; 0 skips the throughput).
        #[arg(long)]
        iperf_secs: Option<u32>,
    },
    /// Podman and Docker with hull as their OCI runtime against runc: `podman run --rm busybox
    /// true` and `docker run --rm busybox true`, median/p95, interleaved (private daemons in a
    /// network namespace of their own).
    Engines {
        /// Timed runs per engine and runtime.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// What the hardening costs (the VMM jail and the shim's seccomp filter, toggled together):
    /// start latency, stdout (vsock) and virtio-fs throughput, on and off interleaved in one run.
    Hardening {
        /// Rounds (each measures both settings).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// MiB per throughput sample.
        #[arg(long, default_value_t = 64)]
        mib: usize,
        /// Guest RAM, MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
    },
    /// hull-vmm: test-guest spawn → exit, its own RSS/PSS without guest RAM, vCPU exit counts,
    /// and Linux boots against QEMU where the host has hardware KVM.
    Vmm {
        /// Runs per series.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Guest memory for the RSS measurement, MiB.
        #[arg(long, default_value_t = 128)]
        memory: u32,
        /// Also boot this test-only kernel variant once (guest-kernel/build-test-kernel.sh).
        #[arg(long)]
        test_kernel: Option<PathBuf>,
    },
    /// Snapshot start against boot, on hull-vmm (docs/snapshot.md): pod VM start → agent
    /// answers, and `ctr run --rm busybox true` with `start = "snapshot"` against `"boot"`,
    /// interleaved; medians, p95, ratios.
    Start {
        /// Timed runs of each kind (0 with --pods: the memory figures only).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Also hold this many idle pods at once on each side and read their host memory.
        #[arg(long, default_value_t = 0)]
        pods: usize,
    },
}

fn compare(args: &CompareArgs, out: PathBuf) -> anyhow::Result<()> {
    let mut opts = compare::Options::new(args.quick, out);
    if let Some(n) = args.runs {
        opts.runs = n.max(1);
    }
    if let Some(n) = args.boots {
        opts.boots = n.max(1);
    }
    if let Some(n) = args.max_pods {
        opts.max_pods = n.max(1);
    }
    opts.guest_memory_mib = args.guest_memory;
    opts.guest_vcpus = args.guest_vcpus;
    if !args.only.is_empty() {
        for p in &args.only {
            anyhow::ensure!(
                compare::PHASES.contains(&p.as_str()),
                "unknown step {p:?} (steps: {})",
                compare::PHASES.join(", ")
            );
        }
        opts.phases.clone_from(&args.only);
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let results = compare::run(&opts, command)?;
    print!("{}", report::headline(&results));
    eprintln!(
        "hull-bench: {} and report.md with plots in {}",
        opts.out.join("results.json").display(),
        opts.out.display()
    );
    anyhow::ensure!(
        results.errors.is_empty(),
        "{} step(s) failed: {}",
        results.errors.len(),
        results.errors.join("; ")
    );
    Ok(())
}

/// `hull-bench report`: renders `results` (a `results.json`) again, into `out` or beside it.
fn rerender(results: &Path, out: Option<PathBuf>) -> anyhow::Result<()> {
    let r = report::read(results)?;
    let dir = out.unwrap_or_else(|| {
        results
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    });
    report::write(&r, &dir)?;
    print!("{}", report::headline(&r));
    eprintln!(
        "hull-bench: {} re-rendered",
        dir.join("report.md").display()
    );
    Ok(())
}

/// `hull-bench fs`: the virtio-fs suite, for each cache mode named in `cache`.
fn fs_suite(cache: &[String], mib: usize, files: usize, out: &Path) -> anyhow::Result<()> {
    let modes = cache
        .iter()
        .map(|c| c.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let results = runtime.block_on(fs::run(&modes, mib, files, out))?;
    print!("{}", fs::report(&results));
    eprintln!("hull-bench: figures in {}", out.join("fs.json").display());
    Ok(())
}

/// `hull-bench agent`: the agent API and stdio suite.
fn agent_suite(options: &agent::AgentOptions, out: &Path) -> anyhow::Result<()> {
    let results = tokio::runtime::Runtime::new()?.block_on(agent::run(options, out))?;
    print!("{}", agent::report(&results));
    eprintln!(
        "hull-bench: figures in {}",
        out.join("agent.json").display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(suite) = cli.suite else {
        return compare(
            &cli.compare,
            cli.out.unwrap_or_else(|| PathBuf::from("bench-results")),
        );
    };
    let out = cli
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-results"));
    match suite {
        Suite::Report { results } => rerender(&results, cli.out)?,
        Suite::Fs { cache, mib, files } => fs_suite(&cache, mib, files, &out)?,
        Suite::Agent {
            rpcs,
            runs,
            stream_mib,
        } => {
            anyhow::ensure!(rpcs > 0 && runs > 0, "--rpcs and --runs must be at least 1");
            let options = agent::AgentOptions {
                rpcs,
                runs,
                stream_mib,
            };
            agent_suite(&options, &out)?;
        }
        Suite::Boot {
            runs,
            vcpus,
            memory,
        } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let results = boot::run(
                &boot::BootOptions {
                    runs,
                    vcpus,
                    memory_mib: memory,
                },
                &out,
            )?;
            print!("{}", boot::report(&results));
            eprintln!("hull-bench: figures in {}", out.join("boot.json").display());
        }
        Suite::Cri {
            quick,
            runs,
            pods,
            guest_memory,
            iperf_secs,
        } => {
            let opts = cri::CriOptions {
                runs: runs.unwrap_or(if quick { 3 } else { 10 }).max(1),
                pods: pods.unwrap_or(if quick { 3 } else { 10 }).max(1),
                guest_memory_mib: guest_memory,
                iperf_secs: iperf_secs.unwrap_or(if quick { 3 } else { 10 }),
            };
            let results = cri::run(&opts, &out)?;
            print!("{}", cri::markdown(&results));
        }
        Suite::Engines { runs } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let results = engines::run(runs, &out)?;
            print!("{}", engines::markdown(&results));
            for e in &results.errors {
                eprintln!("hull-bench engines: not measured: {e}");
            }
            anyhow::ensure!(!results.rows.is_empty(), "no engine could be measured");
        }
        Suite::Hardening { runs, mib, memory } => {
            anyhow::ensure!(runs > 0 && mib > 0, "--runs and --mib must be at least 1");
            let results = hardening::run(
                &hardening::HardeningOptions {
                    runs,
                    mib,
                    memory_mib: memory,
                },
                &out,
            )?;
            print!("{}", hardening::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                out.join("hardening.json").display()
            );
        }
        Suite::Start { runs, pods } => {
            anyhow::ensure!(
                runs > 0 || pods > 0,
                "--runs must be at least 1 (or 0 with --pods: the memory figures only)"
            );
            let results = start::run(runs, pods, &out)?;
            print!("{}", start::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                out.join("start.json").display()
            );
        }
        Suite::Vmm {
            runs,
            memory,
            test_kernel,
        } => {
            anyhow::ensure!(runs > 0, "--runs must be at least 1");
            let results = vmm::run(
                &vmm::VmmOptions {
                    runs,
                    memory_mib: memory,
                    test_kernel,
                },
                &out,
            )?;
            print!("{}", vmm::report(&results));
            eprintln!("hull-bench: figures in {}", out.join("vmm.json").display());
        }
    }
    Ok(())
}
