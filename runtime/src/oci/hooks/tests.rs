//! The hook runner against real processes (`/bin/sh`): state on stdin, exact argv and env,
//! timeouts, failures, and which hooks run at which stage.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn hook(value: serde_json::Value) -> Hook {
    serde_json::from_value(value).unwrap()
}

fn spec_with(hooks: serde_json::Value) -> Spec {
    serde_json::from_value(json!({"ociVersion": "1.0.2", "hooks": hooks})).unwrap()
}

#[test]
fn the_state_arrives_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("state");
    let h = hook(json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", "cat > \"$OUT\""],
        "env": [format!("OUT={}", out.display())],
    }));
    let state = br#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#;
    run("prestart", &h, state).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), state);
}

#[test]
fn argv_and_env_are_exactly_the_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let h = hook(json!({
        "path": "/bin/sh",
        "args": ["my-zero", "-c", "tr '\\0' '|' < /proc/$$/cmdline > \"$OUT\"; echo >> \"$OUT\"; env >> \"$OUT\"", "one two"],
        "env": [format!("OUT={}", out.display()), "A=b=c"],
    }));
    run("createRuntime", &h, b"{}").unwrap();
    let seen = std::fs::read_to_string(&out).unwrap();
    let mut lines = seen.lines();
    let argv = lines.next().unwrap();
    assert!(argv.starts_with("my-zero|-c|"), "{argv}");
    assert!(argv.ends_with("|one two|"), "{argv}");
    let env: Vec<&str> = lines.collect();
    assert!(env.contains(&"A=b=c"), "{env:?}");
    assert!(
        env.contains(&format!("OUT={}", out.display()).as_str()),
        "{env:?}"
    );
    // Nothing of the runtime's own environment leaks in (the shell adds only PWD/SHLVL/_).
    for e in &env {
        let name = e.split('=').next().unwrap();
        assert!(
            ["A", "OUT", "PWD", "SHLVL", "_"].contains(&name),
            "unexpected variable {e} in {env:?}"
        );
    }
}

#[test]
fn a_hook_past_its_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let h = hook(json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", "echo $$ > \"$P\"; exec sleep 30"],
        "env": [format!("P={}", pidfile.display())],
        "timeout": 1,
    }));
    let t0 = Instant::now();
    let err = run("prestart", &h, b"{}").unwrap_err();
    assert!(matches!(err, HookError::TimedOut { secs: 1, .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Killed and reaped: the pid is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_non_zero_exit_fails_with_its_stderr() {
    let h = hook(json!({"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}));
    let err = run("prestart", &h, b"{}").unwrap_err();
    match &err {
        HookError::Failed { status, stderr, .. } => {
            assert_eq!(status.code(), Some(3));
            assert_eq!(stderr, "boom\n");
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("prestart hook /bin/sh"), "{msg}");
}

#[test]
fn bad_hooks_are_refused_before_running() {
    let rel = hook(json!({"path": "bin/true"}));
    assert!(matches!(
        run("prestart", &rel, b""),
        Err(HookError::Invalid { .. })
    ));
    let zero = hook(json!({"path": "/bin/true", "timeout": 0}));
    assert!(matches!(
        run("prestart", &zero, b""),
        Err(HookError::Invalid { .. })
    ));
    let env = hook(json!({"path": "/bin/true", "env": ["NOEQUALS"]}));
    assert!(matches!(
        run("prestart", &env, b""),
        Err(HookError::Invalid { .. })
    ));
    let missing = hook(json!({"path": "/nonexistent/hook"}));
    assert!(matches!(
        run("prestart", &missing, b""),
        Err(HookError::Spawn { .. })
    ));
}

#[test]
fn a_hook_that_ignores_stdin_succeeds() {
    let h = hook(json!({"path": "/bin/true"}));
    run("poststart", &h, &vec![b'x'; 1 << 20]).unwrap();
}

#[test]
fn stages_run_their_lists_in_order_and_stop_at_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let step = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", log.display())]});
    let spec = spec_with(json!({
        "prestart": [step("pre1"), step("pre2")],
        "createRuntime": [step("cr")],
        "poststart": [step("post")],
        "poststop": [step("stop")],
    }));
    run_stage(&spec, Stage::Create, b"{}").unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre1\npre2\ncr\n");
    run_stage(&spec, Stage::Poststart, b"{}").unwrap();
    run_stage(&spec, Stage::Poststop, b"{}").unwrap();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre1\npre2\ncr\npost\nstop\n"
    );

    std::fs::remove_file(&log).unwrap();
    let failing = spec_with(json!({
        "prestart": [{"path": "/bin/false"}],
        "createRuntime": [step("never")],
    }));
    assert!(run_stage(&failing, Stage::Create, b"{}").is_err());
    assert!(!log.exists());
    // Logged only: poststart and poststop failures do not stop the lifecycle.
    let post = spec_with(json!({"poststop": [{"path": "/bin/false"}, step("after")]}));
    run_stage_logged(&post, Stage::Poststop, b"{}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
}

#[test]
fn container_namespace_hooks_are_refused() {
    let ok = spec_with(json!({"prestart": [{"path": "/bin/true"}], "poststop": []}));
    check_supported(&ok).unwrap();
    assert!(any(&ok));
    for kind in ["createContainer", "startContainer"] {
        let spec = spec_with(json!({ kind: [{"path": "/bin/true"}] }));
        let err = check_supported(&spec).unwrap_err();
        assert!(err.to_string().starts_with(kind), "{err}");
    }
    let empty = spec_with(json!({"createContainer": []}));
    check_supported(&empty).unwrap();
    assert!(!any(&empty));
}
