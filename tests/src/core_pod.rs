//! The CRI pod checks every engine must pass with hull, in one pod (a VM boot costs seconds under
//! TCG): two containers in one VM sharing the pod's hostname, UTS, IPC and network (localhost),
//! sized by `io.hull.memory_mib`, ContainerStats, ExecSync, streaming Exec and Attach, CRI logs,
//! graceful, forced and immediate StopContainer, a restart in the same VM, RemoveContainer, and
//! the pod's removal leaving nothing. `tests/tests/engines.rs` runs them under
//! containerd 1.7 and CRI-O; containerd 1.6's own suite (`tests/tests/cri_pod.rs`) checks much
//! more.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::{ContainerState, ContainerStatsRequest, VersionRequest};

use crate::containerd::processes;
use crate::cri::{Cri, HANDLER};

const WAIT: Duration = Duration::from_secs(60);

/// The pod VM's guest RAM, asked for with `io.hull.memory_mib`.
const POD_MEMORY_MIB: i64 = 384;

/// What the engine said it is (CRI `Version`): runtime name and version.
pub fn engine_version(cri: &Cri) -> (String, String) {
    let v = cri
        .block_on(cri.runtime().version(VersionRequest {
            version: "v1".into(),
        }))
        .unwrap_or_else(|e| panic!("Version: {e}\n{}", cri.log_tail()))
        .into_inner();
    (v.runtime_name, v.runtime_version)
}

/// The processes of hull pod `pod` under this engine: (shims, VMMs, virtiofsds, vsock backends).
/// A shim is known by its working directory (a bundle in the engine's directory), the others by
/// the pod's run directory on their command lines.
pub fn pod_processes(cri: &Cri, pod: &str) -> (usize, usize, usize, usize) {
    let pod_dir = cri.run_dir().join(pod).display().to_string();
    let all = processes();
    let count = |f: &dyn Fn(u32, &str) -> bool| all.iter().filter(|(p, c)| f(*p, c)).count();
    let in_engine = |pid: u32| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(cri.dir()))
    };
    (
        count(&|p, c| c.contains("containerd-shim-hull-v2") && in_engine(p)),
        count(&|_, c| {
            (c.contains("qemu-system") || c.contains("hull-vmm")) && c.contains(&pod_dir)
        }),
        // virtiofsd's namespace sandbox is a monitor and its child: count the monitors.
        count(&|p, c| {
            c.contains("virtiofsd") && c.contains(&pod_dir) && !parent_is(p, "virtiofsd")
        }),
        count(&|_, c| c.contains("vhost-device-vsock") && c.contains(&pod_dir)),
    )
}

fn parent_is(pid: u32, comm: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .unwrap_or("0");
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == comm)
}

