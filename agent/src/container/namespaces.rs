//! Which namespaces a container gets: the spec's list turned into `unshare` flags and the
//! namespaces to join by path.
//!
//! Rules we enforce: each type at most once; the mount namespace must be new (the container's
//! rootfs is pivoted inside it; sharing the agent's would move the agent's root); id mappings only
//! with a new user namespace; `timeOffsets` only with a new time namespace, for the `monotonic`
//! and `boottime` clocks.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A namespace list we cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A type appears twice.
    #[error("namespace {0} listed twice")]
    Duplicate(&'static str),
    /// No new mount namespace.
    #[error("the container needs a new mount namespace (joining one or sharing the agent's is not supported)")]
    MountNotNew,
    /// Id mappings without a new user namespace.
    #[error("uid/gid mappings need a new user namespace")]
    MappingsWithoutUserns,
    /// A new user namespace without mappings.
    #[error("a new user namespace needs uid and gid mappings")]
    UsernsWithoutMappings,
    /// `linux.timeOffsets` without a new time namespace, or for another clock.
    #[error(
        "linux.timeOffsets needs a new time namespace and applies to monotonic and boottime only"
    )]
    TimeOffsets,
    /// A namespace path cannot be opened.
    #[error("cannot open namespace {path}")]
    Open {
        /// The path from the spec.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The `/proc/<pid>/ns/` name of a namespace type.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// The clone flag of a namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME is not in nix's CloneFlags.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// One namespace of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsEntry {
    /// Its type.
    pub typ: LinuxNamespaceType,
    /// `Some` to join an existing one, `None` for a new one.
    pub path: Option<PathBuf>,
}

/// The container's namespaces, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespacePlan {
    /// In spec order.
    pub entries: Vec<NsEntry>,
    /// What to write to `/proc/self/timens_offsets` after creating the time namespace (empty
    /// when there are no offsets).
    pub time_offsets: String,
}

