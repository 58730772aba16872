//! A container's state directory, `<root>/<id>`: the record the monitor keeps (`state.json`),
//! the monitor's control socket and log. Creating the directory is what claims an id, so two
//! `create`s of one id cannot both win. The status a reader sees comes from the record and
//! from whether the monitor still lives: a monitor that is gone means a stopped container, however
//! it ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::os::unix::fs::DirBuilderExt;

use serde::{Deserialize, Serialize};

use super::{OciError, OCI_VERSION};

/// The record's file name.
const RECORD: &str = "state.json";
/// The control socket's file name (short: the whole path must fit a `sockaddr_un`).
pub const SOCKET: &str = "ctl";
/// The monitor's log.
pub const MONITOR_LOG: &str = "monitor.log";
/// What a monitor that failed to create the container leaves for `create` to print.
pub const CREATE_ERROR: &str = "create-error";

/// A container's status, as the OCI runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The monitor is booting the VM and creating the container.
    Creating,
    /// Created, held at the start barrier.
    Created,
    /// The process runs.
    Running,
    /// Frozen.
    Paused,
    /// The process exited (or never will run).
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What the monitor records about its container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Container id.
    pub id: String,
    /// The bundle (absolute).
    pub bundle: PathBuf,
    /// The monitor's pid: the container's host pid.
    pub pid: u32,
    /// The monitor's start time (`/proc/<pid>/stat` field 22), so a reused pid is not taken
    /// for it.
    pub pid_start: u64,
    /// The status the monitor last recorded.
    pub status: Status,
    /// The exit status, once stopped.
    pub exit_status: Option<i32>,
    /// When it was created (RFC 3339, UTC).
    pub created: String,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The pod's run directory (VM sockets, share), for clean-up after a dead monitor.
    pub run_dir: PathBuf,
}

/// The OCI state JSON (`hull state`), in runc's shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    /// The spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Status.
    pub status: Status,
    /// Host pid (0 once stopped).
    pub pid: u32,
    /// Bundle.
    pub bundle: PathBuf,
    /// The bundle's rootfs.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: String,
    /// Owner (runc: empty for root).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One container's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// The id.
    pub id: String,
}

impl StateDir {
    /// The directory of `id` under `root` (`id` is checked: it becomes a path component).
    pub fn new(root: &Path, id: &str) -> Result<Self, OciError> {
        hull_protocol::limits::check_id("container id", id)
            .map_err(|e| OciError::InvalidArgument(format!("{e}")))?;
        Ok(Self {
            dir: root.join(id),
            id: id.to_owned(),
        })
    }

    /// Claims the id: creates the directory, failing when it exists.
    pub fn claim(&self) -> Result<(), OciError> {
        if let Some(root) = self.dir.parent() {
            std::fs::create_dir_all(root)
                .map_err(OciError::io(format!("cannot create {}", root.display())))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            // Root's alone: the control socket in it drives the container.
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(OciError::Exists(self.id.clone()))
            }
            Err(e) => Err(OciError::Io(
                format!("cannot create {}", self.dir.display()),
                e,
            )),
        }
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET)
    }

    /// The record, or `NotFound` when there is none.
    pub fn read(&self) -> Result<Record, OciError> {
        let path = self.dir.join(RECORD);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotFound(self.id.clone()))
            }
            Err(e) => return Err(OciError::Io(format!("cannot read {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map_err(|e| {
            OciError::Io(
                format!("bad state file {}", path.display()),
                std::io::Error::other(e),
            )
        })
    }

    /// Writes the record (atomically: readers see the old or the new one).
    pub fn write(&self, record: &Record) -> Result<(), OciError> {
        let path = self.dir.join(RECORD);
        let tmp = self.dir.join(format!("{RECORD}.tmp"));
        let json = serde_json::to_vec(record).map_err(|e| {
            OciError::Io("cannot encode the state".into(), std::io::Error::other(e))
        })?;
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(OciError::io(format!("cannot write {}", path.display())))
    }

    /// The record with the status a reader should believe: stopped once the monitor is gone.
    pub fn current(&self) -> Result<Record, OciError> {
        let mut record = self.read()?;
        if record.status != Status::Stopped && !alive(record.pid, record.pid_start) {
            record.status = Status::Stopped;
        }
        Ok(record)
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<(), OciError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(OciError::Io(
                format!("cannot remove {}", self.dir.display()),
                e,
            )),
        }
    }
}

impl Record {
    /// The OCI state JSON of this record.
    pub fn oci_state(&self) -> OciState {
        OciState {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            status: self.status,
            pid: if self.status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: self.bundle.clone(),
            rootfs: self.bundle.join("rootfs"),
            created: self.created.clone(),
            owner: String::new(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Every container id under `root`.
pub fn ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(RECORD).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}

/// The start time of process `pid` (clock ticks after boot), `None` when it does not exist.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` still is the process that started at `start` (and not a zombie).
pub fn alive(pid: u32, start: u64) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true);
    !zombie && start_time(pid) == Some(start)
}

/// Now, RFC 3339 in UTC with nanoseconds (what runc's state says).
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 in UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + std::time::Duration::new(1_709_251_199, 5);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000000005Z");
    }

    #[test]
    fn ids_are_claimed_once_and_a_dead_monitor_means_stopped() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::new(root.path(), "c1").unwrap();
        assert!(matches!(dir.read(), Err(OciError::NotFound(_))));
        dir.claim().unwrap();
        assert!(matches!(dir.claim(), Err(OciError::Exists(_))));
        assert!(StateDir::new(root.path(), "../x").is_err());
        let me = std::process::id();
        let mut record = Record {
            id: "c1".into(),
            bundle: "/b".into(),
            pid: me,
            pid_start: start_time(me).unwrap(),
            status: Status::Running,
            exit_status: None,
            created: rfc3339_now(),
            annotations: BTreeMap::new(),
            run_dir: "/r".into(),
        };
        dir.write(&record).unwrap();
        assert_eq!(dir.current().unwrap().status, Status::Running);
        assert_eq!(ids(root.path()), vec!["c1".to_owned()]);
        record.pid_start += 1;
        dir.write(&record).unwrap();
        let current = dir.current().unwrap();
        assert_eq!(current.status, Status::Stopped);
        assert_eq!(current.oci_state().pid, 0);
        dir.remove().unwrap();
        assert!(ids(root.path()).is_empty());
    }
}