fn wait_for_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no {needle:?} after {WAIT:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the core checks on a pod named `name` with handler `hull`. `leftovers(pod id, its network
/// namespace file if the engine says)` lists what the engine left of the pod (processes, mounts,
/// namespaces, cgroups); it must come out empty once the pod is removed.
pub fn core_pod(cri: &Cri, name: &str, leftovers: &dyn Fn(&str, Option<&Path>) -> Vec<String>) {
    let t0 = Instant::now();
    // Sized by hull's pod annotation (allowed by the default `sizing_annotations`), which both
    // engines pass to the sandbox's spec.
    let mut config = cri.pod_config(name);
    config
        .annotations
        .insert("io.hull.memory_mib".into(), POD_MEMORY_MIB.to_string());
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    eprintln!("RunPodSandbox: {:?}", t0.elapsed());
    let sandbox = cri
        .pod_status(&pod)
        .expect("PodSandboxStatus")
        .status
        .expect("status");
    assert_eq!(
        sandbox.state,
        k8s_cri::v1::PodSandboxState::SandboxReady as i32
    );
    // CRI-O 1.26 leaves the handler out of the status (the one-VM check below shows it is hull's).
    if !cri.is_crio() {
        assert_eq!(sandbox.runtime_handler, HANDLER);
    }
    let netns = cri.pod_netns_path(&pod);
    eprintln!("the pod's network namespace: {netns:?}");

    // Two containers: an httpd on 127.0.0.1 and a ticker that logs every second (and, as PID 1
    // without a handler, ignores SIGTERM).
    let httpd = Cri::container_config(
        "httpd",
        0,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-httpd > /www/index.html && echo httpd-up && \
             exec httpd -f -p 127.0.0.1:8080 -h /www",
        ],
    );
    let a = cri.run_container(&pod, &config, httpd);
    let ticker = Cri::container_config(
        "ticker",
        0,
        &["sh", "-c", "while :; do echo tick; sleep 1; done"],
    );
    let b = cri.run_container(&pod, &config, ticker);
    for id in [&a, &b] {
        cri.wait_container(id, ContainerState::ContainerRunning, WAIT);
    }
    eprintln!("pod + 2 containers running: {:?}", t0.elapsed());

    // One shim, one VM, one virtiofsd, one vsock backend: the pod's.
    assert_eq!(
        pod_processes(cri, &pod),
        (1, 1, 1, 1),
        "processes of the pod"
    );
    let run_dirs: Vec<_> = std::fs::read_dir(cri.run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(run_dirs, vec![pod.clone()], "one pod VM directory");
    let boot_id = |id: &str| cri.exec_out(id, &["cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(boot_id(&a), boot_id(&b), "one guest kernel");
    for id in [&a, &b] {
        assert_eq!(cri.exec_out(id, &["hostname"]).trim(), name);
    }
    let ns =
        |id: &str, kind: &str| cri.exec_out(id, &["readlink", &format!("/proc/self/ns/{kind}")]);
    for kind in ["uts", "ipc", "net"] {
        assert_eq!(ns(&a, kind), ns(&b, kind), "{kind} namespace shared");
    }
    assert_ne!(ns(&a, "mnt"), ns(&b, "mnt"), "own mount namespace");
    let page = cri.exec_out(&b, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]);
    assert_eq!(page.trim(), "hello-from-httpd");
    let meminfo = cri.exec_out(&a, &["head", "-n", "1", "/proc/meminfo"]);
    let kib: i64 = meminfo
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        ((POD_MEMORY_MIB - 80) * 1024..=POD_MEMORY_MIB * 1024).contains(&kib),
        "guest MemTotal {kib} KiB for a pod of {POD_MEMORY_MIB} MiB"
    );

    // ContainerStats from the guest's cgroups (what `kubectl top` reads).
    let stats = cri
        .block_on(cri.runtime().container_stats(ContainerStatsRequest {
            container_id: a.clone(),
        }))
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", cri.log_tail()))
        .into_inner()
        .stats
        .unwrap_or_else(|| panic!("ContainerStats: no stats\n{}", cri.log_tail()));
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map_or(0, |v| v.value);
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    assert!(
        cpu > 0 && memory > 0,
        "cpu {cpu} ns, working set {memory} B"
    );

    // ExecSync and streaming Exec: output apart, exit codes.
    let r = cri
        .exec_sync(&b, &["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
        .expect("ExecSync");
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );
    let url = cri
        .exec_url(
            &b,
            &["sh", "-c", "echo streamed; echo oops >&2; exit 4"],
            false,
        )
        .expect("Exec");
    let out = cri.stream(&url).finish(Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "streamed\n",
        "{out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n", "{out:?}");
    assert_eq!(out.exit_code, Some(4), "{out:?}");
    // Attach: the ticker's output, live.
    let url = cri.attach_url(&b, false).expect("Attach");
    let mut session = cri.stream(&url);
    assert!(
        session.read_until("tick", Duration::from_secs(20)),
        "{:?}",
        session.output()
    );
    session.close();

    // Logs in CRI's format, each container's in its own file.
    let logs = PathBuf::from(&config.log_directory);
    let text = wait_for_log(&logs.join("httpd/0.log"), "stdout F httpd-up");
    assert!(!text.contains("tick"), "{text}");
    wait_for_log(&logs.join("ticker/0.log"), "stdout F tick");

    // StopContainer: one that handles SIGTERM exits with its own code before the grace period
    // ends; the ticker is killed once its grace period is over.
    let c = cri.run_sigterm_trapper(&pod, &config);
    let t = Instant::now();
    cri.stop_container(&c, 30).expect("StopContainer");
    let st = cri.wait_container(&c, ContainerState::ContainerExited, WAIT);
    assert_eq!(st.exit_code, 7);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    cri.stop_container(&b, 2).expect("StopContainer");
    let st = cri.wait_container(&b, ContainerState::ContainerExited, WAIT);
    let took = t.elapsed();
    assert_eq!(st.exit_code, 137, "SIGKILLed");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "stop took {took:?}"
    );
    // RemoveContainer of the stopped ones; the pod's VM and httpd are still there.
    for id in [&b, &c] {
        cri.remove_container(id)
            .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", cri.log_tail()));
        assert!(cri.container_status(id).is_err(), "{id} is gone");
    }
    assert_eq!(cri.exec_out(&a, &["hostname"]).trim(), name);
    assert_eq!(
        pod_processes(cri, &pod),
        (1, 1, 1, 1),
        "still one shim and VM"
    );
    // A container exits and its next attempt starts in the same VM (a restart, as the kubelet
    // does it).
    let once = |attempt| Cri::container_config("once", attempt, &["sh", "-c", "echo run; exit 5"]);
    let r0 = cri.run_container(&pod, &config, once(0));
    let st = cri.wait_container(&r0, ContainerState::ContainerExited, WAIT);
    assert_eq!(st.exit_code, 5);
    let r1 = cri.run_container(
        &pod,
        &config,
        Cri::container_config("once", 1, &["sleep", "600"]),
    );
    cri.wait_container(&r1, ContainerState::ContainerRunning, WAIT);
    assert_eq!(boot_id(&r1), boot_id(&a), "the restart is in the same VM");
    cri.remove_container(&r0)
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}\n{}", cri.log_tail()));

    // A grace period of 0 kills at once (CRI-O's StopPodSandbox would give httpd and the sleeper,
    // which as PID 1 ignore SIGTERM, 10 s each first; containerd's kills at once).
    for id in [&a, &r1] {
        cri.stop_container(id, 0).expect("StopContainer");
        let st = cri.wait_container(id, ContainerState::ContainerExited, WAIT);
        assert_eq!(st.exit_code, 137, "SIGKILLed");
    }

    // The VM goes with the sandbox, and nothing is left.
    let t = Instant::now();
    cri.remove_pod(&pod)
        .unwrap_or_else(|e| panic!("Stop/RemovePodSandbox: {e}\n{}", cri.log_tail()));
    eprintln!("Stop + RemovePodSandbox: {:?}", t.elapsed());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = leftovers(&pod, netns.as_deref());
        if pod_processes(cri, &pod) != (0, 0, 0, 0) {
            left.push(format!("processes {:?}", pod_processes(cri, &pod)));
        }
        if std::fs::read_dir(cri.run_dir()).is_ok_and(|mut d| d.next().is_some()) {
            left.push(format!("pods in {}", cri.run_dir().display()));
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind:\n{}\n{}",
            left.join("\n"),
            cri.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        cri.pods().is_empty(),
        "the engine keeps no pod: {:?}",
        cri.pods()
    );
    eprintln!("core pod checks: {:?}", t0.elapsed());
}
