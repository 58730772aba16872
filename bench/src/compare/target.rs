//! What is compared: hull with each backend the host offers, runc, crun where it works; and the
//! `ctr` commands that run a container on each through the benchmark's private containerd.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_runtime::vm::{accel, Accel};
use hull_tests::containerd::{shim_socket, Containerd, NAMESPACE};

use super::procs::{self, PodProcess};
use super::schema::Unavailable;

/// The image every container runs: busybox with the probe at [`PROBE_IN_IMAGE`].
pub const IMAGE: &str = "hull.bench/busybox-probe:latest";

/// Where the probe is in the image.
pub const PROBE_IN_IMAGE: &str = "/bin/hull-bench-probe";

/// A runtime under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// hull, with the shim's `hypervisor` key and the backend's name for labels.
    Hull {
        /// `qemu` or `hull-vmm`.
        hypervisor: &'static str,
        /// `qemu-tcg`, `qemu-kvm`, `hull-vmm`.
        backend: String,
    },
    /// runc through containerd's runc shim.
    Runc,
    /// crun through the same shim (`--runc-binary crun`).
    Crun,
}

impl Target {
    /// The label in figures: `hull/qemu-tcg`, `runc`, `crun`.
    pub fn label(&self) -> String {
        match self {
            Target::Hull { backend, .. } => format!("hull/{backend}"),
            Target::Runc => "runc".to_owned(),
            Target::Crun => "crun".to_owned(),
        }
    }

    /// Whether this is hull.
    pub fn is_hull(&self) -> bool {
        matches!(self, Target::Hull { .. })
    }

    fn flags(&self) -> Vec<&'static str> {
        match self {
            Target::Hull { .. } => vec!["--runtime", hull_tests::containerd::RUNTIME],
            Target::Runc => vec!["--runtime", "io.containerd.runc.v2"],
            Target::Crun => vec![
                "--runtime",
                "io.containerd.runc.v2",
                "--runc-binary",
                "crun",
            ],
        }
    }
}

/// hull's targets on this host, and the backends it cannot run with their reason.
pub fn hull_targets() -> anyhow::Result<(Vec<Target>, Vec<Unavailable>)> {
    let choice = accel::detect()?;
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    if choice.accel == Accel::Kvm {
        targets.push(Target::Hull {
            hypervisor: "hull-vmm",
            backend: "hull-vmm".to_owned(),
        });
        targets.push(Target::Hull {
            hypervisor: "qemu",
            backend: "qemu-kvm".to_owned(),
        });
        missing.push(Unavailable {
            what: "hull/qemu-tcg".to_owned(),
            reason: "the shim uses KVM where the host has it; TCG is not measured here".to_owned(),
        });
    } else {
        targets.push(Target::Hull {
            hypervisor: "qemu",
            backend: "qemu-tcg".to_owned(),
        });
        for what in ["hull/hull-vmm", "hull/qemu-kvm"] {
            missing.push(Unavailable {
                what: what.to_owned(),
                reason: format!("needs hardware KVM: {}", choice.reason),
            });
        }
    }
    Ok((targets, missing))
}

