//! The virtio-fs suite: the same file workloads in the guest over virtio-fs and on the host
//! directory behind it, in the same run, for each virtiofsd cache mode:
//! - sequential write then read of one file (`dd`, 1 MiB blocks, `conv=fsync` on write; the
//!   guest's read after dropping the guest's page cache, both reads from the host's page cache);
//! - 10 000 small files: create, stat, unlink (busybox `xargs touch`, `xargs stat`, `rm -r`).
//!
//! Both sides run Debian's static busybox, so only the file system path differs.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_runtime::agent::client::StdioConfig;
use hull_runtime::images::GuestImages;
use hull_runtime::sandbox::{SandboxVm, SandboxVmConfig};
use hull_runtime::share::{guest_rootfs, mounts, CacheMode};
use hull_runtime::vm::{accel, qemu::Qemu, Hypervisor};
use hull_tests::rootfs::{busybox_rootfs, test_initramfs, BUSYBOX};
use hull_tests::spec::{spec, to_bytes};
use serde::Serialize;

use crate::host::HostInfo;

/// One workload's timings, seconds.
#[derive(Debug, Serialize)]
pub struct Workload {
    /// Sequential write (with fsync).
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

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "write {:.2} s, read {:.2} s, create {:.2} s, stat {:.2} s, unlink {:.2} s",
            self.seq_write_s, self.seq_read_s, self.create_s, self.stat_s, self.unlink_s
        )
    }
}

/// One cache mode's figures.
#[derive(Debug, Serialize)]
pub struct ModeFigures {
    /// virtiofsd `--cache`.
    pub cache: String,
    /// In the guest over virtio-fs.
    pub guest: Workload,
    /// guest as a fraction of host throughput, per workload (host_time / guest_time).
    pub ratio_of_host: Workload,
}

/// The suite's output.
#[derive(Debug, Serialize)]
pub struct FsResults {
    /// The suite.
    pub suite: &'static str,
    /// The host.
    pub host: HostInfo,
    /// Backend that ran the guest.
    pub backend: String,
    /// MiB of the sequential file.
    pub file_mib: usize,
    /// Small files.
    pub files: usize,
    /// The same workloads on the host directory.
    pub host_baseline: Workload,
    /// Per cache mode.
    pub modes: Vec<ModeFigures>,
}

/// The workload as shell steps, each timed by the caller; `dir` is where it runs. In the guest
/// the read starts by dropping the guest's page cache (so it goes through virtio-fs); the host's
/// page cache stays warm on both sides, so both reads are served from host memory.
fn steps(dir: &str, mib: usize, files: usize, guest: bool) -> [(String, &'static str); 5] {
    let drop = if guest {
        "sync; echo 3 > /proc/sys/vm/drop_caches; "
    } else {
        ""
    };
    [
        (
            format!("dd if=/dev/zero of={dir}/big bs=1048576 count={mib} conv=fsync 2>/dev/null"),
            "write",
        ),
        (
            format!("{drop}dd if={dir}/big of=/dev/null bs=1048576 2>/dev/null"),
            "read",
        ),
        (
            format!("mkdir -p {dir}/small && cd {dir}/small && seq 1 {files} | xargs touch"),
            "create",
        ),
        (
            format!("cd {dir}/small && seq 1 {files} | xargs stat -c %s > /dev/null"),
            "stat",
        ),
        (format!("rm -rf {dir}/small {dir}/big"), "unlink"),
    ]
}

fn workload(times: [f64; 5]) -> Workload {
    Workload {
        seq_write_s: times[0],
        seq_read_s: times[1],
        create_s: times[2],
        stat_s: times[3],
        unlink_s: times[4],
    }
}

fn host_run(dir: &Path, mib: usize, files: usize) -> anyhow::Result<Workload> {
    let mut t = [0.0; 5];
    for (i, (script, what)) in steps(&dir.display().to_string(), mib, files, false)
        .iter()
        .enumerate()
    {
        let started = Instant::now();
        let ok = Command::new(BUSYBOX)
            .args(["sh", "-c", script])
            .status()?
            .success();
        anyhow::ensure!(ok, "host {what} failed");
        t[i] = started.elapsed().as_secs_f64();
    }
    Ok(workload(t))
}

async fn guest_run(
    vm: &SandboxVm,
    cid: &str,
    mib: usize,
    files: usize,
) -> anyhow::Result<Workload> {
    let agent = vm.agent();
    agent
        .create_container(
            cid,
            to_bytes(&spec(&["sleep", "100000"])),
            &guest_rootfs(cid),
            StdioConfig::default(),
        )
        .await?;
    agent.start_container(cid).await?;
    let mut t = [0.0; 5];
    for (i, (script, what)) in steps("/work", mib, files, true).iter().enumerate() {
        let eid = (*what).to_owned();
        let started = Instant::now();
        let process = serde_json::to_vec(&hull_tests::spec::process(&["sh", "-c", script]))?;
        agent
            .exec_process(cid, &eid, process, StdioConfig::default())
            .await?;
        let exit = agent.wait_process(cid, &eid).await?;
        t[i] = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            exit.exit_status == 0,
            "guest {what} exited with {}",
            exit.exit_status
        );
    }
    agent.remove_container(cid).await?;
    Ok(workload(t))
}

