//! A container's OCI runtime spec as the shim holds it: read once from the bundle at `Create`
//! into `oci_spec::runtime::Spec`, read and edited through its typed accessors (sizing,
//! placement, namespaces, `/dev/shm`, the root filesystem), and written once for the agent.
//!
//! A `config.json` may carry fields `oci_spec` does not model (a newer runtime-spec, a vendor's
//! extension). The typed value would drop them, so [`BundleSpec`] keeps what the typed round trip
//! lost and puts it back when it writes the spec ([`BundleSpec::to_json`]): a field the shim
//! never saw reaches the agent as containerd wrote it. A field the shim sets is never overwritten
//! by a kept one. Inside a list the shim shortened (bind mounts dropped without a share) the
//! positions no longer match, and what was kept below that list is dropped, with a debug line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{Map, Value};

/// A bundle's `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file cannot be read.
    #[error(transparent)]
    Read(std::io::Error),
    /// The file is not JSON, or not an OCI runtime spec (serde's words say where).
    #[error(transparent)]
    Parse(serde_json::Error),
    /// The spec has no `process`.
    #[error("not an OCI runtime spec (no process object)")]
    NoProcess,
}

/// A container's spec: the typed value, and what it does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleSpec {
    spec: Spec,
    unmodelled: Option<Lost>,
}

impl BundleSpec {
    /// Reads `<bundle>/config.json`; returns the file's path with the error.
    pub fn read(bundle: &Path) -> Result<Self, (PathBuf, SpecError)> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|e| (path.clone(), SpecError::Read(e)))?;
        Self::parse(&text).map_err(|e| (path, e))
    }

    /// Parses a spec; it must have a `process`.
    pub fn parse(json: &[u8]) -> Result<Self, SpecError> {
        let original: Value = serde_json::from_slice(json).map_err(SpecError::Parse)?;
        // Parsed from the text, not from `original`: serde_json's errors then say line and column.
        let spec: Spec = serde_json::from_slice(json).map_err(SpecError::Parse)?;
        if spec.process().is_none() {
            return Err(SpecError::NoProcess);
        }
        let kept = serde_json::to_value(&spec).map_err(SpecError::Parse)?;
        Ok(Self {
            unmodelled: lost(&original, &kept),
            spec,
        })
    }

    /// The typed spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The typed spec, to edit.
    pub fn spec_mut(&mut self) -> &mut Spec {
        &mut self.spec
    }

    /// The annotation `name`, if set.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        annotation(&self.spec, name)
    }

    /// The spec as JSON for the agent, with the fields `oci_spec` does not model put back.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = serde_json::to_value(&self.spec)?;
        if let Some(lost) = &self.unmodelled {
            restore(lost, &mut out, "");
        }
        serde_json::to_vec(&out)
    }
}

/// The two fields of a bundle's spec the shim binary reads before a pod exists: `start` groups a
/// container with its sandbox, `delete` empties a dead pod's host cgroup. Read alone, so a spec
/// that [`BundleSpec::parse`] would refuse still finds its pod, and the refusal comes from
/// `Create`, whose error containerd shows.
#[derive(Debug, Default, serde::Deserialize)]
pub struct BundleHints {
    #[serde(default)]
    annotations: HintAnnotations,
    #[serde(default)]
    linux: HintLinux,
}

