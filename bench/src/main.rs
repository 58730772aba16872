//! `hull-bench`: hull's benchmark command. Each suite writes `<suite>.json` and `<suite>.md`.

mod agent;
mod boot;
mod fs;
mod host;
mod stats;
mod vmm;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Measure hull on this host")]
struct Cli {
    /// Directory for the JSON figures and the report.
    #[arg(long, global = true, default_value = "bench-results")]
    out: PathBuf,
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, Subcommand)]
enum Suite {
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.suite {
        Suite::Fs { cache, mib, files } => {
            let modes = cache
                .iter()
                .map(|c| c.parse().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let runtime = tokio::runtime::Runtime::new()?;
            let results = runtime.block_on(fs::run(&modes, mib, files, &cli.out))?;
            print!("{}", fs::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                cli.out.join("fs.json").display()
            );
        }
        Suite::Agent {
            rpcs,
            runs,
            stream_mib,
        } => {
            anyhow::ensure!(rpcs > 0 && runs > 0, "--rpcs and --runs must be at least 1");
            let runtime = tokio::runtime::Runtime::new()?;
            let options = agent::AgentOptions {
                rpcs,
                runs,
                stream_mib,
            };
            let results = runtime.block_on(agent::run(&options, &cli.out))?;
            print!("{}", agent::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                cli.out.join("agent.json").display()
            );
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
                &cli.out,
            )?;
            print!("{}", boot::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                cli.out.join("boot.json").display()
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
                &cli.out,
            )?;
            print!("{}", vmm::report(&results));
            eprintln!(
                "hull-bench: figures in {}",
                cli.out.join("vmm.json").display()
            );
        }
    }
    Ok(())
}