impl NamespacePlan {
    /// Validates the spec's namespace list.
    pub fn from_spec(spec: &Spec) -> Result<Self, NamespaceError> {
        let linux = spec.linux().as_ref();
        let mut entries: Vec<NsEntry> = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            if entries.iter().any(|e| e.typ == ns.typ()) {
                return Err(NamespaceError::Duplicate(proc_name(ns.typ())));
            }
            entries.push(NsEntry {
                typ: ns.typ(),
                path: ns.path().clone().filter(|p| !p.as_os_str().is_empty()),
            });
        }
        let mut plan = NamespacePlan {
            entries,
            time_offsets: String::new(),
        };
        if !plan.is_new(LinuxNamespaceType::Mount) {
            return Err(NamespaceError::MountNotNew);
        }
        let has_maps = linux.is_some_and(|l| {
            l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        });
        let full_maps = linux.is_some_and(|l| {
            l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
                && l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        });
        if plan.is_new(LinuxNamespaceType::User) {
            if !full_maps {
                return Err(NamespaceError::UsernsWithoutMappings);
            }
        } else if has_maps {
            return Err(NamespaceError::MappingsWithoutUserns);
        }
        let offsets = linux.and_then(|l| l.time_offsets().as_ref());
        if let Some(offsets) = offsets.filter(|o| !o.is_empty()) {
            if !plan.is_new(LinuxNamespaceType::Time) {
                return Err(NamespaceError::TimeOffsets);
            }
            let mut clocks: Vec<_> = offsets.iter().collect();
            clocks.sort_by_key(|(k, _)| k.as_str());
            for (clock, o) in clocks {
                if clock != "monotonic" && clock != "boottime" {
                    return Err(NamespaceError::TimeOffsets);
                }
                plan.time_offsets.push_str(&format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                ));
            }
        }
        Ok(plan)
    }

    /// Whether the type is listed at all (new or joined).
    pub fn contains(&self, typ: LinuxNamespaceType) -> bool {
        self.entries.iter().any(|e| e.typ == typ)
    }

    /// Whether the type is listed without a path (a new namespace).
    pub fn is_new(&self, typ: LinuxNamespaceType) -> bool {
        self.entries
            .iter()
            .any(|e| e.typ == typ && e.path.is_none())
    }

    /// The flags for `unshare(2)`: every new namespace.
    pub fn unshare_flags(&self) -> CloneFlags {
        self.entries
            .iter()
            .filter(|e| e.path.is_none())
            .fold(CloneFlags::empty(), |f, e| f | clone_flag(e.typ))
    }

    /// The namespaces to join, in joining order: the user namespace first (it decides what may
    /// join the rest).
    pub fn joins(&self) -> Vec<&NsEntry> {
        let mut joined: Vec<&NsEntry> = self.entries.iter().filter(|e| e.path.is_some()).collect();
        joined.sort_by_key(|e| e.typ != LinuxNamespaceType::User);
        joined
    }

    /// Opens the namespaces to join, in [`NamespacePlan::joins`] order.
    pub fn open_joins(&self) -> Result<Vec<(OwnedFd, CloneFlags)>, NamespaceError> {
        self.joins()
            .into_iter()
            .map(|e| {
                let path = e.path.as_ref().expect("filtered on Some");
                File::open(path)
                    .map(|f| (OwnedFd::from(f), clone_flag(e.typ)))
                    .map_err(|source| NamespaceError::Open {
                        path: path.clone(),
                        source,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_and_joined_namespaces() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[
            {"type":"pid"},{"type":"mount"},{"type":"network","path":"/proc/self/ns/net"},
            {"type":"uts"},{"type":"ipc"},{"type":"cgroup"}]}}"#,
        );
        let p = NamespacePlan::from_spec(&s).unwrap();
        let f = p.unshare_flags();
        assert!(f.contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS));
        assert!(f.contains(CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC));
        assert!(f.contains(CloneFlags::CLONE_NEWCGROUP));
        assert!(!f.contains(CloneFlags::CLONE_NEWNET));
        assert!(p.contains(LinuxNamespaceType::Network));
        assert!(!p.is_new(LinuxNamespaceType::Network));
        let joins = p.open_joins().unwrap();
        assert_eq!(joins.len(), 1);
        assert_eq!(joins[0].1, CloneFlags::CLONE_NEWNET);
    }

    #[test]
    fn rejects_what_we_cannot_honour() {
        let dup =
            spec(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"},{"type":"pid"}]}}"#);
        assert!(matches!(
            NamespacePlan::from_spec(&dup),
            Err(NamespaceError::Duplicate("pid"))
        ));
        let no_mnt = spec(r#"{"linux":{"namespaces":[{"type":"pid"}]}}"#);
        assert!(matches!(
            NamespacePlan::from_spec(&no_mnt),
            Err(NamespaceError::MountNotNew)
        ));
        let joined_mnt =
            spec(r#"{"linux":{"namespaces":[{"type":"mount","path":"/proc/1/ns/mnt"}]}}"#);
        assert!(matches!(
            NamespacePlan::from_spec(&joined_mnt),
            Err(NamespaceError::MountNotNew)
        ));
        let user_nomap = spec(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"user"}]}}"#);
        assert!(matches!(
            NamespacePlan::from_spec(&user_nomap),
            Err(NamespaceError::UsernsWithoutMappings)
        ));
        let map_nouser = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"}],
            "uidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}"#,
        );
        assert!(matches!(
            NamespacePlan::from_spec(&map_nouser),
            Err(NamespaceError::MappingsWithoutUserns)
        ));
        let bad_path = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"network","path":"/nonexistent/ns"}]}}"#,
        );
        let p = NamespacePlan::from_spec(&bad_path).unwrap();
        assert!(matches!(p.open_joins(), Err(NamespaceError::Open { .. })));
    }

    #[test]
    fn time_offsets() {
        let s = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"time"}],
               "timeOffsets":{"monotonic":{"secs":86400},"boottime":{"secs":5,"nanosecs":7}}}}"#,
        );
        let p = NamespacePlan::from_spec(&s).unwrap();
        assert_eq!(p.time_offsets, "boottime 5 7\nmonotonic 86400 0\n");
        let no_ns = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"}],"timeOffsets":{"monotonic":{"secs":1}}}}"#,
        );
        assert!(matches!(
            NamespacePlan::from_spec(&no_ns),
            Err(NamespaceError::TimeOffsets)
        ));
        let bad_clock = spec(
            r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"time"}],"timeOffsets":{"realtime":{"secs":1}}}}"#,
        );
        assert!(matches!(
            NamespacePlan::from_spec(&bad_clock),
            Err(NamespaceError::TimeOffsets)
        ));
    }

    #[test]
    fn time_namespace_flag() {
        let s = spec(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"time"}]}}"#);
        let p = NamespacePlan::from_spec(&s).unwrap();
        assert!(p.unshare_flags().bits() & libc::CLONE_NEWTIME != 0);
    }
}
