//! A process to run in the container (the init process or an exec'd one), prepared in the agent
//! before forking: argv/envp as C strings (with their `execve` arrays), the executable candidates from `PATH`, identity,
//! capabilities, rlimits, no_new_privs, I/O priority and the compiled seccomp program.
//!
//! The forked side then runs [`ProcessPlan::prepare`] (everything up to the point where only
//! `execve` is left) and [`ProcessPlan::exec`].

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::prctl;
use nix::unistd::chdir;
use oci_spec::runtime::{IOPriorityClass, Process};

use super::caps::{CapsError, CapsPlan};
use super::mounts::container_path;
use super::rlimits::{self, RlimitError, RlimitPlan};
use super::seccomp::SeccompProgram;
use super::stage::{Failure, Stage};
use super::user::{self, UserError, UserPlan};
use crate::sys::{self, CStrArray};

/// The `PATH` used when the process's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process we cannot run as specified.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No `args`.
    #[error("process.args is empty")]
    NoArgs,
    /// A NUL byte in args, env or cwd.
    #[error("process {0} holds a NUL byte")]
    Nul(&'static str),
    /// `cwd` is not absolute.
    #[error("process.cwd {0:?} must be absolute and without `..`")]
    Cwd(PathBuf),
    /// An env entry without `=`.
    #[error("process.env entry {0:?} is not KEY=VALUE")]
    Env(String),
    /// A field this runtime does not implement.
    #[error("process.{0} is not supported")]
    Unsupported(&'static str),
    /// The I/O priority is out of range.
    #[error("process.ioPriority.priority {0} is out of range 0..=7")]
    IoPriority(i64),
    /// Capabilities.
    #[error("invalid process.capabilities")]
    Caps(#[from] CapsError),
    /// Rlimits.
    #[error("invalid process.rlimits")]
    Rlimit(#[from] RlimitError),
    /// User.
    #[error("invalid process.user")]
    User(#[from] UserError),
}

/// Everything the forked side needs to become the process.
#[derive(Debug)]
pub struct ProcessPlan {
    /// argv.
    pub args: CStrArray,
    /// envp.
    pub env: CStrArray,
    /// Paths to try with `execve`, in order (one when `args[0]` holds a `/`).
    pub candidates: Vec<CString>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// Same, as a C string.
    pub cwd_c: CString,
    /// Identity.
    pub user: UserPlan,
    /// Capabilities.
    pub caps: CapsPlan,
    /// Rlimits.
    pub rlimits: Vec<RlimitPlan>,
    /// no_new_privs.
    pub no_new_privs: bool,
    /// `ioprio_set` value.
    pub io_priority: Option<i32>,
    /// The container's seccomp program.
    pub seccomp: Option<Arc<SeccompProgram>>,
    /// Whether the process gets a pty.
    pub terminal: bool,
    /// Written to `/proc/<pid>/oom_score_adj` by the agent.
    pub oom_score_adj: Option<i32>,
    /// Initial pty size `(rows, cols)`.
    pub console_size: Option<(u16, u16)>,
}

fn cstrings<'a>(
    items: impl Iterator<Item = &'a str>,
    what: &'static str,
) -> Result<Vec<CString>, ProcessError> {
    items
        .map(|s| CString::new(s).map_err(|_| ProcessError::Nul(what)))
        .collect()
}

impl ProcessPlan {
    /// Prepares `p` for a container whose rootfs is at `rootfs`.
    pub fn new(
        p: &Process,
        rootfs: &Path,
        seccomp: Option<Arc<SeccompProgram>>,
        last_cap: u8,
    ) -> Result<Self, ProcessError> {
        if p.selinux_label().as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ProcessError::Unsupported("selinuxLabel"));
        }
        if p.scheduler().is_some() {
            return Err(ProcessError::Unsupported("scheduler"));
        }
        if p.exec_cpu_affinity().is_some() {
            return Err(ProcessError::Unsupported("execCPUAffinity"));
        }
        if p.command_line().as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(ProcessError::Unsupported("commandLine"));
        }
        // apparmorProfile is ignored on purpose: hull's guest kernel has no AppArmor.
        let args_s = p.args().clone().unwrap_or_default();
        if args_s.is_empty() || args_s[0].is_empty() {
            return Err(ProcessError::NoArgs);
        }
        let args = cstrings(args_s.iter().map(String::as_str), "args")?;
        let user = UserPlan::from_spec(p.user())?;
        let mut env_s = p.env().clone().unwrap_or_default();
        for e in &env_s {
            if !e.contains('=') || e.starts_with('=') {
                return Err(ProcessError::Env(e.clone()));
            }
        }
        if !env_s.iter().any(|e| e.starts_with("HOME=")) {
            let home = user::home_dir(rootfs, user.uid).unwrap_or_else(|| "/".into());
            env_s.push(format!("HOME={home}"));
        }
        let env = cstrings(env_s.iter().map(String::as_str), "env")?;
        let path_var = env_s
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let arg0 = &args_s[0];
        let candidates_s: Vec<String> = if arg0.contains('/') {
            vec![arg0.clone()]
        } else {
            path_var
                .split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
                .collect()
        };
        let candidates = cstrings(candidates_s.iter().map(String::as_str), "args")?;
        let cwd_in = if p.cwd().as_os_str().is_empty() {
            Path::new("/")
        } else {
            p.cwd().as_path()
        };
        let cwd = container_path(cwd_in).ok_or_else(|| ProcessError::Cwd(p.cwd().clone()))?;
        let cwd_c = CString::new(cwd.to_string_lossy().into_owned())
            .map_err(|_| ProcessError::Nul("cwd"))?;
        let io_priority = match p.io_priority() {
            None => None,
            Some(io) => {
                let prio = io.priority();
                if !(0..=7).contains(&prio) {
                    return Err(ProcessError::IoPriority(prio));
                }
                let class = match io.class() {
                    IOPriorityClass::IoprioClassRt => 1,
                    IOPriorityClass::IoprioClassBe => 2,
                    IOPriorityClass::IoprioClassIdle => 3,
                };
                Some((class << 13) | i32::try_from(prio).unwrap_or(0))
            }
        };
        let console_size = p.console_size().map(|b| {
            (
                u16::try_from(b.height()).unwrap_or(u16::MAX),
                u16::try_from(b.width()).unwrap_or(u16::MAX),
            )
        });
        Ok(ProcessPlan {
            args: CStrArray::new(args),
            env: CStrArray::new(env),
            candidates,
            cwd,
            cwd_c,
            user,
            caps: CapsPlan::from_spec(p.capabilities().as_ref(), last_cap)?,
            rlimits: rlimits::plan(p.rlimits().as_deref().unwrap_or(&[]))?,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            io_priority,
            seccomp,
            terminal: p.terminal().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            console_size,
        })
    }

    /// Forked side, inside the container's namespaces and root: rlimits, I/O priority,
    /// no_new_privs, seccomp (here when no_new_privs is off, since it then needs
    /// `CAP_SYS_ADMIN`), bounding set, user, capabilities, cwd.
    pub fn prepare(&self) -> Result<(), Failure> {
        rlimits::apply(&self.rlimits)?;
        if let Some(prio) = self.io_priority {
            sys::set_io_priority(prio).map_err(|e| Failure::nix(Stage::IoPriority, 0, e))?;
        }
        if self.no_new_privs {
            prctl::set_no_new_privs().map_err(|e| Failure::nix(Stage::NoNewPrivs, 0, e))?;
        } else if let Some(s) = &self.seccomp {
            s.load()?;
        }
        self.caps.drop_bounding()?;
        prctl::set_keepcaps(true).map_err(|e| Failure::nix(Stage::Uid, 0, e))?;
        self.user.switch()?;
        prctl::set_keepcaps(false).map_err(|e| Failure::nix(Stage::Uid, 0, e))?;
        self.caps.apply()?;
        chdir(self.cwd_c.as_c_str()).map_err(|e| Failure::nix(Stage::Chdir, 0, e))
    }

    /// Forked side: marks every inherited descriptor above 2 close-on-exec, loads seccomp (when
    /// no_new_privs is on) and tries each candidate. Returns only on failure.
    pub fn exec(&self) -> Failure {
        // Before seccomp: a profile may not allow close_range, and a descriptor handed to us
        // without close-on-exec (a caller's pipe above 2) must not reach the workload.
        if let Err(e) = sys::set_cloexec_from(3) {
            return Failure::nix(Stage::CloseFds, 1, e);
        }
        if self.no_new_privs {
            if let Some(s) = &self.seccomp {
                if let Err(f) = s.load() {
                    return f;
                }
            }
        }
        let mut errno = libc::ENOENT;
        for c in &self.candidates {
            let e = sys::execve(c, &self.args, &self.env) as i32;
            // Like execvp: keep looking after ENOENT/ENOTDIR, remember EACCES.
            match e {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => errno = libc::EACCES,
                other => return Failure::new(Stage::Exec, 0, other),
            }
        }
        Failure::new(Stage::Exec, 0, errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: &str) -> Process {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn args_env_path_and_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "u:x:1000:1000::/home/u:/bin/sh\n",
        )
        .unwrap();
        let p = ProcessPlan::new(
            &process(
                r#"{"user":{"uid":1000,"gid":1000},"args":["sh","-c","true"],
                   "env":["PATH=/bin:/usr/bin:"],"cwd":"/work/./x","noNewPrivileges":true,
                   "rlimits":[{"type":"RLIMIT_NOFILE","soft":100,"hard":200}],
                   "ioPriority":{"class":"IOPRIO_CLASS_IDLE","priority":4},"oomScoreAdj":500,
                   "consoleSize":{"height":24,"width":80},"terminal":true}"#,
            ),
            dir.path(),
            None,
            40,
        )
        .unwrap();
        let s = |v: &[CString]| {
            v.iter()
                .map(|c| c.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(s(&p.args), ["sh", "-c", "true"]);
        assert_eq!(s(&p.env), ["PATH=/bin:/usr/bin:", "HOME=/home/u"]);
        assert_eq!(s(&p.candidates), ["/bin/sh", "/usr/bin/sh", "./sh"]);
        assert_eq!(p.cwd, PathBuf::from("/work/x"));
        assert!(p.no_new_privs && p.terminal);
        assert_eq!(p.io_priority, Some((3 << 13) | 4));
        assert_eq!(p.oom_score_adj, Some(500));
        assert_eq!(p.console_size, Some((24, 80)));
        assert_eq!(
            p.caps,
            CapsPlan {
                last_cap: 40,
                ..Default::default()
            }
        );
    }

    #[test]
    fn absolute_arg0_and_default_path() {
        let p = ProcessPlan::new(
            &process(r#"{"user":{"uid":0,"gid":0},"args":["/bin/true"],"cwd":"/"}"#),
            Path::new("/nonexistent"),
            None,
            40,
        )
        .unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.env.last().unwrap().to_str().unwrap(), "HOME=/");
        let q = ProcessPlan::new(
            &process(r#"{"user":{"uid":0,"gid":0},"args":["ls"],"cwd":"/"}"#),
            Path::new("/nonexistent"),
            None,
            40,
        )
        .unwrap();
        assert_eq!(q.candidates.len(), DEFAULT_PATH.split(':').count());
    }

    #[test]
    fn rejections() {
        let bad = |j: &str| ProcessPlan::new(&process(j), Path::new("/"), None, 40).unwrap_err();
        assert!(matches!(
            bad(r#"{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"}"#),
            ProcessError::NoArgs
        ));
        assert!(matches!(
            bad(r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"rel"}"#),
            ProcessError::Cwd(_)
        ));
        assert!(matches!(
            bad(r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","env":["NOEQUALS"]}"#),
            ProcessError::Env(_)
        ));
        assert!(matches!(
            bad(r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","selinuxLabel":"x"}"#),
            ProcessError::Unsupported(_)
        ));
        assert!(matches!(
            bad(
                r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","scheduler":{"policy":"SCHED_OTHER"}}"#
            ),
            ProcessError::Unsupported(_)
        ));
        assert!(matches!(
            bad(
                r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","ioPriority":{"class":"IOPRIO_CLASS_BE","priority":9}}"#
            ),
            ProcessError::IoPriority(9)
        ));
        assert!(matches!(
            bad(
                r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","rlimits":[{"type":"RLIMIT_AS","soft":2,"hard":1}]}"#
            ),
            ProcessError::Rlimit(_)
        ));
        assert!(matches!(
            bad(r#"{"user":{"uid":0,"gid":0},"args":["x\u0000y"],"cwd":"/"}"#),
            ProcessError::Nul("args")
        ));
        let ok = ProcessPlan::new(
            &process(
                r#"{"user":{"uid":0,"gid":0},"args":["x"],"cwd":"/","apparmorProfile":"docker-default"}"#,
            ),
            Path::new("/"),
            None,
            40,
        );
        assert!(ok.is_ok());
    }
}
