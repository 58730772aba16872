//! The snapshot part of the hull-vmm suite, on any `/dev/kvm` (PVM included): the counting test
//! guest (`hull_vmm::testing::counter`) is snapshotted once through the control socket; then,
//! interleaved, boot → first console byte against restore → first console byte (each run a new
//! process with the same guest RAM); and what two VMs restored side by side from the one
//! snapshot hold of its memory file (resident, proportional, privately written).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use hull_vmm::snapshot::control;
use hull_vmm::testing::counter::counter_guest;
use serde::Serialize;

use crate::stats::Summary;

/// One restored VM's mapping of the snapshot's memory file.
#[derive(Debug, Serialize)]
pub struct MappingFigures {
    /// Resident, KiB.
    pub rss_kib: u64,
    /// Proportional (shared pages split between the VMs mapping them), KiB.
    pub pss_kib: u64,
    /// Pages this VM wrote (its private copies), KiB.
    pub private_dirty_kib: u64,
}

/// The figures.
#[derive(Debug, Serialize)]
pub struct SnapshotFigures {
    /// Guest RAM, MiB.
    pub guest_mib: u32,
    /// Control request → `OK snapshot` (pause, state, memory file written and synced), ms.
    pub snapshot_ms: f64,
    /// Spawn of a booting hull-vmm → the guest's first console byte, ms.
    pub boot_to_first_byte_ms: Summary,
    /// Spawn of `hull-vmm --restore` → the restored guest's next console byte (checks and the
    /// CRC-32 of all RAM included), ms.
    pub restore_to_first_byte_ms: Summary,
    /// Two VMs restored from the snapshot, running side by side.
    pub restored_pair: Vec<MappingFigures>,
}

fn spawn(bin: &Path, console: &Path, args: &[&str]) -> anyhow::Result<Child> {
    Command::new(bin)
        .args(args)
        .arg("--console")
        .arg(console)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Waits until `console` has a byte; the time since `start`.
fn first_byte(console: &Path, start: Instant) -> anyhow::Result<f64> {
    while start.elapsed() < Duration::from_secs(60) {
        if std::fs::metadata(console).is_ok_and(|m| m.len() > 0) {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    anyhow::bail!("no console output from hull-vmm in 60 s")
}

fn stop(child: &mut Child) {
    // SIGTERM (through kill(1)): hull-vmm turns it into a clean exit.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// The figures of the mapping of `file` in `smaps`.
fn mapping(smaps: &str, file: &str) -> MappingFigures {
    let mut m = MappingFigures {
        rss_kib: 0,
        pss_kib: 0,
        private_dirty_kib: 0,
    };
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let is_range = first.split_once('-').is_some_and(|(a, b)| {
            !a.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
        });
        if is_range {
            inside = line.ends_with(file);
            continue;
        }
        let kib = |l: &str| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        if inside {
            if line.starts_with("Rss:") {
                m.rss_kib += kib(line);
            } else if line.starts_with("Pss:") {
                m.pss_kib += kib(line);
            } else if line.starts_with("Private_Dirty:") {
                m.private_dirty_kib += kib(line);
            }
        }
    }
    m
}

/// Measures `runs` interleaved boots and restores of a `mib` MiB counting guest.
pub fn measure(bin: &Path, runs: usize, mib: u32) -> anyhow::Result<SnapshotFigures> {
    let dir = tempfile::tempdir()?;
    let kernel = dir.path().join("counter.elf");
    std::fs::write(&kernel, counter_guest(u64::MAX >> 1))?;
    let mem = mib.to_string();
    let boot_args = [
        "--kernel",
        kernel.to_str().context("path")?,
        "--mem-mib",
        &mem,
    ];
    let api = dir.path().join("api");
    let console = dir.path().join("original.console");
    let mut args = boot_args.to_vec();
    args.extend(["--api-sock", api.to_str().context("path")?]);
    let mut original = spawn(bin, &console, &args)?;
    first_byte(&console, Instant::now())?;
    let snap = dir.path().join("snap");
    let start = Instant::now();
    let answer = control::request(&api, &format!("snapshot {}", snap.display()));
    let snapshot_ms = start.elapsed().as_secs_f64() * 1000.0;
    stop(&mut original);
    let answer = answer.context("control socket")?;
    anyhow::ensure!(
        answer.starts_with("OK snapshot"),
        "snapshot failed: {answer}"
    );

    let restore_args = ["--restore", snap.to_str().context("path")?];
    let (mut boot, mut restore) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let series = [
            ("boot", &boot_args[..], &mut boot),
            ("restore", &restore_args[..], &mut restore),
        ];
        for (kind, args, samples) in series {
            let console = dir.path().join(format!("{kind}{i}.console"));
            let start = Instant::now();
            let mut child = spawn(bin, &console, args)?;
            let t = first_byte(&console, start);
            stop(&mut child);
            samples.push(t?);
        }
    }

    let mut pair = Vec::new();
    for n in 0..2 {
        let console = dir.path().join(format!("pair{n}.console"));
        pair.push(spawn(bin, &console, &restore_args)?);
        first_byte(&console, Instant::now())?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let memory = snap.join(hull_vmm::snapshot::format::MEMORY_FILE);
    let memory = memory.to_str().context("path")?;
    let restored_pair = pair
        .iter()
        .map(|c| std::fs::read_to_string(format!("/proc/{}/smaps", c.id())))
        .collect::<Result<Vec<_>, _>>()
        .map(|all| all.iter().map(|s| mapping(s, memory)).collect());
    pair.iter_mut().for_each(stop);
    eprintln!("hull-bench: vmm snapshot: {runs} boots and restores");
    Ok(SnapshotFigures {
        guest_mib: mib,
        snapshot_ms,
        boot_to_first_byte_ms: Summary::of(&boot).context("no samples")?,
        restore_to_first_byte_ms: Summary::of(&restore).context("no samples")?,
        restored_pair: restored_pair?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_mapping_is_found_in_smaps() {
        let smaps = "\
7f00-7f10 rw-p 00000000 fe:00 1 /tmp/x/snap/memory
Rss:                4096 kB
Pss:                2050 kB
Private_Dirty:         4 kB
7f20-7f30 rw-p 00000000 00:00 0
Rss:                  20 kB
Pss:                  20 kB
Private_Dirty:        20 kB
";
        let m = mapping(smaps, "/tmp/x/snap/memory");
        assert_eq!((m.rss_kib, m.pss_kib, m.private_dirty_kib), (4096, 2050, 4));
    }
}
