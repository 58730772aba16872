//! A host-set balloon target: the host asks a running pod's guest to give memory back (a host
//! under pressure; `hull pod balloon <pod> <MiB>`). Every pod VM with a balloon has a control
//! socket in `<run_dir>/control/` (mode 0700, owned by the VMM's uid when jailed, bound as the
//! jail's `/run/control`): QEMU's QMP monitor `qmp.sock`, or hull-vmm's `api.sock` (its
//! line protocol, `balloon MIB`). Either way the target is the MiB the guest should hold in its
//! balloon: 0 gives everything back. The guest's driver inflates towards it; with
//! deflate-on-OOM it takes pages back before its OOM killer would run (docs/balloon.md), so a
//! target is a request, never a way to kill a pod's workload.
//!
//! The socket is the VMM's: whatever it answers is parsed as untrusted text and only echoed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one exchange with the VMM may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer line read from the VMM.
const MAX_LINE: usize = 64 * 1024;

/// The directory of a VM's control socket (created by the backend when the VM has a balloon).
pub fn control_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("control")
}

/// QEMU's QMP socket of the VM in `run_dir`.
pub fn qmp_socket(run_dir: &Path) -> PathBuf {
    control_dir(run_dir).join("qmp.sock")
}

/// hull-vmm's control socket of the VM in `run_dir`.
pub fn api_socket(run_dir: &Path) -> PathBuf {
    control_dir(run_dir).join("api.sock")
}

/// Setting a balloon target failed.
#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    /// Neither control socket is there.
    #[error("no balloon control socket in {0} (is the pod running, and started with a balloon?)")]
    NoSocket(PathBuf),
    /// Talking to the VMM failed.
    #[error("cannot talk to the VMM at {0}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The VMM refused or answered something unexpected.
    #[error("the VMM refused: {0}")]
    Refused(String),
}

/// What the guest holds after the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalloonState {
    /// The target, MiB in the balloon.
    pub target_mib: u64,
    /// Guest RAM, MiB.
    pub guest_mib: u64,
    /// MiB the guest still has (its RAM less what its balloon holds), as the VMM knows it now
    /// (the driver inflates over the next seconds).
    pub actual_mib: u64,
}

/// Asks the guest of the VM in `run_dir` to hold `mib` MiB in its balloon.
pub fn set_target(run_dir: &Path, mib: u64) -> Result<BalloonState, BalloonError> {
    let qmp = qmp_socket(run_dir);
    if qmp.exists() {
        return qmp_set(&qmp, mib);
    }
    let api = api_socket(run_dir);
    if api.exists() {
        return api_set(&api, mib);
    }
    Err(BalloonError::NoSocket(control_dir(run_dir)))
}

fn connect(path: &Path) -> Result<(UnixStream, BufReader<UnixStream>), BalloonError> {
    let io = |e| BalloonError::Io(path.to_owned(), e);
    let s = UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let r = BufReader::new(s.try_clone().map_err(io)?);
    Ok((s, r))
}

fn read_line(r: &mut BufReader<UnixStream>, path: &Path) -> Result<String, BalloonError> {
    let mut line = String::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64)
        .read_line(&mut line)
        .map_err(|e| BalloonError::Io(path.to_owned(), e))?;
    if n == 0 {
        return Err(BalloonError::Refused(
            "the VMM closed the connection".into(),
        ));
    }
    Ok(line)
}

/// One QMP exchange: sends `cmd`, skips events, returns the `return` value.
fn qmp(
    w: &mut UnixStream,
    r: &mut BufReader<UnixStream>,
    path: &Path,
    cmd: serde_json::Value,
) -> Result<serde_json::Value, BalloonError> {
    let mut text = cmd.to_string();
    text.push('\n');
    w.write_all(text.as_bytes())
        .map_err(|e| BalloonError::Io(path.to_owned(), e))?;
    for _ in 0..64 {
        let line = read_line(r, path)?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|_| BalloonError::Refused(format!("not QMP: {}", clip(&line))))?;
        if let Some(ret) = v.get("return") {
            return Ok(ret.clone());
        }
        if let Some(e) = v.get("error") {
            return Err(BalloonError::Refused(clip(&e.to_string())));
        }
        // An asynchronous event (BALLOON_CHANGE, …): read on.
    }
    Err(BalloonError::Refused("no QMP answer".into()))
}

