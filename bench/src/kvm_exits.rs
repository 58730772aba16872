//! KVM exits of one VM by reason, read from the host kernel's per-VM debugfs directory
//! (`/sys/kernel/debug/kvm/<pid>-<fd>/`), the same way for every VMM.
//!
//! The global files of `/sys/kernel/debug/kvm` sum over the VMs that exist, so a VM's exits leave
//! them when it is destroyed: a before/after difference around a whole boot reads 0. The per-VM
//! directory holds the VM's own counters (its vCPUs' summed) but disappears with the VM. So a
//! watcher thread polls the directories that appear after it starts and keeps each one's last
//! reading; what it returns undercounts by at most the exits of the last poll interval before
//! the VM went away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const KVM_DEBUGFS: &str = "/sys/kernel/debug/kvm";
const POLL: Duration = Duration::from_millis(10);

/// Whether a debugfs file name is an exit counter: `exits`, each `*_exits`, `insn_emulation`
/// and `hypercalls`.
fn is_exit_counter(name: &str) -> bool {
    name == "exits" || name.ends_with("_exits") || name == "insn_emulation" || name == "hypercalls"
}

/// Whether a debugfs entry names a VM's own directory (`<pid>-<fd>`).
fn is_vm_dir(name: &str) -> bool {
    match name.split_once('-') {
        Some((pid, fd)) => {
            !pid.is_empty()
                && !fd.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && fd.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// The exit counters in `dir`, by reason. Empty if it cannot be read.
pub fn counters(dir: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !is_exit_counter(&name) {
                return None;
            }
            let n = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((name, n))
        })
        .collect()
}

fn vm_dirs() -> BTreeSet<String> {
    std::fs::read_dir(KVM_DEBUGFS)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_vm_dir(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Counts the exits of the VMs created while it runs.
pub struct ExitWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl ExitWatch {
    /// Starts watching; VMs that exist now are left out.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let before = vm_dirs();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut last: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            loop {
                let done = flag.load(Ordering::Relaxed);
                for vm in vm_dirs().difference(&before) {
                    let reading = counters(&Path::new(KVM_DEBUGFS).join(vm));
                    if !reading.is_empty() {
                        last.insert(vm.clone(), reading);
                    }
                }
                if done {
                    return last;
                }
                std::thread::sleep(POLL);
            }
        });
        Self { stop, thread }
    }

    /// Stops watching and returns the exits of every VM seen, summed by reason (a boot is
    /// one VM; QEMU's probe of the accelerator may add an empty one).
    pub fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let per_vm = self.thread.join().unwrap_or_default();
        let mut sum = BTreeMap::new();
        for reading in per_vm.values() {
            for (reason, n) in reading {
                *sum.entry(reason.clone()).or_insert(0) += n;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_directories_and_counters_are_told_apart() {
        assert!(is_vm_dir("1234-11"));
        assert!(!is_vm_dir("exits"));
        assert!(!is_vm_dir("io_exits"));
        assert!(!is_vm_dir("12-"));
        assert!(!is_vm_dir("-12"));
        assert!(!is_vm_dir("vcpu0"));
        assert!(is_exit_counter("exits"));
        assert!(is_exit_counter("mmio_exits"));
        assert!(is_exit_counter("hypercalls"));
        assert!(!is_exit_counter("halt_poll_success_ns"));
    }

    #[test]
    fn counters_are_read_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exits"), "269\n").unwrap();
        std::fs::write(dir.path().join("io_exits"), "12\n").unwrap();
        std::fs::write(dir.path().join("remote_tlb_flush"), "3\n").unwrap();
        let c = counters(dir.path());
        assert_eq!(c.get("exits"), Some(&269));
        assert_eq!(c.get("io_exits"), Some(&12));
        assert_eq!(c.len(), 2);
    }
}
