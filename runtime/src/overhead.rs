//! The pod overhead `hull bench` measured on this host: what a pod's VM costs beyond its
//! containers (shim, VMM, virtiofsd, vsock backend, the guest's own kernel and agent), per
//! backend, with the RuntimeClass `overhead.podFixed` it derived. `hull bench` writes the record
//! to [`Measured::path`]; `hull check` prints it, so an operator writes the RuntimeClass from a
//! figure measured on their own hosts rather than a guess.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the last measurement lives unless `HULL_OVERHEAD_FILE` names another file.
pub const DEFAULT_PATH: &str = "/var/lib/hull/overhead.json";

/// One backend's measured overhead and the `podFixed` derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendOverhead {
    /// The backend as `hull bench` labels it (`hull (qemu-tcg)`, `hull (hull-vmm)`).
    pub backend: String,
    /// Host PSS of an idle pod's processes (guest RAM it touched included), KiB.
    pub measured_kib: u64,
    /// Of that, the guest RAM the VM touched (the shared memfd), KiB.
    pub guest_ram_kib: u64,
    /// What is added to the measurement, KiB.
    pub margin_kib: u64,
    /// Why that margin.
    pub margin_why: String,
    /// `overhead.podFixed.memory`, MiB.
    pub pod_fixed_memory_mib: u64,
    /// CPU of an idle pod's host processes, millicores.
    pub idle_cpu_millicores: u64,
    /// `overhead.podFixed.cpu`, millicores.
    pub pod_fixed_cpu_millicores: u64,
}

impl BackendOverhead {
    /// The RuntimeClass `overhead` block for this backend.
    pub fn runtime_class_yaml(&self) -> String {
        format!(
            "overhead:\n  podFixed:\n    memory: \"{}Mi\"\n    cpu: \"{}m\"\n",
            self.pod_fixed_memory_mib, self.pod_fixed_cpu_millicores
        )
    }
}

/// A `hull bench` run's measured overheads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// Guest RAM of the measured pods, MiB.
    pub guest_memory_mib: u32,
    /// Per backend.
    pub backends: Vec<BackendOverhead>,
}

/// Reading or writing the record failed.
#[derive(Debug, thiserror::Error)]
pub enum OverheadError {
    /// The file could not be read or written.
    #[error("cannot access {0}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The file is not a record.
    #[error("{0} is not a hull overhead record")]
    Parse(PathBuf, #[source] serde_json::Error),
}

impl Measured {
    /// `HULL_OVERHEAD_FILE`, or [`DEFAULT_PATH`].
    pub fn path() -> PathBuf {
        std::env::var_os("HULL_OVERHEAD_FILE").map_or_else(|| DEFAULT_PATH.into(), PathBuf::from)
    }

    /// Reads the record at `path`; `Ok(None)` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, OverheadError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| OverheadError::Parse(path.to_owned(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(OverheadError::Io(path.to_owned(), e)),
        }
    }

    /// Writes the record to `path` (its directory is created), whole or not at all.
    pub fn save(&self, path: &Path) -> Result<(), OverheadError> {
        let io = |e| OverheadError::Io(path.to_owned(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a record serializes");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// What `hull check` prints: one line per backend.
    pub fn summary(&self) -> Vec<String> {
        self.backends
            .iter()
            .map(|b| {
                format!(
                    "{}: podFixed memory {}Mi, cpu {}m (measured {} MiB PSS idle with {} MiB guest RAM, \
                     {}m CPU; margin {} MiB: {}) on {}",
                    b.backend,
                    b.pod_fixed_memory_mib,
                    b.pod_fixed_cpu_millicores,
                    b.measured_kib / 1024,
                    self.guest_memory_mib,
                    b.idle_cpu_millicores,
                    b.margin_kib / 1024,
                    b.margin_why,
                    self.date
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Measured {
        Measured {
            date: "2026-12-06T12:00:00Z".into(),
            guest_memory_mib: 128,
            backends: vec![BackendOverhead {
                backend: "hull (qemu-tcg)".into(),
                measured_kib: 100 * 1024,
                guest_ram_kib: 40 * 1024,
                margin_kib: 25 * 1024,
                margin_why: "growth".into(),
                pod_fixed_memory_mib: 128,
                idle_cpu_millicores: 20,
                pod_fixed_cpu_millicores: 50,
            }],
        }
    }

    #[test]
    fn a_record_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/overhead.json");
        assert_eq!(Measured::load(&path).unwrap(), None);
        record().save(&path).unwrap();
        assert_eq!(Measured::load(&path).unwrap(), Some(record()));
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(
            Measured::load(&path),
            Err(OverheadError::Parse(..))
        ));
    }

    #[test]
    fn the_summary_and_yaml_name_the_figures() {
        let r = record();
        let line = &r.summary()[0];
        assert!(line.contains("podFixed memory 128Mi, cpu 50m"), "{line}");
        assert!(line.contains("measured 100 MiB"), "{line}");
        assert_eq!(
            r.backends[0].runtime_class_yaml(),
            "overhead:\n  podFixed:\n    memory: \"128Mi\"\n    cpu: \"50m\"\n"
        );
    }
}
