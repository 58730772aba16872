//! Host integration tests of the container library: terminal: true for the init process and for exec.
//! See `common/mod.rs` for how they run (root, cgroup v2, busybox; skip loudly, never under CI).

mod common;

use common::*;

#[test]
fn terminal_process_sees_a_tty() {
    if !root_or_skip("terminal_process_sees_a_tty") {
        return;
    }
    let env = Env::new("tty");
    let mut v = base_spec(
        &env.id,
        &["sh", "-c", "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty-yes; test -c /dev/console && echo console-yes; \
          echo name=$(tty); echo size=$(stty size); stat -c 'console=%t:%T' /dev/console; stat -c 'self=%t:%T' $(tty)"],
    );
    v["process"]["terminal"] = json!(true);
    v["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    let s = spec(v);
    let mut g = env.create(&s, ProcessIo::Terminal).unwrap();
    let master = g.c().take_pty_master().expect("pty master");
    g.c().start().unwrap();
    let status = wait_exit(g.c().init_pid());
    assert!(exited(0)(&status));
    let mut out = Vec::new();
    let mut f = fs::File::from(master);
    let mut buf = [0u8; 4096];
    // After the slave side is gone, the master reads EIO.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("tty-yes"), "{out}");
    assert!(out.contains("console-yes"), "{out}");
    // The pty comes from the container's own devpts: its name resolves inside the container.
    assert!(out.contains("name=/dev/pts/0"), "{out}");
    assert!(out.contains("size=33 101"), "{out}");
    let console = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("console="))
        .unwrap();
    let own = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("self="))
        .unwrap();
    assert_eq!(console, own, "/dev/console is the process's pty");
    g.destroy();
}

#[test]
fn exec_with_a_terminal() {
    if !root_or_skip("exec_with_a_terminal") {
        return;
    }
    let env = Env::new("exectty");
    let mut g = env.start_sleeping();
    let mut p: Process =
        serde_json::from_value(base_spec(&env.id, &["sh"])["process"].clone()).unwrap();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "[ -t 0 ] && [ -t 1 ] && echo exec-tty".into(),
    ]));
    p.set_terminal(Some(true));
    // terminal: true with pipes is refused.
    assert!(matches!(
        g.c().exec(&p, no_io()),
        Err(ContainerError::TerminalMismatch)
    ));
    let spawned = g.c().exec(&p, ProcessIo::Terminal).unwrap();
    let master = spawned.pty_master.expect("pty master");
    assert!(exited(0)(&wait_exit(spawned.pid)));
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&out).contains("exec-tty"));
    g.destroy();
}
