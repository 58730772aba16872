//! `hull-bench`: hull's benchmark command. Each suite writes `<suite>.json` and `<suite>.md`.

mod boot;
mod host;
mod stats;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.suite {
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
    }
    Ok(())
}