fn qmp_set(path: &Path, mib: u64) -> Result<BalloonState, BalloonError> {
    let (mut w, mut r) = connect(path)?;
    let greeting = read_line(&mut r, path)?;
    if !greeting.contains("\"QMP\"") {
        return Err(BalloonError::Refused(format!(
            "not a QMP greeting: {}",
            clip(&greeting)
        )));
    }
    qmp(
        &mut w,
        &mut r,
        path,
        serde_json::json!({"execute": "qmp_capabilities"}),
    )?;
    let size = qmp(
        &mut w,
        &mut r,
        path,
        serde_json::json!({"execute": "query-memory-size-summary"}),
    )?;
    let guest_bytes = size
        .get("base-memory")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            BalloonError::Refused(format!("no base-memory in {}", clip(&size.to_string())))
        })?;
    let guest_mib = guest_bytes >> 20;
    if mib > guest_mib {
        return Err(BalloonError::Refused(format!(
            "balloon {mib} MiB is more than the guest's {guest_mib} MiB"
        )));
    }
    // QMP's `balloon` takes the size the guest should be left with, in bytes.
    let value = (guest_mib - mib) << 20;
    qmp(
        &mut w,
        &mut r,
        path,
        serde_json::json!({"execute": "balloon", "arguments": {"value": value}}),
    )?;
    let now = qmp(
        &mut w,
        &mut r,
        path,
        serde_json::json!({"execute": "query-balloon"}),
    )?;
    let actual = now
        .get("actual")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(guest_bytes);
    Ok(BalloonState {
        target_mib: mib,
        guest_mib,
        actual_mib: actual >> 20,
    })
}

fn api_set(path: &Path, mib: u64) -> Result<BalloonState, BalloonError> {
    let (mut w, mut r) = connect(path)?;
    w.write_all(format!("balloon {mib}\n").as_bytes())
        .map_err(|e| BalloonError::Io(path.to_owned(), e))?;
    let line = read_line(&mut r, path)?;
    parse_api_answer(&line, mib)
}

/// hull-vmm's answer: `OK balloon target=MIB actual=MIB guest=MIB` or `ERR reason`.
fn parse_api_answer(line: &str, mib: u64) -> Result<BalloonState, BalloonError> {
    let line = line.trim_end();
    let Some(rest) = line.strip_prefix("OK balloon ") else {
        return Err(BalloonError::Refused(clip(
            line.strip_prefix("ERR ").unwrap_or(line),
        )));
    };
    let field = |name: &str| -> Option<u64> {
        rest.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    match (field("target"), field("actual"), field("guest")) {
        (Some(t), Some(a), Some(g)) if t == mib => Ok(BalloonState {
            target_mib: t,
            guest_mib: g,
            actual_mib: g.saturating_sub(a),
        }),
        _ => Err(BalloonError::Refused(format!(
            "unexpected answer {}",
            clip(line)
        ))),
    }
}

/// At most 200 characters of what the VMM said.
fn clip(s: &str) -> String {
    s.trim().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_live_in_the_control_dir() {
        let d = Path::new("/run/hull/p");
        assert_eq!(qmp_socket(d), Path::new("/run/hull/p/control/qmp.sock"));
        assert_eq!(api_socket(d), Path::new("/run/hull/p/control/api.sock"));
    }

    #[test]
    fn hull_vmm_answers_parse_and_refusals_are_named() {
        assert_eq!(
            parse_api_answer("OK balloon target=64 actual=16 guest=256\n", 64).unwrap(),
            BalloonState {
                target_mib: 64,
                guest_mib: 256,
                actual_mib: 240
            }
        );
        let e = parse_api_answer("ERR this VM has no balloon (--balloon)\n", 64).unwrap_err();
        assert!(e.to_string().contains("no balloon"), "{e}");
        assert!(parse_api_answer("OK balloon target=65 actual=0 guest=256", 64).is_err());
        assert!(parse_api_answer("OK paused", 64).is_err());
    }

    #[test]
    fn a_missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = set_target(dir.path(), 1).unwrap_err();
        assert!(matches!(e, BalloonError::NoSocket(_)), "{e}");
    }
}