#[derive(Debug, Default, serde::Deserialize)]
struct HintAnnotations {
    #[serde(rename = "io.kubernetes.cri.sandbox-id")]
    sandbox_id: Option<String>,
    /// CRI-O's name for the same (see `cri_o`).
    #[serde(rename = "io.kubernetes.cri-o.SandboxID")]
    cri_o_sandbox_id: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct HintLinux {
    #[serde(rename = "cgroupsPath")]
    cgroups_path: Option<String>,
}

impl BundleHints {
    /// The hints of `<bundle>/config.json`; `None` when it is unreadable or its fields are not
    /// strings.
    pub fn read(bundle: &Path) -> Option<Self> {
        let text = std::fs::read(bundle.join("config.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The sandbox the container belongs to (CRI's `io.kubernetes.cri.sandbox-id`, else
    /// CRI-O's `io.kubernetes.cri-o.SandboxID`).
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations
            .sandbox_id
            .as_deref()
            .or(self.annotations.cri_o_sandbox_id.as_deref())
    }

    /// The host cgroup the spec names (`linux.cgroupsPath`).
    pub fn cgroups_path(&self) -> Option<&str> {
        self.linux.cgroups_path.as_deref()
    }
}

/// Annotation `name` of `spec`, if set.
pub fn annotation<'a>(spec: &'a Spec, name: &str) -> Option<&'a str> {
    spec.annotations().as_ref()?.get(name).map(String::as_str)
}

/// What a typed round trip dropped from a JSON value.
#[derive(Debug, Clone, PartialEq)]
enum Lost {
    /// From an object: keys dropped with their values, and what was dropped below kept keys.
    Fields {
        dropped: Map<String, Value>,
        below: BTreeMap<String, Lost>,
    },
    /// From a list of `len` items: what was dropped below each item.
    Items {
        len: usize,
        below: BTreeMap<usize, Lost>,
    },
}

/// What `original` has that `kept` (its typed round trip) lacks; `None` when nothing.
fn lost(original: &Value, kept: &Value) -> Option<Lost> {
    match (original, kept) {
        (Value::Object(original), Value::Object(kept)) => {
            let mut dropped = Map::new();
            let mut below = BTreeMap::new();
            for (key, value) in original {
                match kept.get(key) {
                    None => {
                        dropped.insert(key.clone(), value.clone());
                    }
                    Some(kept) => {
                        if let Some(l) = lost(value, kept) {
                            below.insert(key.clone(), l);
                        }
                    }
                }
            }
            (!dropped.is_empty() || !below.is_empty()).then_some(Lost::Fields { dropped, below })
        }
        (Value::Array(original), Value::Array(kept)) if original.len() == kept.len() => {
            let below: BTreeMap<usize, Lost> = original
                .iter()
                .zip(kept)
                .enumerate()
                .filter_map(|(i, (o, k))| Some((i, lost(o, k)?)))
                .collect();
            (!below.is_empty()).then_some(Lost::Items {
                len: original.len(),
                below,
            })
        }
        _ => None,
    }
}

/// Puts what [`lost`] found back into `out`, never over a value `out` has; `at` names the place
/// for the log.
fn restore(lost: &Lost, out: &mut Value, at: &str) {
    match (lost, out) {
        (Lost::Fields { dropped, below }, Value::Object(out)) => {
            for (key, value) in dropped {
                out.entry(key.clone()).or_insert_with(|| value.clone());
            }
            for (key, lost) in below {
                if let Some(value) = out.get_mut(key) {
                    restore(lost, value, &format!("{at}.{key}"));
                }
            }
        }
        (Lost::Items { len, below }, Value::Array(out)) if out.len() == *len => {
            for (i, lost) in below {
                restore(lost, &mut out[*i], &format!("{at}[{i}]"));
            }
        }
        _ => tracing::debug!(
            "fields oci_spec does not model under {at} are dropped: the shim changed its shape"
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"}
        })
    }

    fn parse(v: &Value) -> BundleSpec {
        BundleSpec::parse(&serde_json::to_vec(v).unwrap()).unwrap()
    }

    fn json_of(s: &BundleSpec) -> Value {
        serde_json::from_slice(&s.to_json().unwrap()).unwrap()
    }

