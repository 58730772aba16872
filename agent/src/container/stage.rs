//! The steps of building a container process, as the forked side reports them.
//!
//! The forked side cannot format strings safely, so it names a failed step by number: a
//! [`Stage`], an index into that step's list (which mount, which device…) and an errno.

/// One step of the init or exec sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum Stage {
    Unknown = 0,
    CloseFds,
    JoinCgroup,
    JoinNamespace,
    Unshare,
    UserMapping,
    BecomeRoot,
    Fork,
    Setsid,
    Terminal,
    Stdio,
    RootPropagation,
    BindRootfs,
    Mount,
    MountPropagation,
    Device,
    DevSymlink,
    Console,
    Cwd,
    PivotRoot,
    Sysctl,
    MaskPath,
    ReadonlyPath,
    ReadonlyRoot,
    Hostname,
    Domainname,
    Rlimit,
    IoPriority,
    OomScoreAdj,
    NoNewPrivs,
    Seccomp,
    Bounding,
    Groups,
    Gid,
    Uid,
    Capabilities,
    Ambient,
    Chdir,
    StartBarrier,
    Exec,
}

const ALL: [Stage; 40] = [
    Stage::Unknown,
    Stage::CloseFds,
    Stage::JoinCgroup,
    Stage::JoinNamespace,
    Stage::Unshare,
    Stage::UserMapping,
    Stage::BecomeRoot,
    Stage::Fork,
    Stage::Setsid,
    Stage::Terminal,
    Stage::Stdio,
    Stage::RootPropagation,
    Stage::BindRootfs,
    Stage::Mount,
    Stage::MountPropagation,
    Stage::Device,
    Stage::DevSymlink,
    Stage::Console,
    Stage::Cwd,
    Stage::PivotRoot,
    Stage::Sysctl,
    Stage::MaskPath,
    Stage::ReadonlyPath,
    Stage::ReadonlyRoot,
    Stage::Hostname,
    Stage::Domainname,
    Stage::Rlimit,
    Stage::IoPriority,
    Stage::OomScoreAdj,
    Stage::NoNewPrivs,
    Stage::Seccomp,
    Stage::Bounding,
    Stage::Groups,
    Stage::Gid,
    Stage::Uid,
    Stage::Capabilities,
    Stage::Ambient,
    Stage::Chdir,
    Stage::StartBarrier,
    Stage::Exec,
];

impl Stage {
    /// The stage a number names (unknown numbers become [`Stage::Unknown`]).
    pub fn from_u32(n: u32) -> Stage {
        ALL.iter()
            .copied()
            .find(|s| *s as u32 == n)
            .unwrap_or(Stage::Unknown)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Unknown => "an unknown step",
            Stage::CloseFds => "closing inherited descriptors",
            Stage::JoinCgroup => "joining the cgroup",
            Stage::JoinNamespace => "joining a namespace",
            Stage::Unshare => "creating namespaces",
            Stage::UserMapping => "waiting for the user namespace mapping",
            Stage::BecomeRoot => "becoming root in the user namespace",
            Stage::Fork => "forking the container process",
            Stage::Setsid => "starting a session",
            Stage::Terminal => "opening the pty in the container (it needs devpts on /dev/pts)",
            Stage::Stdio => "setting up stdio",
            Stage::RootPropagation => "making / a slave mount",
            Stage::BindRootfs => "bind-mounting the rootfs",
            Stage::Mount => "mounting",
            Stage::MountPropagation => "setting mount propagation",
            Stage::Device => "creating a device node",
            Stage::DevSymlink => "creating a /dev symlink",
            Stage::Console => "mounting /dev/console",
            Stage::Cwd => "creating the working directory",
            Stage::PivotRoot => "pivot_root",
            Stage::Sysctl => "writing a sysctl",
            Stage::MaskPath => "masking a path",
            Stage::ReadonlyPath => "making a path read-only",
            Stage::ReadonlyRoot => "making the rootfs read-only",
            Stage::Hostname => "setting the hostname",
            Stage::Domainname => "setting the domain name",
            Stage::Rlimit => "setting an rlimit",
            Stage::IoPriority => "setting the I/O priority",
            Stage::OomScoreAdj => "setting oom_score_adj",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::Seccomp => "loading the seccomp filter",
            Stage::Bounding => "dropping from the bounding set",
            Stage::Groups => "setting additional groups",
            Stage::Gid => "setting the gid",
            Stage::Uid => "setting the uid",
            Stage::Capabilities => "setting capabilities",
            Stage::Ambient => "raising an ambient capability",
            Stage::Chdir => "changing to the working directory",
            Stage::StartBarrier => "waiting at the start barrier",
            Stage::Exec => "executing the process",
        }
    }
}

/// A failed step, as the forked side reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Which step.
    pub stage: Stage,
    /// Which item of that step's list (0 when the step has no list).
    pub index: u32,
    /// The errno.
    pub errno: i32,
}

impl Failure {
    /// A failure of `stage` on item `index` with the current errno.
    pub fn last(stage: Stage, index: usize) -> Failure {
        Failure::new(
            stage,
            index,
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    /// A failure with an explicit errno.
    pub fn new(stage: Stage, index: usize, errno: i32) -> Failure {
        Failure {
            stage,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            errno,
        }
    }

    /// From a nix error.
    pub fn nix(stage: Stage, index: usize, e: nix::Error) -> Failure {
        Failure::new(stage, index, e as i32)
    }

    /// From a rustix error.
    pub fn rustix(stage: Stage, index: usize, e: rustix::io::Errno) -> Failure {
        Failure::new(stage, index, e.raw_os_error())
    }

    /// From an io error.
    pub fn io(stage: Stage, index: usize, e: &std::io::Error) -> Failure {
        Failure::new(stage, index, e.raw_os_error().unwrap_or(libc::EIO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for s in ALL {
            assert_eq!(Stage::from_u32(s as u32), s);
        }
        assert_eq!(Stage::from_u32(9999), Stage::Unknown);
    }
}
