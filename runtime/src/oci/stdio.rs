//! The engine's stdio for a container or exec process, as the monitor passes it on: the pipes
//! (or files) the engine handed to `create`/`exec` as fds 0, 1 and 2 stay with the process that
//! stands for the container, and the shim's stdio copies open them again through
//! `/proc/<pid>/fd/<n>` (a pipe opened that way is the same pipe). `/dev/null` means no stream.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::control::StdioSpec;
use super::OciError;
use crate::shim::stdio::StdioPaths;

/// `/dev/null`'s device number (major 1, minor 3).
const DEV_NULL: u64 = (1 << 8) | 3;

/// The stdio of process `pid` (fds 0, 1, 2) as paths another process can open.
pub fn of_process(pid: u32, terminal: bool) -> Result<StdioSpec, OciError> {
    let path = |fd: u32| -> Result<String, OciError> {
        let p = format!("/proc/{pid}/fd/{fd}");
        let meta = match std::fs::metadata(&p) {
            Ok(m) => m,
            // Closed: no stream.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(OciError::Io(format!("cannot inspect {p}"), e)),
        };
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == DEV_NULL {
            return Ok(String::new());
        }
        if ft.is_socket() {
            return Err(OciError::InvalidArgument(format!(
                "fd {fd} is a socket: hull passes pipes, fifos and files to the guest"
            )));
        }
        if fd == 0 && !ft.is_fifo() && !terminal {
            // The stdin copy reads fifos and pipes only.
            return Ok(String::new());
        }
        Ok(p)
    };
    Ok(StdioSpec {
        stdin: path(0)?,
        stdout: path(1)?,
        stderr: path(2)?,
        terminal,
    })
}

/// The shim's form of `spec`.
pub fn paths(spec: &StdioSpec) -> StdioPaths {
    StdioPaths {
        stdin: spec.stdin.clone(),
        stdout: spec.stdout.clone(),
        stderr: spec.stderr.clone(),
        terminal: spec.terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_passed_and_dev_null_is_none() {
        // The test process's own fds: whatever they are, the paths name this process's fds.
        let me = std::process::id();
        if let Ok(spec) = of_process(me, false) {
            for p in [&spec.stdin, &spec.stdout, &spec.stderr] {
                assert!(
                    p.is_empty() || p.starts_with(&format!("/proc/{me}/fd/")),
                    "{p}"
                );
            }
        }
        let null = std::fs::File::open("/dev/null").unwrap();
        let meta = null.metadata().unwrap();
        assert_eq!(meta.rdev(), DEV_NULL);
    }
}
