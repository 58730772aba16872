//! Host state end-to-end tests inspect and clean: processes and their command lines, uids, mount
//! points, shim sockets, signals.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The socket containerd-shim 0.11 serves a shim on: `/run/containerd/s/<sha256 of
/// "<containerd address>/<namespace>/<id>">`.
pub fn shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{id}", address.display());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hash = text.split_whitespace().next().unwrap_or_default();
    PathBuf::from("/run/containerd/s").join(hash)
}

pub(super) fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Every process's pid and command line (arguments joined by spaces, with a trailing space).
pub fn processes() -> Vec<(u32, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let mut text = String::new();
        for arg in raw.split(|b| *b == 0).filter(|a| !a.is_empty()) {
            text.push_str(&String::from_utf8_lossy(arg));
            text.push(' ');
        }
        all.push((pid, text));
    }
    all
}

/// The real uid of process `pid`.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Mount points under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every file under `dir`, at any depth (a missing directory has none).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all.extend(files_under(&p));
        } else {
            all.push(p);
        }
    }
    all
}

/// Removes `dir` and the empty directories under it, depth first (a cgroup tree an engine
/// left: only directories without processes go).
pub fn remove_empty_tree(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = remove_empty_tree(&e.path());
        }
    }
    std::fs::remove_dir(dir)
}

/// `sub/NAME` for every entry of each `dir/sub` (a missing directory has none): what an
/// engine left in its state directories.
pub fn entries_under(dir: &Path, subs: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for sub in subs {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    found
}

/// Waits (bounded) until `leftovers` returns nothing; panics with what it still returns.
pub fn assert_clean_within(bound: std::time::Duration, leftovers: impl Fn() -> Vec<String>) {
    let deadline = std::time::Instant::now() + bound;
    loop {
        let left = leftovers();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {left:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
