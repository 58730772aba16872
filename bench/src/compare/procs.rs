//! Which host processes belong to one container, and what memory each holds (RSS and PSS from
//! `/proc/<pid>/smaps`, with the guest RAM memfd apart).
//!
//! A hull pod is its shim (`containerd-shim-hull-v2 … -id <id> … -address <containerd socket>`)
//! plus every process whose command line names the pod's directory `<run_dir>/<id>/` (VMM,
//! virtiofsd and its sandboxed child, vhost-device-vsock). A runc container is its shim plus the
//! shim's descendants. Guest RAM is a shared memfd that the VMM, virtiofsd and the vsock backend
//! all map; each page's PSS is split among them, so summing the memfd's PSS over the processes
//! counts every touched page once.

use std::collections::HashMap;
use std::path::Path;

use hull_tests::containerd::processes;

use super::schema::{Mapping, ProcMemory};

/// One process of a container, before its memory is read.
#[derive(Debug, Clone)]
pub struct PodProcess {
    /// Its pid.
    pub pid: u32,
    /// `shim`, `vmm`, `virtiofsd`, `vsock`, `container`, `other`.
    pub role: &'static str,
}

/// The processes of container `id` (roles: `shim`, `vmm`, `jailer`, `virtiofsd`, `vsock`,
/// `container`, `other`): `shim_name` is the shim binary's name, `socket` containerd's
/// address, `pod_dir` hull's pod directory (`None` for runc-like runtimes, whose container
/// processes are the shim's descendants).
pub fn pod_processes(
    shim_name: &str,
    socket: &Path,
    id: &str,
    pod_dir: Option<&Path>,
) -> Vec<PodProcess> {
    let all = processes();
    let socket = socket.display().to_string();
    let id_arg = format!(" -id {id} ");
    let mut found: Vec<PodProcess> = Vec::new();
    for (pid, cmdline) in &all {
        if cmdline.contains(shim_name) && cmdline.contains(&id_arg) && cmdline.contains(&socket) {
            found.push(PodProcess {
                pid: *pid,
                role: "shim",
            });
        }
    }
    match pod_dir {
        Some(dir) => {
            let marker = format!("{}/", dir.display());
            let mut pod: Vec<u32> = Vec::new();
            for (pid, cmdline) in &all {
                if cmdline.contains(&marker) {
                    pod.push(*pid);
                }
            }
            // A jailed VMM names only paths inside its jail: it is found as the jailer's child.
            let parents = parents();
            for (pid, cmdline) in &all {
                if pod.contains(pid) || descends_from(*pid, &pod, &parents) {
                    found.push(PodProcess {
                        pid: *pid,
                        role: role_of(cmdline),
                    });
                }
            }
        }
        None => {
            let parents = parents();
            let shims: Vec<u32> = found.iter().map(|p| p.pid).collect();
            for (pid, _) in &all {
                if descends_from(*pid, &shims, &parents) {
                    found.push(PodProcess {
                        pid: *pid,
                        role: "container",
                    });
                }
            }
        }
    }
    found
}

fn role_of(cmdline: &str) -> &'static str {
    let exe = cmdline.split(' ').next().unwrap_or_default();
    let name = exe.rsplit('/').next().unwrap_or(exe);
    if name.starts_with("qemu-system") || name == "hull-vmm" {
        "vmm"
    } else if name.starts_with("virtiofsd") {
        "virtiofsd"
    } else if name.starts_with("vhost-device-vsock") {
        "vsock"
    } else if name == "hull-jailer" {
        "jailer"
    } else {
        "other"
    }
}

/// pid → parent pid, for every process.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parent_of_stat(&s))
        {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The ppid field of a `/proc/<pid>/stat` line (after the parenthesised comm, which may hold
/// spaces).
fn parent_of_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn descends_from(pid: u32, ancestors: &[u32], parents: &HashMap<u32, u32>) -> bool {
    let mut cur = pid;
    for _ in 0..64 {
        match parents.get(&cur) {
            Some(&p) if ancestors.contains(&p) => return true,
            Some(&p) if p > 1 => cur = p,
            _ => return false,
        }
    }
    false
}

/// Memory figures from one `smaps` text: (RSS, PSS, guest RAM PSS), KiB.
pub fn smaps_totals(smaps: &str) -> (u64, u64, u64) {
    let (mut rss, mut pss, mut guest) = (0, 0, 0);
    let mut in_guest_ram = false;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            let path = line.split_ascii_whitespace().nth(5).unwrap_or_default();
            // A memfd, or a snapshot's memory file mapped privately (a restore without virtio-fs).
            in_guest_ram = path.starts_with("/memfd:") || path.ends_with("/memory");
            continue;
        }
        let mut kib = || -> u64 { words.next().and_then(|v| v.parse().ok()).unwrap_or(0) };
        match first {
            "Rss:" => rss += kib(),
            "Pss:" => {
                let v = kib();
                pss += v;
                if in_guest_ram {
                    guest += v;
                }
            }
            _ => {}
        }
    }
    (rss, pss, guest)
}