fn ratio(host: &Workload, guest: &Workload) -> Workload {
    Workload {
        seq_write_s: host.seq_write_s / guest.seq_write_s,
        seq_read_s: host.seq_read_s / guest.seq_read_s,
        create_s: host.create_s / guest.create_s,
        stat_s: host.stat_s / guest.stat_s,
        unlink_s: host.unlink_s / guest.unlink_s,
    }
}

/// Runs the suite and writes `fs.json` and `fs.md` into `out`.
pub async fn run(
    modes: &[CacheMode],
    mib: usize,
    files: usize,
    out: &Path,
) -> anyhow::Result<FsResults> {
    let results = measure(modes, mib, files).await?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("fs.json"), serde_json::to_string_pretty(&results)?)?;
    std::fs::write(out.join("fs.md"), report(&results))?;
    Ok(results)
}

/// Runs the suite.
pub async fn measure(modes: &[CacheMode], mib: usize, files: usize) -> anyhow::Result<FsResults> {
    let choice = accel::detect()?;
    let qemu = Qemu::for_host(choice.accel);
    let images = GuestImages::from_env();
    let initramfs = test_initramfs().map_err(anyhow::Error::msg)?;
    let scratch = tempfile::tempdir_in("/var/tmp").context("scratch directory")?;
    let host_dir = scratch.path().join("host");
    std::fs::create_dir_all(&host_dir)?;
    let host_baseline = host_run(&host_dir, mib, files)?;
    eprintln!("hull-bench: host: {host_baseline}");
    let mut results = FsResults {
        suite: "fs",
        host: HostInfo::read(hull_runtime::vm::qemu::DEFAULT_BINARY),
        backend: qemu.name(),
        file_mib: mib,
        files,
        host_baseline,
        modes: Vec::new(),
    };
    for (n, cache) in modes.iter().enumerate() {
        let run_dir = tempfile::tempdir()?;
        let config = SandboxVmConfig {
            images: GuestImages {
                kernel: images.kernel.clone(),
                initramfs: initramfs.clone(),
            },
            vcpus: 1,
            memory_mib: 512,
            run_dir: run_dir.path().to_owned(),
            cmdline: vec![],
            boot_timeout: Duration::from_secs(120),
            share: Some(*cache),
            netns: None,
            confine_host: false,
            template_root: None,
        };
        let vm = SandboxVm::start(&qemu, &config)
            .await
            .context("the pod VM did not start")?;
        let cid = format!("fs{n}");
        let shared = vm.shared_dir().context("no share")?;
        // The container's root is a busybox tree on the share, the work dir a volume on the same
        // host file system as the host baseline.
        let root = shared.join(&cid).join("rootfs");
        busybox_rootfs(&root)?;
        let work = scratch.path().join(format!("guest-{cache}"));
        std::fs::create_dir_all(&work)?;
        mounts::bind(&work, &root.join("work"), mounts::Access::ReadWrite)?;
        let guest = guest_run(&vm, &cid, mib, files).await?;
        eprintln!("hull-bench: guest, cache={cache}: {guest}");
        vm.shutdown(Duration::from_secs(5)).await?;
        results.modes.push(ModeFigures {
            cache: cache.to_string(),
            ratio_of_host: ratio(&results.host_baseline, &guest),
            guest,
        });
    }
    Ok(results)
}

/// The readable report.
pub fn report(r: &FsResults) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# hull virtio-fs benchmark\n");
    let _ = writeln!(
        s,
        "Host: {} ({} CPUs), {}; guest backend {}. {} MiB sequential file, {} small files.\n",
        r.host.cpu_model, r.host.cpus, r.host.date, r.backend, r.file_mib, r.files
    );
    let _ = writeln!(
        s,
        "| where | write MiB/s | read MiB/s | create/s | stat/s | unlink/s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let row = |s: &mut String, name: &str, w: &Workload| {
        let mib = r.file_mib as f64;
        let n = r.files as f64;
        let _ = writeln!(
            s,
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            mib / w.seq_write_s,
            mib / w.seq_read_s,
            n / w.create_s,
            n / w.stat_s,
            n / w.unlink_s
        );
    };
    row(&mut s, "host", &r.host_baseline);
    for m in &r.modes {
        row(&mut s, &format!("guest, cache={}", m.cache), &m.guest);
    }
    let _ = writeln!(s, "\nGuest as a fraction of the host (1.0 = host speed):\n");
    let _ = writeln!(s, "| cache | write | read | create | stat | unlink |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for m in &r.modes {
        let q = &m.ratio_of_host;
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            m.cache, q.seq_write_s, q.seq_read_s, q.create_s, q.stat_s, q.unlink_s
        );
    }
    s
}
