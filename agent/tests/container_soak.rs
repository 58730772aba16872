//! Host integration test of the container library: create/start/exec/destroy cycles leave no
//! descriptor, process, cgroup or mount behind in the caller. One test in its own binary, so
//! the descriptor count is not disturbed by tests running in parallel.
//! See `common/mod.rs` for how it runs (root, cgroup v2, busybox; skip loudly, never under CI).

mod common;

use common::*;

fn fd_count() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Mounts in the caller's namespace at or below `dir`: only what this test could have made, so
/// containers started or stopped elsewhere on the machine meanwhile do not count.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|mount_point| mount_point == &dir || mount_point.starts_with(&format!("{dir}/")))
        .collect()
}

#[test]
fn cycles_leave_nothing_behind() {
    if !root_or_skip("cycles_leave_nothing_behind") {
        return;
    }
    let env = Env::new("soak");
    let (fds, mounts) = (fd_count(), mounts_under(env.dir.path()));
    for i in 0..20 {
        let mut v = base_spec(&env.id, &["sleep", "30"]);
        v["process"]["terminal"] = json!(i % 2 == 0);
        let s = spec(v);
        let io = if i % 2 == 0 {
            ProcessIo::Terminal
        } else {
            no_io()
        };
        let mut g = env.create(&s, io).unwrap();
        drop(g.c().take_pty_master());
        g.c().start().unwrap();
        let p: Process =
            serde_json::from_value(base_spec(&env.id, &["true"])["process"].clone()).unwrap();
        let spawned = g.c().exec(&p, no_io()).unwrap();
        assert!(exited(0)(&wait_exit(spawned.pid)));
        g.destroy();
    }
    // Give the kernel a moment to drop the last namespaces' mounts.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(fd_count(), fds, "descriptors leaked");
    assert_eq!(
        mounts_under(env.dir.path()),
        mounts,
        "mounts leaked into the caller's namespace"
    );
    let left: Vec<_> = fs::read_dir(&env.cgroup_root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
