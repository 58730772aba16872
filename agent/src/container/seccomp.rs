//! The OCI seccomp profile compiled to a BPF program (with libseccomp, linked statically), and
//! loading that program in the forked process with `seccomp(2)`.
//!
//! Compiling happens in the agent before forking, so the forked side only makes one syscall.
//! We load the program ourselves (not with `seccomp_load`) so libseccomp does not set
//! no_new_privs behind the spec's back. Syscall names this architecture does not know are
//! skipped, as runc does: profiles list syscalls of many kernels and architectures, and a syscall
//! that does not exist here cannot be called. What we cannot honour is an error: the notify
//! action, a listener path, `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, an unknown architecture.

use std::io::{Read, Seek, SeekFrom};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};

use super::stage::{Failure, Stage};

/// A profile we cannot compile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The notify action or a listener is used.
    #[error("seccomp user notification is not supported")]
    Notify,
    /// An unsupported filter flag.
    #[error("seccomp flag {0} is not supported")]
    Flag(String),
    /// An architecture libseccomp does not know.
    #[error("seccomp architecture {0} is not supported")]
    Arch(String),
    /// An argument index above 5.
    #[error("seccomp rule for {0} compares argument {1} (syscalls have 6)")]
    ArgIndex(String, usize),
    /// An errno above the range of a seccomp return value.
    #[error("seccomp errnoRet {0} is out of range")]
    Errno(u32),
    /// libseccomp refused something.
    #[error("libseccomp: {what}")]
    Lib {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Exporting the program failed.
    #[error("cannot export the seccomp program")]
    Export(#[source] std::io::Error),
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Lib { what, source }
}

/// A compiled filter.
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl std::fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl SeccompProgram {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Whether the program is empty (never, for a compiled profile).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// Forked side: installs the filter on this process.
    pub fn load(&self) -> Result<(), Failure> {
        crate::sys::seccomp_set_filter(&self.filter, self.flags)
            .map_err(|e| Failure::nix(Stage::Seccomp, 0, e))
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            let e = errno.unwrap_or(libc::EPERM as u32);
            if e > 4095 {
                return Err(SeccompError::Errno(e));
            }
            ScmpAction::Errno(e as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            let e = errno.unwrap_or(libc::EPERM as u32);
            ScmpAction::Trace(u16::try_from(e).map_err(|_| SeccompError::Errno(e))?)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(SeccompError::Notify),
    })
}

fn arch(a: Arch) -> Result<ScmpArch, SeccompError> {
    Ok(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    })
}

fn compare(op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // OCI: `value` is the mask, `valueTwo` the value compared after masking.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    }
}

/// Compiles a profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    if profile
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty())
    {
        return Err(SeccompError::Notify);
    }
    let flags = filter_flags(profile)?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create the filter"))?;
    ctx.set_ctl_nnp(false)
        .map_err(lib("leave no_new_privs to the spec"))?;
    add_architectures(&mut ctx, profile)?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act != default {
            add_rule(&mut ctx, rule, act)?;
        }
    }
    let filter = export(&ctx)?;
    Ok(SeccompProgram { filter, flags })
}

/// The `seccomp(2)` flags the profile asks for.
fn filter_flags(profile: &LinuxSeccomp) -> Result<libc::c_ulong, SeccompError> {
    let mut flags: libc::c_ulong = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // One thread loads the filter before execve: TSYNC has nothing to synchronise.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            other => return Err(SeccompError::Flag(other.to_string())),
        };
    }
    Ok(flags)
}

/// Adds the profile's architectures besides the native one.
fn add_architectures(
    ctx: &mut ScmpFilterContext,
    profile: &LinuxSeccomp,
) -> Result<(), SeccompError> {
    for a in profile.architectures().iter().flatten() {
        let sa = arch(*a).map_err(|_| SeccompError::Arch(a.to_string()))?;
        if sa == ScmpArch::Native
            || ctx
                .is_arch_present(sa)
                .map_err(lib("check an architecture"))?
        {
            continue;
        }
        ctx.add_arch(sa)
            .map_err(lib(format!("add architecture {a}")))?;
    }
    Ok(())
}