    #[test]
    fn bad_specs_say_why() {
        let e = BundleSpec::parse(b"{not json").unwrap_err().to_string();
        assert!(e.contains("key must be a string"), "{e}");
        let e = BundleSpec::parse(b"{}").unwrap_err().to_string();
        assert!(e.contains("no process object"), "{e}");
        let e = BundleSpec::parse(br#"{"process": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `user`"), "{e}");
        let mut bad = minimal();
        bad["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]);
        let e = BundleSpec::parse(bad.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("RLIMIT_BOGUS") && e.contains("line 1"), "{e}");
        let mut bad = minimal();
        bad["annotations"] = json!({"io.hull.memory_mib": 512});
        let e = BundleSpec::parse(bad.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("512") && e.contains("expected a string"), "{e}");
        parse(&minimal());
    }

    #[test]
    fn a_modelled_spec_round_trips_unchanged() {
        let mut v = minimal();
        v["annotations"] = json!({"a": "b"});
        v["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
        v["linux"] = json!({"namespaces": [{"type": "pid"}], "cgroupsPath": "/hull/x"});
        let s = parse(&v);
        assert_eq!(s.unmodelled, None);
        assert_eq!(json_of(&s), v);
        assert_eq!(s.annotation("a"), Some("b"));
        assert_eq!(s.annotation("b"), None);
    }

    #[test]
    fn fields_oci_spec_does_not_model_survive_the_round_trip_and_edits() {
        let mut v = minimal();
        v["io.example.top"] = json!({"deep": [1, 2]});
        v["process"]["io.example.process"] = json!("p");
        v["linux"] = json!({
            "namespaces": [
                {"type": "pid", "io.example.ns": true},
                {"type": "network", "path": "/var/run/netns/x"}
            ],
            "io.example.linux": null
        });
        v["mounts"] = json!([
            {"destination": "/a", "type": "bind", "source": "/x", "io.example.mount": 1}
        ]);
        let mut s = parse(&v);
        assert_ne!(s.unmodelled, None);
        assert_eq!(json_of(&s), v, "nothing edited: the same document");
        // Edits through the typed value: the unmodelled fields stay beside them.
        let spec = s.spec_mut();
        let mut mounts = spec.mounts().clone().unwrap();
        mounts[0].set_source(Some("/guest".into()));
        spec.set_mounts(Some(mounts));
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap();
        namespaces[1].set_path(None);
        linux.set_namespaces(Some(namespaces));
        let out = json_of(&s);
        assert_eq!(out["io.example.top"], json!({"deep": [1, 2]}));
        assert_eq!(out["process"]["io.example.process"], "p");
        assert_eq!(out["linux"]["io.example.linux"], Value::Null);
        assert_eq!(
            out["linux"]["namespaces"],
            json!([{"type": "pid", "io.example.ns": true}, {"type": "network"}]),
            "a path the shim removed stays removed"
        );
        assert_eq!(
            out["mounts"],
            json!([{"destination": "/a", "type": "bind", "source": "/guest",
                "io.example.mount": 1}])
        );
        // A list the shim shortened loses what was kept below it, nothing else.
        s.spec_mut().set_mounts(Some(Vec::new()));
        let out = json_of(&s);
        assert_eq!(out["mounts"], json!([]));
        assert_eq!(out["process"]["io.example.process"], "p");
    }

    #[test]
    fn a_kept_field_never_overwrites_one_the_shim_set() {
        let mut s = parse(&minimal());
        s.unmodelled = Some(Lost::Fields {
            dropped: [("hostname".to_owned(), json!("old"))]
                .into_iter()
                .collect(),
            below: BTreeMap::new(),
        });
        s.spec_mut().set_hostname(Some("new".into()));
        assert_eq!(json_of(&s)["hostname"], "new");
    }

    #[test]
    fn hints_are_read_from_what_the_full_parse_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        assert!(BundleHints::read(dir.path()).is_none());
        let write = |v: Value| std::fs::write(dir.path().join("config.json"), v.to_string());
        write(json!({
            "annotations": {crate::shim::SANDBOX_ID_ANNOTATION: "pod1", "n": 5},
            "linux": {"cgroupsPath": "/kubepods/pod1", "namespaces": "bogus"}
        }))
        .unwrap();
        let hints = BundleHints::read(dir.path()).unwrap();
        assert_eq!(hints.sandbox_id(), Some("pod1"));
        assert_eq!(hints.cgroups_path(), Some("/kubepods/pod1"));
        write(json!({"process": {}})).unwrap();
        let hints = BundleHints::read(dir.path()).unwrap();
        assert_eq!((hints.sandbox_id(), hints.cgroups_path()), (None, None));
        // CRI-O's sandbox annotation, when containerd's is not there.
        write(json!({"annotations": {crate::shim::cri_o::SANDBOX_ID: "pod2"}})).unwrap();
        let hints = BundleHints::read(dir.path()).unwrap();
        assert_eq!(hints.sandbox_id(), Some("pod2"));
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, e) = BundleSpec::read(dir.path()).unwrap_err();
        assert_eq!(path, dir.path().join("config.json"));
        assert!(matches!(e, SpecError::Read(_)), "{e}");
        std::fs::write(&path, serde_json::to_vec(&minimal()).unwrap()).unwrap();
        BundleSpec::read(dir.path()).unwrap();
    }
}
