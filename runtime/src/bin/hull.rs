//! `hull`: the command-line tool. `hull check` says whether this host can run hull pods (which
//! KVM, which backend and why, guest images, tools, containerd registration), one line per check
//! with a fix for each failure; `hull version`; `hull boot` boots the installed guest once in
//! self-test mode and prints its ready line; `hull bench …` runs `hull-bench` (the benchmark
//! against runc, `bench/`), found beside `hull` or on `PATH`; and runc's command line
//! (`hull create/start/state/kill/delete/run/exec/…`, [`hull_runtime::oci`]) so Podman and Docker
//! run containers in microVMs with `--runtime hull`; `hull pod balloon <pod> <MiB>` asks a running
//! pod's guest for memory back ([`hull_runtime::vm::balloon`]).

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hull_runtime::hostcheck;
use hull_runtime::images::GuestImages;
use hull_runtime::oci::cli::{self, GlobalArgs, OciCommand};
use hull_runtime::selftest::{boot_selftest, SelftestSpec};
use hull_runtime::shim::config::{HullConfig, HypervisorChoice};
use hull_runtime::shim::RUNTIME_NAME;
use hull_runtime::vm::accel;

#[derive(Debug, Parser)]
#[command(
    about = "hull: a VM-isolated container runtime",
    after_help = "`hull --version` (or `-v`) prints the version as runc does, for the engines that parse it."
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Say whether this host can run hull pods: which KVM, which backend and why, guest images,
    /// tools, containerd's registration; one line per check, a fix for each failure.
    Check {
        /// hull's configuration file (default: `HULL_CONFIG` or /etc/hull/config.toml).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// containerd's configuration file.
        #[arg(long, default_value = "/etc/containerd/config.toml")]
        containerd_config: std::path::PathBuf,
    },
    /// Print hull's version and what it speaks.
    Version,
    /// Boot the guest once with hull.selftest=1 and print what it reports.
    Boot {
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
        /// Seconds to wait for the ready line (and again for the exit).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The VMM: `auto`, `hull-vmm` or `qemu` (default: the configuration's `hypervisor`, so
        /// the boot is on the backend pods get).
        #[arg(long)]
        hypervisor: Option<String>,
    },
    /// Measure hull against runc on this host (`hull-bench`; `hull bench --help` for its options,
    /// `hull bench --quick` for a run of a few minutes, `hull bench report results.json`).
    #[command(disable_help_flag = true)]
    Bench {
        /// Arguments for hull-bench.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Act on a running pod's VM.
    #[command(subcommand)]
    Pod(PodCommand),
    /// Pod templates: booted, agent-ready VMs that pods of the default shape restore
    /// (`start = "snapshot"` on hull-vmm; docs/snapshot.md).
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    #[command(flatten)]
    Oci(OciCommand),
}