/// The `n` largest mappings of one `smaps` text by PSS, guest RAM left out.
pub fn top_mappings(smaps: &str, n: usize) -> Vec<Mapping> {
    let mut all: Vec<Mapping> = Vec::new();
    let mut current: Option<(String, bool)> = None;
    let mut size_kib = 0u64;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if !first.ends_with(':') {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            let path = cols.get(5..).map(|p| p.join(" ")).unwrap_or_default();
            let name = if path.is_empty() {
                "[anon]".to_owned()
            } else {
                path
            };
            let perms = cols.get(1).copied().unwrap_or("");
            current = Some((format!("{name} {perms}"), name.starts_with("/memfd:")));
            size_kib = 0;
            continue;
        }
        let value = words
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match (first, &current) {
            ("Size:", _) => size_kib = value,
            ("Pss:", Some((what, false))) if value > 0 => all.push(Mapping {
                what: format!("{what} {size_kib} KiB"),
                pss_kib: value,
            }),
            _ => {}
        }
    }
    all.sort_by_key(|m| std::cmp::Reverse(m.pss_kib));
    all.truncate(n);
    all
}

/// Reads the memory of `procs`; processes that are gone are left out.
pub fn measure(procs: &[PodProcess]) -> Vec<ProcMemory> {
    let mut out = Vec::new();
    for p in procs {
        let Ok(smaps) = std::fs::read_to_string(format!("/proc/{}/smaps", p.pid)) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let (rss_kib, pss_kib, guest_ram_pss_kib) = smaps_totals(&smaps);
        let top = if p.role == "vmm" {
            top_mappings(&smaps, 6)
        } else {
            Vec::new()
        };
        out.push(ProcMemory {
            role: p.role.to_owned(),
            comm,
            rss_kib,
            pss_kib,
            guest_ram_pss_kib,
            top_mappings: top,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_splits_guest_ram_from_the_rest() {
        let smaps = "\
7f0000000000-7f0008000000 rw-s 00000000 00:01 1234                       /memfd:mem (deleted)
Size:             131072 kB
Rss:               40000 kB
Pss:               30000 kB
55d000000000-55d000100000 r-xp 00000000 08:01 99                         /usr/bin/qemu-system-x86_64
Rss:                1000 kB
Pss:                 250 kB
7f1000000000-7f1000200000 rw-p 00000000 00:00 0
Rss:                2048 kB
Pss:                2048 kB
";
        assert_eq!(smaps_totals(smaps), (43048, 32298, 30000));
        let top = top_mappings(smaps, 1);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].what, "[anon] rw-p 0 KiB");
        assert_eq!(top[0].pss_kib, 2048);
    }

    #[test]
    fn a_restored_vms_private_snapshot_memory_is_guest_ram() {
        let smaps = "\
7f0000000000-7f0010000000 rw-p 00000000 fd:01 777                        /vm/snapshot/memory
Rss:                9000 kB
Pss:                4500 kB
55d000000000-55d000100000 r-xp 00000000 08:01 99                         /usr/bin/hull-vmm
Rss:                 800 kB
Pss:                 400 kB
";
        assert_eq!(smaps_totals(smaps), (9800, 4900, 4500));
    }

    #[test]
    fn roles_come_from_the_executable() {
        assert_eq!(role_of("/usr/bin/qemu-system-x86_64 -M microvm "), "vmm");
        assert_eq!(role_of("virtiofsd --socket-path x "), "virtiofsd");
        assert_eq!(
            role_of("/root/.cargo/bin/vhost-device-vsock --vm x "),
            "vsock"
        );
        assert_eq!(
            role_of("/work/target/hull/bin/hull-jailer --config x -- qemu "),
            "jailer"
        );
        assert_eq!(role_of("sleep 100 "), "other");
    }

    #[test]
    fn ppid_survives_spaces_in_comm() {
        assert_eq!(parent_of_stat("42 (a b) S 7 42 42 0"), Some(7));
    }
}
