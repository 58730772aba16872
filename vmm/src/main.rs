//! `hull-vmm`: boots one microVM and exits when the guest stops (status 0), crashes (1) or the
//! configuration is wrong (2).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hull_vmm::arch::cpuid::Feature;
use hull_vmm::config::parse_mac;
use hull_vmm::snapshot::format::SnapshotFiles;
use hull_vmm::{host, FsConfig, NetConfig, Vmm, VmmConfig, VsockConfig};

/// hull's KVM microVM monitor.
#[derive(Debug, Parser)]
#[command(name = "hull-vmm", version)]
struct Args {
    /// Guest kernel: ELF vmlinux (PVH note or 64-bit entry) or bzImage.
    #[arg(long, required_unless_present_any = ["check", "restore", "restore_fds"])]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line (virtio-mmio device words are appended).
    #[arg(long, default_value = hull_vmm::config::DEFAULT_CMDLINE)]
    cmdline: String,
    /// vCPUs (1..=64).
    #[arg(long, default_value_t = 1)]
    vcpus: u64,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 128)]
    mem_mib: u64,
    /// Write the serial console here instead of stdout.
    #[arg(long)]
    console: Option<PathBuf>,
    /// Attach virtio-vsock; the host side is this unix socket (hybrid protocol).
    #[arg(long)]
    vsock_uds: Option<PathBuf>,
    /// The guest's vsock CID.
    #[arg(long, default_value_t = 3)]
    vsock_cid: u64,
    /// Attach virtio-fs served by the vhost-user backend (virtiofsd) listening here.
    #[arg(long)]
    fs_socket: Option<PathBuf>,
    /// The virtio-fs mount tag the guest sees.
    #[arg(long, default_value = "hull", requires = "fs_socket")]
    fs_tag: String,
    /// Attach virtio-net on this tap (attached to if it exists, created otherwise).
    #[arg(long, requires = "net_mac")]
    net_tap: Option<String>,
    /// The guest's MAC address (aa:bb:cc:dd:ee:ff).
    #[arg(long, requires = "net_tap")]
    net_mac: Option<String>,
    /// Attach virtio-balloon with free page reporting and deflate-on-OOM: host pages behind
    /// memory the guest frees are given back.
    #[arg(long)]
    balloon: bool,
    /// CPUID features to hide from the guest, comma separated (e.g. cx16,xsave).
    #[arg(long, value_delimiter = ',')]
    cpuid_clear: Vec<Feature>,
    /// Enter an ELF kernel at its 64-bit entry point even when it has a PVH note.
    #[arg(long)]
    linux64: bool,
    /// Run without the seccomp filters (to debug a filter violation, which kills with SIGSYS).
    #[arg(long)]
    no_seccomp: bool,
    /// Print vCPU exit counters to stderr when the VM stops.
    #[arg(long)]
    exit_stats: bool,
    /// Serve the control socket here (`pause`, `resume`, `snapshot DIR`; see vmm/README.md).
    #[arg(long)]
    api_sock: Option<PathBuf>,
    /// Restore the VM saved in this snapshot directory instead of booting one (its shape comes
    /// from the snapshot; give the host-side ends: --console, --vsock-uds, --fs-socket (a fresh
    /// virtiofsd), --net-tap, --api-sock).
    #[arg(long, conflicts_with_all = [
        "kernel", "initrd", "cmdline", "vcpus", "mem_mib", "vsock_cid", "fs_tag", "net_mac",
        "cpuid_clear", "linux64",
    ])]
    restore: Option<PathBuf>,
    /// Restore from these two open descriptors (`STATE,MEMORY`, read-only, inherited) instead of
    /// a directory: how a jailed VMM gets a root-only template its jailer opened.
    #[arg(long, conflicts_with = "restore", conflicts_with_all = [
        "kernel", "initrd", "cmdline", "vcpus", "mem_mib", "vsock_cid", "fs_tag", "net_mac",
        "cpuid_clear", "linux64",
    ])]
    restore_fds: Option<String>,
    /// With --restore/--restore-fds: the memory file's checksum is already known to match (hull
    /// checked this very file before); only its length is checked.
    #[arg(long)]
    memory_checked: bool,
    /// Print what kind of KVM this host has, and exit.
    #[arg(long)]
    check: bool,
}

