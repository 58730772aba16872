//! containerd end to end: pods started from a template snapshot (`start = "snapshot"` on
//! hull-vmm, docs/snapshot.md). Where hull-vmm runs (the nested-KVM tier): the template is made
//! once by the first pod and superseded templates are pruned then; `ctr run --rm` from it keeps
//! exit codes and stdio apart and a read-write volume's write reaches the host; exec into a
//! restored pod, whose balloon takes a target; two pods from one template read different
//! `/dev/urandom` bytes and the host's time; a template damaged (its size, or one byte of its
//! memory) is refused and the pod boots; killing a restored VMM under a task cleans up.
//! Where hull-vmm cannot run (the host tier), `hull check` says pods boot and why, and `hull
//! template create` refuses with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hull_runtime::template::{self, Record, TemplateInputs, MEMORY_FILE, RECORD};
use hull_runtime::vm::hull_vmm;
use hull_tests::containerd::{Containerd, Options, IMAGE, RUNTIME};
use hull_tests::faults::{signal, PodPids};
use hull_tests::podman::hull_binary;
use nix::sys::signal::Signal;

const RESTORED: &str = "pod VM restored from its template";
const FELL_BACK: &str = "cannot start the pod from its template";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The template directories under `root`.
fn templates(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|e| {
            e.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn count(c: &Containerd, needle: &str) -> usize {
    c.log().matches(needle).count()
}

/// A template that the first real one supersedes (made from another initramfs): it must be
/// pruned when the real one is made.
fn plant_stale_template(root: &Path) -> PathBuf {
    let inputs = TemplateInputs {
        hull_version: template::HULL_VERSION.into(),
        kernel_sha256: "00".repeat(32),
        initramfs_sha256: "11".repeat(32),
        vcpus: 1,
        memory_mib: 256,
        cmdline: "old".into(),
        devices: vec!["vsock".into()],
    };
    let dir = template::dir_for(root, &inputs);
    std::fs::create_dir_all(&dir).unwrap();
    let record = Record {
        key: inputs.key(),
        inputs,
        created: 0,
        state_bytes: 0,
        memory_bytes: 0,
    };
    std::fs::write(dir.join(RECORD), serde_json::to_vec(&record).unwrap()).unwrap();
    dir
}

/// Runs `sh -c script` with `--rm` and returns its stdout, asserting exit 0 and a restore.
fn restored_output(c: &Containerd, id: &str, script: &str) -> String {
    let before = count(c, RESTORED);
    let out = c.run_rm(id, &["sh", "-c", script]);
    assert!(out.status.success(), "{id}: {}", c.explain(&out));
    assert_eq!(
        count(c, RESTORED),
        before + 1,
        "{id} was not restored: {}",
        c.explain(&out)
    );
    c.assert_clean(id, Duration::from_secs(15));
    text(&out.stdout)
}

#[test]
fn pods_start_from_one_template() {
    if hull_vmm::usable().is_err() {
        without_hull_vmm();
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let templates_root = root.path().join("templates");
    let options = Options {
        extra_config: format!(
            "start = \"snapshot\"\ntemplate_dir = \"{}\"\n",
            templates_root.display()
        ),
        ..Options::default()
    };
    let Some(c) = Containerd::start_with(&options) else {
        return;
    };
    template::ensure_root(&templates_root).unwrap();
    let stale = plant_stale_template(&templates_root);

    // The first pod makes the template, then restores it: exit code and stdio apart, and a
    // read-write volume (the pod's share, mounted by `Personalize`) reaches the host.
    let rw = c.dir().join("vol-rw");
    std::fs::create_dir_all(&rw).unwrap();
    let rw_mount = format!("type=bind,src={},dst=/rw,options=rbind:rw", rw.display());
    let out = c.ctr(&[
        "run",
        "--rm",
        "--mount",
        &rw_mount,
        "--runtime",
        RUNTIME,
        IMAGE,
        "first",
        "sh",
        "-c",
        "echo written >/rw/out; echo to-out; echo to-err >&2; exit 42",
    ]);
    assert_eq!(out.status.code(), Some(42), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), "to-out\n", "{}", c.explain(&out));
    assert_eq!(text(&out.stderr), "to-err\n", "{}", c.explain(&out));
    assert_eq!(count(&c, RESTORED), 1, "{}", c.explain(&out));
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).unwrap(),
        "written\n",
        "the restored pod's volume write did not reach the host"
    );
    assert!(!stale.exists(), "the superseded template was not pruned");
    let made = templates(&templates_root);
    assert_eq!(made.len(), 1, "{made:?}");
    let record: Record =
        serde_json::from_slice(&std::fs::read(made[0].join(RECORD)).unwrap()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&made[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "template directory mode {mode:o}");
        let mode = std::fs::metadata(made[0].join(RECORD))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "record mode {mode:o}");
        // The snapshot files are root-only too: the jailed VMM got them as descriptors.
        for name in [template::STATE_FILE, MEMORY_FILE] {
            let mode = std::fs::metadata(made[0].join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} mode {mode:o}");
        }
    }
    // That restore checked the memory file and marked it so: the next ones skip the checksum.
    assert!(
        made[0].join(template::verified::MARK).is_file(),
        "{}",
        c.explain(&out)
    );
    c.assert_clean("first", Duration::from_secs(15));

    // Two pods from the one template: their own entropy and the host's clock.
    let script = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";
    let before = now();
    let a = restored_output(&c, "rand-a", script);
    let b = restored_output(&c, "rand-b", script);
    let after = now();
    let (rand_a, time_a) = a.split_once('\n').unwrap();
    let (rand_b, time_b) = b.split_once('\n').unwrap();
    assert_eq!(rand_a.len(), 64, "{a:?}");
    assert_ne!(
        rand_a, rand_b,
        "two pods from one template read the same random bytes"
    );
    for t in [time_a, time_b] {
        let t: u64 = t.trim().parse().unwrap();
        assert!(
            (before.saturating_sub(2)..=after + 2).contains(&t),
            "guest time {t}, host {before}..{after} (template made at {})",
            record.created
        );
    }
    assert_eq!(
        templates(&templates_root),
        made,
        "the template was made once"
    );
    assert!(
        c.log().contains("memory_checked=true"),
        "later restores skip the memory checksum: {}",
        c.log()
    );

    // Exec into a restored pod.
    let before = count(&c, RESTORED);
    c.run_detached("exec", &["sleep", "600"]);
    c.wait_status("exec", "RUNNING", Duration::from_secs(120));
    assert_eq!(count(&c, RESTORED), before + 1);
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "exec",
        "sh",
        "-c",
        "echo in-pod; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", c.explain(&out));
    assert_eq!(text(&out.stdout), "in-pod\n");
    // A restored pod has the balloon a booted pod has: its control socket takes a target.
    let balloon = hull_runtime::vm::balloon::set_target(&c.run_dir().join("exec"), 0)
        .unwrap_or_else(|e| panic!("the restored pod's balloon: {e}"));
    assert_eq!((balloon.target_mib, balloon.guest_mib), (0, 256));

    // Killing a restored VMM under its task: the task ends with 137 and nothing is left.
    let pids = PodPids::of(&c, "exec");
    signal(pids.vmm_inside, Signal::SIGKILL);
    c.wait_status("exec", "STOPPED", Duration::from_secs(30));
    assert_eq!(c.delete_task("exec"), Some(137));
    let _ = c.ctr(&["container", "delete", "exec"]);
    c.assert_clean("exec", Duration::from_secs(15));

    // One byte of the template's memory changed: hull-vmm refuses it, the pod boots.
    let memory = made[0].join(MEMORY_FILE);
    flip_byte(&memory, 4096);
    let fell = count(&c, FELL_BACK);
    let out = c.run_rm("damaged", &["true"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(count(&c, FELL_BACK), fell + 1, "{}", c.explain(&out));
    assert!(c.log().contains("checksum"), "{}", c.explain(&out));
    c.assert_clean("damaged", Duration::from_secs(15));

    // Its size changed: refused before hull-vmm runs, named corrupt, the pod boots.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&memory)
        .unwrap()
        .set_len(record.memory_bytes + 1)
        .unwrap();
    let out = c.run_rm("truncated", &["true"]);
    assert!(out.status.success(), "{}", c.explain(&out));
    assert_eq!(count(&c, FELL_BACK), fell + 2, "{}", c.explain(&out));
    assert!(c.log().contains("is corrupt"), "{}", c.explain(&out));
    c.assert_clean("truncated", Duration::from_secs(15));
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

/// Where hull-vmm cannot run: `hull check` says pods boot and why; `hull template create`
/// refuses, naming the reason.
fn without_hull_vmm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hull.toml");
    std::fs::write(
        &config,
        format!(
            "start = \"snapshot\"\ntemplate_dir = \"{}\"\n",
            dir.path().join("templates").display()
        ),
    )
    .unwrap();
    let out = Command::new(hull_binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(" start: "))
        .unwrap_or_else(|| panic!("no start line in:\n{stdout}"));
    assert!(
        line.contains("start: boot: pods run on QEMU here"),
        "{line}"
    );
    // The kernel the tests boot (a PVH vmlinux since issue 18) passes the kernel check.
    let kernel = stdout
        .lines()
        .find(|l| l.contains(" kernel: "))
        .unwrap_or_else(|| panic!("no kernel line in:\n{stdout}"));
    assert!(kernel.starts_with("ok "), "{kernel}");
    let out = Command::new(hull_binary())
        .args(["template", "create"])
        .env("HULL_CONFIG", &config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("templates need hull-vmm"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("templates").exists(), "nothing made");
    // Listing none: nothing on stdout (for scripts), the reason on stderr.
    let out = Command::new(hull_binary())
        .args(["template", "list"])
        .env("HULL_CONFIG", &config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("no templates in"),
        "{}",
        text(&out.stderr)
    );
}