#[derive(Debug, Subcommand)]
enum PodCommand {
    /// Ask a pod's guest to give MiB of its memory back to the host (its balloon's target; 0
    /// gives it all back to the guest). The guest takes balloon pages back before its OOM killer
    /// would run (deflate-on-OOM, docs/balloon.md).
    Balloon {
        /// The pod: its sandbox id (`ctr run`: the container id).
        pod: String,
        /// MiB the guest should give up.
        mib: u64,
        /// hull's configuration file (default: `HULL_CONFIG` or /etc/hull/config.toml), for its
        /// `run_dir`.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TemplateCommand {
    /// Make (or make again) the template of the default pod shape.
    Create,
    /// List the templates, with what each was made from.
    List,
    /// Remove templates: the ones named, or all with --all.
    Rm {
        /// Template keys (as `hull template list` prints them).
        keys: Vec<String>,
        /// Remove every template.
        #[arg(long, conflicts_with = "keys")]
        all: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    if let (Some(flag), None) = (args.next(), args.next()) {
        if flag == "--version" || flag == "-v" {
            print!("{}", runc_style_version());
            return Ok(());
        }
    }
    let cli = Cli::parse();
    let own_logging = matches!(&cli.command, Command::Oci(c) if cli::logs_itself(c));
    if !own_logging {
        let filter = if cli.globals.debug {
            tracing_subscriber::EnvFilter::new("debug")
        } else {
            tracing_subscriber::EnvFilter::from_env("HULL_LOG")
        };
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match cli.command {
        Command::Oci(command) => std::process::exit(cli::dispatch(&cli.globals, command)),
        Command::Check {
            config,
            containerd_config,
        } => check(config, &containerd_config),
        Command::Version => {
            version();
            Ok(())
        }
        Command::Boot {
            vcpus,
            memory,
            timeout,
            hypervisor,
        } => boot(vcpus, memory, Duration::from_secs(timeout), hypervisor),
        Command::Bench { args } => bench(&args),
        Command::Pod(PodCommand::Balloon { pod, mib, config }) => balloon(&pod, mib, config),
        Command::Template { command } => template(command),
    }
}

/// `hull pod balloon`: sets the balloon target of pod `pod` through its VM's control socket.
fn balloon(pod: &str, mib: u64, config: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let single = std::path::Path::new(pod).components().count() == 1;
    if pod.is_empty() || !single || pod == "." || pod == ".." || pod.contains('/') {
        bail!("{pod:?} is not a pod id");
    }
    let path = config.unwrap_or_else(HullConfig::path);
    let config = if path.exists() {
        HullConfig::load_from(&path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        HullConfig::default()
    };
    let state = hull_runtime::vm::balloon::set_target(&config.run_dir.join(pod), mib)
        .with_context(|| format!("pod {pod}"))?;
    println!(
        "pod {pod}: balloon target {} MiB of {} MiB; the guest has {} MiB now (it inflates over \
         the next seconds)",
        state.target_mib, state.guest_mib, state.actual_mib
    );
    Ok(())
}

/// `hull template …`.
fn template(command: TemplateCommand) -> anyhow::Result<()> {
    use hull_runtime::shim::start_mode;
    use hull_runtime::template;
    let path = HullConfig::path();
    let config =
        HullConfig::load_from(&path).with_context(|| format!("cannot use {}", path.display()))?;
    let root = &config.template_dir;
    match command {
        TemplateCommand::Create => {
            if let Err(reason) = hull_runtime::vm::hull_vmm::usable() {
                bail!("templates need hull-vmm, which cannot run pods on this host: {reason}");
            }
            let hv = start_mode::hull_vmm_backend(&config);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Both templates of the default shape: pods without a NIC (`ctr run`) and with one
            // (CRI, every networked pod).
            for (nic, what) in [(false, "no NIC"), (true, "NIC")] {
                let spec = start_mode::default_spec(&config, nic);
                let started = std::time::Instant::now();
                let t = rt
                    .block_on(template::create::create(
                        root,
                        &hv,
                        &spec,
                        config.boot_timeout(),
                    ))
                    .with_context(|| format!("cannot make the template ({what})"))?;
                println!(
                    "template {} ({what}) made in {} ms: {} ({} MiB of memory)",
                    t.record.key,
                    started.elapsed().as_millis(),
                    t.dir.display(),
                    t.record.memory_bytes >> 20
                );
            }
        }
        TemplateCommand::List => {
            let listed = template::list(root)?;
            if listed.is_empty() {
                // stdout stays empty for scripts; a person learns why.
                eprintln!(
                    "hull: no templates in {} (`hull template create` makes them)",
                    root.display()
                );
            }
            for (key, record) in listed {
                match record {
                    Ok(r) => println!(
                        "{key}  {} vCPU  {} MiB  devices {}  hull {}  kernel {}  initramfs {}",
                        r.inputs.vcpus,
                        r.inputs.memory_mib,
                        r.inputs.devices.join(","),
                        r.inputs.hull_version,
                        &r.inputs.kernel_sha256[..r.inputs.kernel_sha256.len().min(12)],
                        &r.inputs.initramfs_sha256[..r.inputs.initramfs_sha256.len().min(12)],
                    ),
                    Err(e) => println!("{key}  refused: {e}"),
                }
            }
        }
        TemplateCommand::Rm { keys, all } => {
            let keys = if all {
                template::list(root)?.into_iter().map(|(k, _)| k).collect()
            } else {
                keys
            };
            for key in keys {
                template::remove(root, &key)?;
                println!("removed {key}");
            }
        }
    }
    Ok(())
}

/// Runs `hull-bench` with `args` (beside this binary, else on `PATH`) and exits with its status.
fn bench(args: &[std::ffi::OsString]) -> anyhow::Result<()> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("hull-bench")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| "hull-bench".into());
    let status = std::process::Command::new(&program)
        .args(args)
        .status()
        .with_context(|| {
            format!(
                "cannot run {} (scripts/build.sh builds it)",
                program.display()
            )
        })?;
    std::process::exit(status.code().unwrap_or(1));
}

fn check(
    config: Option<std::path::PathBuf>,
    containerd_config: &std::path::Path,
) -> anyhow::Result<()> {
    let config = config.unwrap_or_else(HullConfig::path);
    let checks = hostcheck::run(&config, containerd_config);
    for c in &checks {
        println!("{c}");
    }
    print_overhead();
    let failed = checks
        .iter()
        .filter(|c| c.outcome == hostcheck::Outcome::Fail)
        .count();
    if failed > 0 {
        eprintln!("hull: {failed} check(s) failed: hull cannot run pods on this host yet");
        std::process::exit(1);
    }
    println!("hull can run pods on this host");
    Ok(())
}

/// The pod overhead the last `hull bench` measured, for the RuntimeClass.
fn print_overhead() {
    let path = hull_runtime::overhead::Measured::path();
    match hull_runtime::overhead::Measured::load(&path) {
        Ok(Some(m)) => {
            println!("RuntimeClass overhead measured by hull bench ({}):", path.display());
            for line in m.summary() {
                println!("  {line}");
            }
        }
        Ok(None) => println!(
            "RuntimeClass overhead: not measured on this host yet (hull bench --only memory,cpu writes {})",
            path.display()
        ),
        Err(e) => println!("RuntimeClass overhead: {e:#}"),
    }
}

/// `hull --version` in runc's shape: Docker and Podman parse `<name> version <v>` and `commit:`
/// from it (dockerd logs "failed to parse" for anything else).
fn runc_style_version() -> String {
    format!(
        "hull version {}\ncommit: {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("HULL_GIT_COMMIT").unwrap_or("unknown"),
        hull_runtime::oci::OCI_VERSION
    )
}

fn version() {
    println!("hull {}", env!("CARGO_PKG_VERSION"));
    println!(
        "runtime: {} (containerd-shim-hull-v2, shim API task v2)",
        RUNTIME_NAME
    );
    println!(
        "agent protocol: hull.agent.v1 over vsock ports {} (ttrpc) and {} (stdio)",
        hull_protocol::AGENT_PORT,
        hull_protocol::STDIO_PORT
    );
}

/// Boots the installed guest once on the backend pods get (the configuration's `hypervisor`,
/// jailed as the shim runs it), or on the one `hypervisor` names.
fn boot(
    vcpus: u32,
    memory_mib: u32,
    timeout: Duration,
    hypervisor: Option<String>,
) -> anyhow::Result<()> {
    let path = HullConfig::path();
    let mut config =
        HullConfig::load_from(&path).with_context(|| format!("cannot use {}", path.display()))?;
    if let Some(name) = hypervisor {
        config.hypervisor = match name.as_str() {
            "auto" => HypervisorChoice::Auto,
            "hull-vmm" => HypervisorChoice::HullVmm,
            "qemu" => HypervisorChoice::Qemu,
            other => bail!("--hypervisor {other:?}: expected auto, hull-vmm or qemu"),
        };
    }
    let backend = hull_runtime::shim::pod::hypervisor(&config, Vec::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if backend.name() == "qemu-tcg" {
        eprintln!(
            "hull: warning: using TCG (software emulation): {}",
            accel::detect()?.reason
        );
    } else {
        let choice = accel::detect()?;
        let found = accel::choose(&accel::HostProbe::read(&accel::ProbePaths::default()));
        if choice.accel == accel::Accel::Kvm && found.accel != accel::Accel::Kvm {
            eprintln!(
                "hull: warning: KVM is forced ({}) but {}: the guest will not boot",
                choice.reason, found.reason
            );
        }
    }
    let run_dir = private_run_dir()?;
    let spec = SelftestSpec {
        vcpus,
        memory_mib,
        timeout,
    };
    let result = boot_selftest(
        backend.as_ref(),
        &GuestImages::from_env(),
        &spec,
        run_dir.path(),
    );
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let console =
                std::fs::read_to_string(run_dir.path().join("console.log")).unwrap_or_default();
            let log = std::fs::read_to_string(run_dir.path().join("vmm.log")).unwrap_or_default();
            eprintln!("--- guest console ---\n{console}--- VMM log ---\n{log}---");
            return Err(e).context("self-test boot failed");
        }
    };
    println!("{}", report.ready_line);
    println!(
        "hull: {} booted to ready in {} ms, VM exited after {} ms ({})",
        backend.name(),
        report.to_ready.as_millis(),
        report.to_exit.as_millis(),
        report.status
    );
    if !report.status.success() {
        bail!("the VMM exited with {}", report.status);
    }
    Ok(())
}

/// A private run directory under `/run/hull` (or the temp dir when that is not writable).
fn private_run_dir() -> anyhow::Result<RunDir> {
    let base = std::path::Path::new("/run/hull");
    let base = if std::fs::create_dir_all(base).is_ok() {
        base.to_owned()
    } else {
        std::env::temp_dir()
    };
    let path = base.join(format!("boot-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(RunDir(path))
}

/// A run directory removed when dropped.
#[derive(Debug)]
struct RunDir(std::path::PathBuf);

impl RunDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