/// Runs `ctr` against `c` with `args`; stdout on success, the whole story otherwise.
pub fn ctr(c: &Containerd, args: &[&str]) -> anyhow::Result<String> {
    let out = c.ctr(args);
    anyhow::ensure!(
        out.status.success(),
        "ctr {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every container id this process handed to `ctr run`.
static USED_IDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remember(id: &str) {
    if let Ok(mut ids) = USED_IDS.lock() {
        ids.push(id.to_owned());
    }
}

/// Removes the shim sockets (`/run/containerd/s/…`) of every container this run started on the
/// containerd at `address` that are still there once it is gone: a shim killed while starting
/// (Ctrl-C during a `ctr run`) leaves its socket behind, outside containerd's directories.
pub fn remove_stale_shim_sockets(address: &Path) {
    let ids = USED_IDS.lock().map(|v| v.clone()).unwrap_or_default();
    for id in ids {
        let socket = shim_socket(address, NAMESPACE, &id);
        if socket.exists() {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Points the hull shim at `target`'s hypervisor (the shim reads its configuration at start).
pub fn select(c: &Containerd, target: &Target) -> anyhow::Result<()> {
    let Target::Hull { hypervisor, .. } = target else {
        return Ok(());
    };
    let path = c.dir().join("hull.toml");
    let text = std::fs::read_to_string(&path).context("hull.toml")?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for line in &mut lines {
        if line.starts_with("hypervisor =") {
            *line = format!("hypervisor = \"{hypervisor}\"");
        }
    }
    std::fs::write(&path, lines.join("\n") + "\n").context("hull.toml")?;
    Ok(())
}

/// `ctr run --rm` of `args` on `target`; the wall time and stdout.
pub fn run_rm(
    c: &Containerd,
    target: &Target,
    id: &str,
    args: &[&str],
) -> anyhow::Result<(Duration, String)> {
    select(c, target)?;
    remember(id);
    let mut all = vec!["run", "--rm"];
    all.extend(target.flags());
    all.extend([IMAGE, id]);
    all.extend_from_slice(args);
    let started = Instant::now();
    let out = ctr(c, &all)?;
    Ok((started.elapsed(), out))
}

/// `ctr run -d` of `args` on `target`; the wall time.
pub fn run_detached(
    c: &Containerd,
    target: &Target,
    id: &str,
    args: &[&str],
) -> anyhow::Result<Duration> {
    select(c, target)?;
    remember(id);
    let mut all = vec!["run", "-d"];
    all.extend(target.flags());
    all.extend([IMAGE, id]);
    all.extend_from_slice(args);
    let started = Instant::now();
    ctr(c, &all)?;
    Ok(started.elapsed())
}

/// `ctr task exec` of `args` in `id`; the wall time, the bytes of stdout and its text when
/// `keep` (otherwise only counted).
pub fn exec(
    c: &Containerd,
    id: &str,
    exec_id: &str,
    args: &[&str],
    keep: bool,
) -> anyhow::Result<(Duration, u64, String)> {
    let started = Instant::now();
    let mut child = c
        .ctr_command()
        .args(["task", "exec", "--exec-id", exec_id, id])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("ctr")?;
    let mut stdout = child.stdout.take().context("ctr stdout")?;
    let mut kept = Vec::new();
    let mut count = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break;
        }
        count += n as u64;
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    let out = child.wait_with_output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "ctr task exec {id} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((elapsed, count, String::from_utf8_lossy(&kept).into_owned()))
}

/// Kills and deletes container `id` (task and container); errors are the caller's to log.
pub fn remove(c: &Containerd, id: &str) {
    let _ = c.remove(id);
}

/// The host processes of container `id` on `target`.
pub fn processes_of(c: &Containerd, target: &Target, id: &str) -> Vec<PodProcess> {
    match target {
        Target::Hull { .. } => procs::pod_processes(
            "containerd-shim-hull-v2",
            &c.socket(),
            id,
            Some(&c.run_dir().join(id)),
        ),
        Target::Runc | Target::Crun => {
            procs::pod_processes("containerd-shim-runc-v2", &c.socket(), id, None)
        }
    }
}

/// Whether crun can run a container here; `Err(reason)` when it cannot.
pub fn crun_works(c: &Containerd) -> Result<(), String> {
    let on_path = Command::new("crun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !on_path {
        return Err("crun is not installed".to_owned());
    }
    match run_rm(c, &Target::Crun, "hb-crun-probe", &["true"]) {
        Ok(_) => Ok(()),
        Err(e) => {
            remove(c, "hb-crun-probe");
            let text = format!("{e:#}");
            // ctr's message ends with crun's own words; keep the last line that says something.
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text)
                .trim()
                .to_owned();
            Err(format!("crun fails under containerd here: {reason}"))
        }
    }
}

/// The probe binary on the host: `HULL_BENCH_PROBE`, beside this binary, or the checkout's build.
pub fn probe_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_BENCH_PROBE") {
        return p.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("hull-bench-probe")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull-bench-probe"),
    }
}
