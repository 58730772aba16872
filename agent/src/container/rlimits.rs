//! `process.rlimits` → `setrlimit(2)` calls, made in the forked process before it drops
//! privileges (raising a hard limit needs `CAP_SYS_RESOURCE`).

use nix::sys::resource::{setrlimit, Resource};
use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use super::stage::{Failure, Stage};

/// An rlimit we cannot set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RlimitError {
    /// The soft limit is above the hard one.
    #[error("rlimit {0}: soft limit above hard limit")]
    SoftAboveHard(String),
    /// The same resource twice.
    #[error("rlimit {0} listed twice")]
    Duplicate(String),
}

/// One limit to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitPlan {
    /// `RLIMIT_*`.
    pub resource: Resource,
    /// Soft limit (`u64::MAX` is infinity).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The `RLIMIT_*` resource of a spec rlimit type.
pub fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

/// Validates and translates the list.
pub fn plan(list: &[PosixRlimit]) -> Result<Vec<RlimitPlan>, RlimitError> {
    let mut out: Vec<RlimitPlan> = Vec::new();
    for l in list {
        let name = l.typ().to_string();
        if l.soft() > l.hard() {
            return Err(RlimitError::SoftAboveHard(name));
        }
        let r = resource(l.typ());
        if out.iter().any(|p| p.resource == r) {
            return Err(RlimitError::Duplicate(name));
        }
        out.push(RlimitPlan {
            resource: r,
            soft: l.soft(),
            hard: l.hard(),
        });
    }
    Ok(out)
}

/// Forked side: sets every limit.
pub fn apply(list: &[RlimitPlan]) -> Result<(), Failure> {
    for (i, l) in list.iter().enumerate() {
        setrlimit(l.resource, l.soft, l.hard).map_err(|e| Failure::nix(Stage::Rlimit, i, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> Vec<PosixRlimit> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn translates_types_and_values() {
        let p = plan(&limits(
            r#"[{"type":"RLIMIT_NOFILE","soft":1024,"hard":4096},{"type":"RLIMIT_CORE","soft":0,"hard":0},
               {"type":"RLIMIT_NPROC","soft":18446744073709551615,"hard":18446744073709551615}]"#,
        ))
        .unwrap();
        assert_eq!(
            p[0],
            RlimitPlan {
                resource: Resource::RLIMIT_NOFILE,
                soft: 1024,
                hard: 4096
            }
        );
        assert_eq!(p[1].resource, Resource::RLIMIT_CORE);
        assert_eq!(p[2].soft, libc::RLIM_INFINITY);
    }

    #[test]
    fn rejects_inverted_and_duplicates() {
        assert!(matches!(
            plan(&limits(r#"[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]"#)),
            Err(RlimitError::SoftAboveHard(_))
        ));
        assert!(matches!(
            plan(&limits(
                r#"[{"type":"RLIMIT_AS","soft":1,"hard":5},{"type":"RLIMIT_AS","soft":1,"hard":5}]"#
            )),
            Err(RlimitError::Duplicate(_))
        ));
    }
}
