//! What is kept of a pod VM that failed to start. Its run directory, where the VMM's output
//! (`vmm.log`) and the guest console (`console.log`) were, is removed with the failed pod, before
//! containerd even reports the error; so the shim copies their last lines into a per-pod file under
//! the configured `log_dir` (`/var/log/hull/<pod>.log`), names that file in the error, and keeps
//! only the newest [`KEEP`] such files. The same lines go to the shim's log, which containerd
//! keeps in its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::vm::output::rotated;
use crate::vm::process::{console_path, log_path};

/// Failed-start logs kept in `log_dir`; older ones are removed.
pub const KEEP: usize = 32;
/// Lines of the VMM's output kept.
pub const VMM_LINES: usize = 200;
/// Lines of the guest console kept.
pub const CONSOLE_LINES: usize = 200;
/// Longest line kept (the console is written by the guest, which may be hostile).
const MAX_LINE: usize = 512;

/// The last lines of a failed VM's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tails {
    /// The VMM's own output (its stderr), last [`VMM_LINES`] lines.
    pub vmm: String,
    /// The guest console, last [`CONSOLE_LINES`] lines.
    pub console: String,
    /// The logs of the VM's helpers (virtiofsd, the vsock backend) that have something, last
    /// [`HELPER_LINES`] lines each: `(file name, lines)`.
    pub helpers: Vec<(&'static str, String)>,
}

/// The helpers' logs in a run directory.
const HELPER_LOGS: [&str; 2] = ["virtiofsd.log", "vsock.log"];
/// Lines of each helper's log kept.
pub const HELPER_LINES: usize = 50;

impl Tails {
    /// Reads the logs of the VM whose run directory is `run_dir` (a full log's previous part,
    /// `<name>.1`, counts too).
    pub fn read(run_dir: &Path) -> Self {
        Self {
            vmm: last_lines(&log_path(run_dir), VMM_LINES),
            console: last_lines(&console_path(run_dir), CONSOLE_LINES),
            helpers: HELPER_LOGS
                .into_iter()
                .map(|name| (name, last_lines(&run_dir.join(name), HELPER_LINES)))
                .filter(|(_, text)| !text.trim().is_empty())
                .collect(),
        }
    }

    /// A few last lines of each, on one line, for an error message: `VMM: a | b; console: c`.
    /// A guest kernel's panic line stands for the console's end (which is its backtrace).
    pub fn summary(&self, lines: usize) -> String {
        let panic = self
            .console
            .lines()
            .find(|l| l.contains(super::fault::PANIC_MARKER))
            .map(str::trim);
        [("VMM", &self.vmm), ("console", &self.console)]
            .into_iter()
            .filter(|(_, text)| !text.trim().is_empty())
            .map(|(who, text)| match panic.filter(|_| who == "console") {
                Some(line) => format!("{who}: {line}"),
                None => format!("{who}: {}", last(text, lines).join(" | ")),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn last(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The last `n` lines of `path` (with its rotated part before it), each cut at [`MAX_LINE`].
fn last_lines(path: &Path, n: usize) -> String {
    let mut bytes = std::fs::read(rotated(path)).unwrap_or_default();
    bytes.extend(std::fs::read(path).unwrap_or_default());
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.trim_end_matches('\r');
            match l.char_indices().nth(MAX_LINE) {
                Some((at, _)) => format!("{}…", &l[..at]),
                None => l.to_owned(),
            }
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Keeps a failed start's record in `<log_dir>/<pod>.log` (replacing an older one of the same pod)
/// and removes all but the newest [`KEEP`] records. Returns the file.
pub fn keep(
    log_dir: &Path,
    pod: &str,
    error: &str,
    shape: &str,
    tails: &Tails,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(log_dir)?;
    let path = log_dir.join(format!("{pod}.log"));
    let partial = log_dir.join(format!(".{pod}.log.partial"));
    let when = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut file = std::fs::File::create(&partial)?;
    write!(
        file,
        "hull: pod {pod} failed to start (unix time {when})\n\
         error: {error}\n\
         VM: {shape}\n\
         --- VMM output (last {VMM_LINES} lines) ---\n{}\n\
         --- guest console (last {CONSOLE_LINES} lines) ---\n{}\n",
        tails.vmm, tails.console
    )?;
    for (name, text) in &tails.helpers {
        write!(file, "--- {name} (last {HELPER_LINES} lines) ---\n{text}\n")?;
    }
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    prune(log_dir, KEEP);
    Ok(path)
}

/// Removes all but the newest `keep` `*.log` files of `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort_by_key(|l| std::cmp::Reverse(l.0));
    for (_, old) in logs.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_read_both_parts_and_summarise() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(rotated(&log_path(dir.path())), "one\ntwo\n").unwrap();
        std::fs::write(log_path(dir.path()), "three\nfour\n\n").unwrap();
        let long = "x".repeat(2000);
        std::fs::write(console_path(dir.path()), format!("boot\n{long}\nhalt\n")).unwrap();
        std::fs::write(dir.path().join("vsock.log"), "vsock: bye\n").unwrap();
        let tails = Tails::read(dir.path());
        assert_eq!(tails.helpers, [("vsock.log", "vsock: bye".to_owned())]);
        assert_eq!(tails.vmm, "one\ntwo\nthree\nfour\n");
        assert!(tails.console.lines().nth(1).unwrap().chars().count() <= MAX_LINE + 1);
        assert_eq!(
            Tails {
                vmm: "a\nb\nc\n".into(),
                ..Tails::default()
            }
            .summary(2),
            "VMM: b | c"
        );
        assert_eq!(Tails::default().summary(3), "");
        let panicked = Tails {
            console: "boot\nKernel panic - not syncing: VFS: no root\n trace\n </TASK>\n".into(),
            ..Tails::default()
        };
        assert_eq!(
            panicked.summary(3),
            "console: Kernel panic - not syncing: VFS: no root"
        );
    }

    #[test]
    fn records_are_kept_replaced_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let tails = Tails {
            vmm: "qemu: failed".into(),
            console: "Linux version".into(),
            helpers: vec![("virtiofsd.log", "virtiofsd: gone".into())],
        };
        let path = keep(dir.path(), "p1", "boom", "1 vCPU, 256 MiB", &tails).unwrap();
        assert_eq!(path, dir.path().join("p1.log"));
        let text = std::fs::read_to_string(&path).unwrap();
        for part in [
            "pod p1",
            "error: boom",
            "qemu: failed",
            "Linux version",
            "256 MiB",
            "virtiofsd: gone",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        keep(dir.path(), "p1", "again", "", &tails).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("again"));
        for i in 0..KEEP + 5 {
            keep(dir.path(), &format!("q{i}"), "x", "", &tails).unwrap();
        }
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, KEEP);
    }
}
