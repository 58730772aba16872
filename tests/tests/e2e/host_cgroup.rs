//! containerd end to end: a pod's host processes live in the host cgroup its spec names
//! (`/<namespace>/<id>` for ctr), split into `shim/` and `vmm/`; the guest's RAM is charged to
//! `vmm/`; the cgroups go away with the task.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hull_tests::containerd::{Containerd, NAMESPACE};

fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The v1 memory controller's directory of `rel`, or v2's when the host is unified.
fn memory_dir(rel: &Path) -> PathBuf {
    let hierarchies = hull_runtime::host_cgroup::hierarchies().unwrap();
    let h = hierarchies
        .iter()
        .find(|h| h.has_v1("memory"))
        .or_else(|| {
            hierarchies
                .iter()
                .find(|h| h.kind == hull_runtime::host_cgroup::hierarchy::Kind::V2)
        })
        .unwrap();
    h.mount.join(rel)
}

fn memory_usage(dir: &Path) -> u64 {
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_pod_runs_in_its_host_cgroup_and_leaves_none() {
    let Some(c) = Containerd::start() else { return };
    let id = "cg1";
    c.run_detached(id, &["sleep", "100000"]);
    c.wait_status(id, "RUNNING", Duration::from_secs(60));
    let rel = Path::new(NAMESPACE).join(id);
    let dirs = hull_tests::host_cgroup_dirs(&rel);
    assert!(!dirs.is_empty(), "no host cgroup at {}", rel.display());

    let vmm = c.task_pid(id).expect("the VMM's pid");
    let shim = c.shim_pid(id).expect("the shim");
    // In every hierarchy: the VMM (and its jailer) in vmm/, the shim and its helpers in shim/,
    // nothing in the pod's cgroup itself.
    for dir in &dirs {
        assert!(
            procs(&dir.join("vmm")).contains(&vmm),
            "VMM {vmm} not in {}/vmm",
            dir.display()
        );
        let shims = procs(&dir.join("shim"));
        assert!(
            shims.contains(&shim),
            "shim {shim} not in {}/shim",
            dir.display()
        );
        assert!(
            shims.len() >= 2,
            "the shim's helpers (vsock backend, virtiofsd) are not in {}/shim: {shims:?}",
            dir.display()
        );
        assert!(
            procs(dir).is_empty(),
            "processes in {} itself",
            dir.display()
        );
    }
    // The guest's RAM that the booted kernel and agent touched is charged to the VMM's cgroup.
    let charged = memory_usage(&memory_dir(&rel.join("vmm")));
    assert!(
        charged > 16 << 20,
        "only {charged} bytes charged to the VMM's cgroup"
    );

    c.ctr(&["task", "kill", "-s", "KILL", id]);
    c.wait_status(id, "STOPPED", Duration::from_secs(30));
    assert!(c.delete_task(id).is_some());
    let _ = c.ctr(&["container", "delete", id]);
    c.assert_clean(id, Duration::from_secs(15));
}