/// Adds one syscall rule of the profile, with action `act`, for each of its names this libseccomp
/// knows.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    act: ScmpAction,
) -> Result<(), SeccompError> {
    let mut conds: Vec<ScmpArgCompare> = Vec::new();
    for a in rule.args().iter().flatten() {
        let idx = a.index();
        if idx > 5 {
            return Err(SeccompError::ArgIndex(rule.names().join(","), idx));
        }
        let (op, datum) = compare(a.op(), a.value(), a.value_two());
        conds.push(ScmpArgCompare::new(
            u32::try_from(idx).unwrap_or(u32::MAX),
            op,
            datum,
        ));
    }
    // libseccomp allows one comparison per argument in a rule: several on the same argument
    // mean "any of them" (runc's reading), so they become one rule each.
    let mut indices: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
    indices.sort_unstable();
    let repeated = indices.windows(2).any(|w| w[0] == w[1]);
    for name in rule.names() {
        let Ok(sc) = ScmpSyscall::from_name(name) else {
            continue;
        };
        let what = || format!("add a rule for {name}");
        if conds.is_empty() {
            ctx.add_rule(act, sc).map_err(lib(what()))?;
        } else if repeated {
            for c in &conds {
                ctx.add_rule_conditional(act, sc, &[*c])
                    .map_err(lib(what()))?;
            }
        } else {
            ctx.add_rule_conditional(act, sc, &conds)
                .map_err(lib(what()))?;
        }
    }
    Ok(())
}

/// The compiled program, as the instructions `seccomp(2)` loads.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut memfd = memfd()?;
    ctx.export_bpf(&memfd).map_err(lib("export the program"))?;
    let mut bytes = Vec::new();
    memfd
        .seek(SeekFrom::Start(0))
        .map_err(SeccompError::Export)?;
    memfd
        .read_to_end(&mut bytes)
        .map_err(SeccompError::Export)?;
    let filter = bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect::<Vec<_>>();
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) {
        return Err(SeccompError::Export(std::io::Error::other(
            "empty or oversized program",
        )));
    }
    Ok(filter)
}

fn memfd() -> Result<std::fs::File, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(c"hull-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_a_profile() {
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                            {"names":["no_such_syscall_here"],"action":"SCMP_ACT_KILL"},
                            {"names":["personality"],"action":"SCMP_ACT_ERRNO",
                             "args":[{"index":0,"value":8,"op":"SCMP_CMP_NE"},{"index":0,"value":0,"op":"SCMP_CMP_NE"}]},
                            {"names":["clone"],"action":"SCMP_ACT_ERRNO",
                             "args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                            {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert!(p.len() > 10, "{p:?}");
        assert_eq!(p.flags, 0);
    }

    #[test]
    fn deny_by_default_with_flags() {
        let p = compile(&profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_TSYNC"],
                "syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert_eq!(p.flags, libc::SECCOMP_FILTER_FLAG_LOG);
        assert!(!p.is_empty());
    }

    #[test]
    fn rejects_what_we_cannot_honour() {
        assert!(matches!(
            compile(&profile(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#)),
            Err(SeccompError::Notify)
        ));
        assert!(matches!(
            compile(&profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/x.sock"}"#
            )),
            Err(SeccompError::Notify)
        ));
        assert!(matches!(
            compile(&profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#
            )),
            Err(SeccompError::Flag(_))
        ));
        assert!(matches!(
            compile(&profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#
            )),
            Err(SeccompError::ArgIndex(_, 6))
        ));
        assert!(matches!(
            compile(&profile(
                r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#
            )),
            Err(SeccompError::Errno(70000))
        ));
        // An unknown action string is refused when the spec is parsed.
        assert!(
            serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).is_err()
        );
    }
}
