//! OCI hooks (`hooks` in a bundle's `config.json`), run on the host as the runtime spec says for
//! the hooks that belong to the runtime namespace: `prestart` (deprecated, still what dockerd
//! 20.10 uses for its `libnetwork-setkey`), `createRuntime`, `poststart`, `poststop`. Each hook
//! is started as `path` with exactly `args` (`args[0]` is its argv\[0\]) and exactly `env`, gets
//! the container's state JSON on stdin, and is killed when it outlives `timeout` seconds.
//!
//! The container-namespace hooks (`createContainer`, `startContainer`) would have to run inside
//! the container's namespaces, which are in the guest, where the host's binaries do not exist:
//! hull refuses a spec that has any ([`check_supported`]) rather than run them somewhere else.
//! The spec the guest agent gets has no hooks at all (`shim::task::create`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

/// How much of a failed hook's output the error keeps.
const OUTPUT_CAP: usize = 4096;

/// A hook could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The spec asks for hooks hull cannot run.
    #[error(
        "{0} hooks run in the container's namespaces, which are inside the VM's guest where host \
         binaries do not exist: hull runs only prestart, createRuntime, poststart and poststop \
         hooks (on the host)"
    )]
    Unsupported(&'static str),
    /// The hook's fields are wrong.
    #[error("{kind} hook {path}: {why}")]
    Invalid {
        /// Which list it is in.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// It could not be started.
    #[error("{kind} hook {path}: cannot start it")]
    Spawn {
        /// Which list it is in.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than its timeout and was killed.
    #[error("{kind} hook {path}: timed out after {secs} s (killed)")]
    TimedOut {
        /// Which list it is in.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// Its timeout.
        secs: i64,
    },
    /// It exited unsuccessfully.
    #[error("{kind} hook {path}: {status}; stderr: {stderr:?}")]
    Failed {
        /// Which list it is in.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// The start of what it wrote on stderr.
        stderr: String,
    },
}

/// The points of a container's life at which hull runs hooks (all on the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the VM boots: `prestart` then `createRuntime`.
    Create,
    /// After the process was released: `poststart`.
    Poststart,
    /// After the container was deleted: `poststop`.
    Poststop,
}

/// Refuses the hooks hull cannot run (see the module doc).
pub fn check_supported(spec: &Spec) -> Result<(), HookError> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    if hooks
        .create_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(HookError::Unsupported("createContainer"));
    }
    if hooks
        .start_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        return Err(HookError::Unsupported("startContainer"));
    }
    Ok(())
}

/// Whether `spec` has any hook at all.
pub fn any(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        #[allow(deprecated)]
        let prestart = h.prestart();
        [
            prestart,
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .into_iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    })
}

/// The hooks of `stage`, in the order they run, with the name of their list.
pub fn of_stage(hooks: &Hooks, stage: Stage) -> Vec<(&'static str, Hook)> {
    #[allow(deprecated)]
    let lists: Vec<(&'static str, &Option<Vec<Hook>>)> = match stage {
        Stage::Create => vec![
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
        ],
        Stage::Poststart => vec![("poststart", hooks.poststart())],
        Stage::Poststop => vec![("poststop", hooks.poststop())],
    };
    lists
        .into_iter()
        .flat_map(|(kind, list)| list.iter().flatten().map(move |hook| (kind, hook.clone())))
        .collect()
}

/// Runs `spec`'s hooks of `stage` one after another with `state` (the OCI state JSON) on their
/// stdin; stops at the first that fails.
pub fn run_stage(spec: &Spec, stage: Stage, state: &[u8]) -> Result<(), HookError> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    for (kind, hook) in of_stage(hooks, stage) {
        tracing::info!(kind, path = %hook.path().display(), "running an OCI hook");
        run(kind, &hook, state)?;
    }
    Ok(())
}

/// Runs `spec`'s hooks of `stage`, logging failures instead of returning them (the spec's rule
/// for `poststart` and `poststop`: the lifecycle goes on).
pub fn run_stage_logged(spec: &Spec, stage: Stage, state: &[u8]) {
    let Some(hooks) = spec.hooks() else {
        return;
    };
    for (kind, hook) in of_stage(hooks, stage) {
        if let Err(e) = run(kind, &hook, state) {
            tracing::warn!("{}", crate::agent::client::error_chain(&e));
        }
    }
}

/// Runs one hook (see the module doc).
pub fn run(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let invalid = |why: &str| HookError::Invalid {
        kind,
        path: path.clone(),
        why: why.into(),
    };
    if !path.is_absolute() {
        return Err(invalid("the path is not absolute"));
    }
    let timeout = match hook.timeout() {
        Some(t) if t <= 0 => return Err(invalid("timeout must be greater than zero")),
        Some(t) => Some(t),
        None => None,
    };
    let mut command = Command::new(&path);
    let args = hook.args().clone().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        use std::os::unix::process::CommandExt;
        command.arg0(arg0).args(rest);
    }
    command.env_clear();
    for pair in hook.env().iter().flatten() {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                command.env(k, v);
            }
            _ => return Err(invalid(&format!("env entry {pair:?} is not NAME=value"))),
        }
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HookError::Spawn {
            kind,
            path: path.clone(),
            source,
        })?;
    // Fed and drained on threads: a hook that ignores stdin or writes much never blocks us.
    let stdin = child.stdin.take();
    let state = state.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A hook that exits without reading its stdin is not a failure.
            let _ = stdin.write_all(&state);
        }
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut pipe) = pipe {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = OUTPUT_CAP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = timeout.map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(source) => {
                break Err(HookError::Spawn {
                    kind,
                    path: path.clone(),
                    source,
                })
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(HookError::TimedOut {
                kind,
                path: path.clone(),
                secs: timeout.unwrap_or_default(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // A timed-out hook's children may hold its pipes open: do not wait for them then.
    let (stdout, stderr) = match &status {
        Ok(_) => {
            let _ = feeder.join();
            (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            )
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    let status = status?;
    if !stdout.is_empty() {
        tracing::debug!(kind, stdout = %String::from_utf8_lossy(&stdout), "hook output");
    }
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Failed {
            kind,
            path,
            status,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