fn run(args: Args) -> anyhow::Result<i32> {
    if args.check {
        let h = host::check();
        println!("{:?}: {}", h.kind, h.reason);
        return Ok(0);
    }
    if args.restore.is_some() || args.restore_fds.is_some() {
        let files = match (&args.restore, &args.restore_fds) {
            (Some(dir), _) => SnapshotFiles::open(dir),
            (None, Some(fds)) => {
                let (state, memory) = parse_fds(fds).with_context(|| {
                    format!("--restore-fds {fds:?} is not two descriptors like 3,4")
                })?;
                SnapshotFiles::from_fds(state, memory)
            }
            (None, None) => unreachable!("one of them is there"),
        }
        .context("cannot open the snapshot")?;
        let rc = hull_vmm::RestoreConfig {
            console: args.console,
            vsock_uds: args.vsock_uds,
            fs_socket: args.fs_socket,
            net_tap: args.net_tap,
            api_sock: args.api_sock,
            seccomp: !args.no_seccomp,
            memory_checked: args.memory_checked,
        };
        let vmm = Vmm::restore_files(&files, &rc)
            .with_context(|| format!("cannot restore the VM from {}", files.name.display()))?;
        drop(files);
        return run_vmm(vmm, args.exit_stats);
    }
    let net = match (args.net_tap, args.net_mac) {
        (Some(tap), Some(mac)) => Some(NetConfig {
            tap,
            mac: parse_mac(&mac).with_context(|| {
                format!("--net-mac {mac:?} is not a MAC address like 52:54:00:12:34:56")
            })?,
        }),
        _ => None,
    };
    let vcpus = u8::try_from(args.vcpus)
        .ok()
        .filter(|n| (1..=hull_vmm::config::MAX_VCPUS).contains(n))
        .with_context(|| {
            format!(
                "{} vCPUs requested; hull-vmm runs 1 to {}",
                args.vcpus,
                hull_vmm::config::MAX_VCPUS
            )
        })?;
    let config = VmmConfig {
        kernel: args.kernel.context("--kernel is required")?,
        initrd: args.initrd,
        cmdline: args.cmdline,
        vcpus,
        mem_mib: args.mem_mib,
        console: args.console,
        vsock: args.vsock_uds.map(|uds| VsockConfig {
            uds,
            cid: args.vsock_cid,
        }),
        fs: args.fs_socket.map(|socket| FsConfig {
            socket,
            tag: args.fs_tag,
        }),
        net,
        balloon: args.balloon,
        cpuid_clear: args.cpuid_clear,
        linux64: args.linux64,
        seccomp: !args.no_seccomp,
        api_sock: args.api_sock,
    };
    let vmm = Vmm::build(&config).context("cannot start the VM")?;
    run_vmm(vmm, args.exit_stats)
}

/// `STATE,MEMORY` descriptor numbers.
fn parse_fds(s: &str) -> Option<(i32, i32)> {
    let (a, b) = s.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Runs a built or restored VM until it stops; returns the exit status.
fn run_vmm(vmm: Vmm, exit_stats: bool) -> anyhow::Result<i32> {
    let stats = vmm.stats();
    let devices = vmm.virtio_devices();
    let reason = vmm.run().context("the VM failed")?;
    if exit_stats {
        eprintln!("hull-vmm: exits {}", stats.summary());
        for d in &devices {
            if let Some(c) = hull_vmm::bus::lock(d).counters() {
                eprintln!("hull-vmm: {c}");
            }
        }
    }
    eprintln!("hull-vmm: guest stopped: {reason:?}");
    Ok(reason.exit_code())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        // vCPU threads may still be inside KVM_RUN: leave without waiting for them.
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("hull-vmm: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
