//! CRI end to end with runtime handler `hull`: a real containerd with its CRI plugin, in a network
//! namespace of the test's, driven by a Rust CRI client the way the kubelet drives it. One pod
//! serves most checks (each VM boot costs seconds under TCG).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_tests::containerd::{mounts_under, processes, Options};
use hull_tests::cri::{Cri, HANDLER};
use k8s_cri::v1::{ContainerState, ContainerStatsRequest, LinuxContainerResources};

const WAIT: Duration = Duration::from_secs(60);
const MIB: i64 = 1024 * 1024;

/// Whether pods start from a template here: on hull-vmm (named, or what `auto` picks).
fn restores() -> bool {
    match hull_tests::hypervisor_choice() {
        "hull-vmm" => true,
        "auto" => hull_runtime::vm::hull_vmm::usable().is_ok(),
        _ => false,
    }
}

/// What a running pod has on the host: one shim, one VMM, one virtiofsd, and one vhost-user vsock
/// backend unless the VMM is hull-vmm, which serves vsock itself.
fn one_pod_vm(cri: &Cri, pod: &str) -> (usize, usize, usize, usize) {
    let pod_dir = cri.containerd().run_dir().join(pod).display().to_string();
    // The jailer's command line names the VMM it runs (and says `hull-vmm` as its hostname
    // either way): QEMU is the one with a vhost-user vsock backend.
    let qemu = processes()
        .iter()
        .any(|(_, c)| c.contains("qemu-system") && c.contains(&pod_dir));
    (1, 1, 1, usize::from(qemu))
}

/// Processes of this containerd's pod `pod`: (shims, VMMs, virtiofsds, vsock backends).
fn pod_processes(cri: &Cri, pod: &str) -> (usize, usize, usize, usize) {
    let socket = cri.containerd().socket().display().to_string();
    let pod_dir = cri.containerd().run_dir().join(pod).display().to_string();
    let all = processes();
    let count = |f: &dyn Fn(&str) -> bool| all.iter().filter(|(_, c)| f(c)).count();
    (
        count(&|c| c.contains("containerd-shim-hull-v2") && c.contains(&socket)),
        // QEMU or hull-vmm (a jailed VMM is counted by its jailer, whose command line names both).
        count(&|c| (c.contains("qemu-system") || c.contains("hull-vmm")) && c.contains(&pod_dir)),
        // virtiofsd's namespace sandbox is a monitor parent and its child: one instance.
        all.iter()
            .filter(|(pid, c)| {
                c.contains("virtiofsd") && c.contains(&pod_dir) && !parent_is_virtiofsd(*pid)
            })
            .count(),
        count(&|c| c.contains("vhost-device-vsock") && c.contains(&pod_dir)),
    )
}

/// `config` with a memory limit of `mib`.
fn limited(mut config: k8s_cri::v1::ContainerConfig, mib: i64) -> k8s_cri::v1::ContainerConfig {
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: mib * MIB,
            ..Default::default()
        });
    }
    config
}

fn parent_is_virtiofsd(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid …": the comm may hold spaces, so split after its ')'.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .unwrap_or("0");
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "virtiofsd")
}

/// The mounts in the mount namespace of pod `pod`'s virtiofsd (its serving child, which sees the
/// share as `/`): (mount point, root in its file system, per-mount options).
fn virtiofsd_mounts(cri: &Cri, pod: &str) -> Vec<(String, String, String)> {
    let pod_dir = cri.containerd().run_dir().join(pod).display().to_string();
    let pid = processes()
        .into_iter()
        .find(|(pid, c)| {
            c.contains("virtiofsd") && c.contains(&pod_dir) && parent_is_virtiofsd(*pid)
        })
        .map(|(pid, _)| pid)
        .expect("the pod's virtiofsd");
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("virtiofsd's mountinfo")
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split(' ').collect();
            Some((
                (*cols.get(4)?).to_owned(),
                (*cols.get(3)?).to_owned(),
                (*cols.get(5)?).to_owned(),
            ))
        })
        .collect()
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_for_log(path: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = log_text(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no {needle:?} after {within:?}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_pod_is_one_vm_with_its_containers() {
    // The pod's VM is 320 MiB (its limits plus the overhead): the default shape here, so where
    // pods start from templates (hull-vmm) it restores the NIC template (issue 19).
    let options = Options {
        extra_config: "default_memory_mib = 320\n".into(),
        ..Options::default()
    };
    let Some(cri) = Cri::start_with(options) else {
        return;
    };
    let t0 = Instant::now();
    // The pod's summed limits, as the kubelet sends them: the VM is sized from them.
    let mut config = cri.pod_config("web");
    if let Some(linux) = config.linux.as_mut() {
        linux.resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: 192 * MIB,
            cpu_period: 100_000,
            cpu_quota: 100_000,
            ..Default::default()
        });
    }
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    eprintln!("RunPodSandbox: {:?}", t0.elapsed());
    let status = cri.pod_status(&pod).expect("PodSandboxStatus");
    let sandbox = status.status.expect("status");
    assert_eq!(
        sandbox.state,
        k8s_cri::v1::PodSandboxState::SandboxReady as i32
    );
    assert_eq!(sandbox.runtime_handler, HANDLER);
    let netns = cri.pod_netns_path(&pod).expect("the pod netns path");
    assert!(netns.exists(), "{}", netns.display());
    let restored = cri
        .containerd()
        .log()
        .matches("pod VM restored from its template")
        .count();
    assert_eq!(
        restored,
        usize::from(restores()),
        "pods restored from a template (hull-vmm restores, QEMU boots)\n{}",
        cri.log_tail()
    );

    // Two containers: an httpd on 127.0.0.1 and a ticker that logs every second.
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
    let a = cri.run_container(&pod, &config, limited(httpd, 64));
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

    // ListContainers of the pod: both, running.
    let listed = cri
        .block_on(
            cri.runtime()
                .list_containers(k8s_cri::v1::ListContainersRequest {
                    filter: Some(k8s_cri::v1::ContainerFilter {
                        pod_sandbox_id: pod.clone(),
                        ..Default::default()
                    }),
                }),
        )
        .expect("ListContainers")
        .into_inner()
        .containers;
    let mut ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert!(listed
        .iter()
        .all(|c| c.state == i32::from(ContainerState::ContainerRunning)));

    // One shim, one VM, one virtiofsd, one vsock backend (unless hull-vmm serves it) for the pod.
    let listing = || {
        processes()
            .into_iter()
            .filter(|(_, c)| c.contains(&cri.containerd().dir().display().to_string()))
            .map(|(p, c)| format!("{p}: {c}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        pod_processes(&cri, &pod),
        one_pod_vm(&cri, &pod),
        "processes of the pod:\n{}",
        listing()
    );
    let run_dirs: Vec<_> = std::fs::read_dir(cri.containerd().run_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(run_dirs, vec![pod.clone()], "one pod VM directory");
    let boot_id = |id: &str| cri.exec_out(id, &["cat", "/proc/sys/kernel/random/boot_id"]);

    // Sized from the pod's limits (192 MiB + 128 MiB overhead); a container that does not fit
    // what is left is refused, saying why.
    let meminfo = cri.exec_out(&b, &["head", "-n", "1", "/proc/meminfo"]);
    let kib: i64 = meminfo
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (250 * 1024..=320 * 1024).contains(&kib),
        "guest MemTotal {kib} KiB"
    );
    let too_big = limited(Cri::container_config("too-big", 0, &["sleep", "100"]), 160);
    // (CRI creates the task, and so the shim's container, at StartContainer.)
    let big = cri
        .create_container(&pod, &config, too_big)
        .expect("CreateContainer");
    let err = cri
        .start_container(&big)
        .expect_err("64 + 160 MiB of limits do not fit 192 MiB");
    assert!(
        err.message().contains("does not fit the pod VM")
            && err.message().contains("io.hull.memory_mib"),
        "{}",
        err.message()
    );
    cri.remove_container(&big)
        .expect("RemoveContainer of the refused container");
    assert_eq!(boot_id(&a), boot_id(&b), "one guest kernel");

    // The pod's hostname, hosts, DNS, /dev/shm and namespaces, as CRI set them.
    for id in [&a, &b] {
        assert_eq!(cri.exec_out(id, &["hostname"]).trim(), "web");
        assert_eq!(cri.exec_out(id, &["cat", "/etc/hostname"]).trim(), "web");
        let resolv = cri.exec_out(id, &["cat", "/etc/resolv.conf"]);
        assert!(
            resolv.contains("nameserver 10.88.0.53")
                && resolv.contains("search hull-test.svc.cluster.local"),
            "{resolv}"
        );
        assert!(cri
            .exec_out(id, &["cat", "/etc/hosts"])
            .contains("localhost"));
    }
    let ns =
        |id: &str, kind: &str| cri.exec_out(id, &["readlink", &format!("/proc/self/ns/{kind}")]);
    for kind in ["uts", "ipc", "net"] {
        assert_eq!(ns(&a, kind), ns(&b, kind), "{kind} namespace shared");
    }
    assert_ne!(ns(&a, "mnt"), ns(&b, "mnt"), "own mount namespace");
    cri.exec_out(&a, &["sh", "-c", "echo shared-memory > /dev/shm/hull"]);
    assert_eq!(
        cri.exec_out(&b, &["cat", "/dev/shm/hull"]).trim(),
        "shared-memory"
    );
    // Shared mappings of a /dev/shm file (what shm_open users do) work across containers.
    cri.exec_out(
        &a,
        &["sh", "-c", "head -c 4096 /dev/zero > /dev/shm/mapped"],
    );
    cri.exec_out(
        &a,
        &[
            "hull-fs-probe",
            "mmap-write",
            "/dev/shm/mapped",
            "mapped-page",
        ],
    );
    assert_eq!(
        cri.exec_out(&b, &["hull-fs-probe", "mmap-read", "/dev/shm/mapped", "11"])
            .trim(),
        "mapped-page"
    );
    // Each container has its own cgroup under the pod's, in the guest.
    let cgroup = |id: &str| cri.exec_out(id, &["cat", "/proc/self/cgroup"]);
    let (ca, cb) = (cgroup(&a), cgroup(&b));
    let cgroupns = ca.trim() == "0::/";
    if cgroupns {
        // A cgroup namespace per container: containerd's CRI asks for one where the host runs
        // cgroup v2 alone (the nested tier's L1), and each container then sees its own cgroup as
        // `/`. Its own it is: the namespaces differ, and `a`'s memory limit is its root's.
        assert_eq!(cb.trim(), "0::/", "{cb}");
        let ns = |id: &str| cri.exec_out(id, &["readlink", "/proc/self/ns/cgroup"]);
        assert_ne!(ns(&a), ns(&b));
        assert_eq!(
            cri.exec_out(&a, &["cat", "/sys/fs/cgroup/memory.max"])
                .trim(),
            (64 * MIB).to_string()
        );
    } else {
        let parent = cri.pod_cgroup("web");
        assert!(ca.contains(&format!("/{parent}/{a}")), "{ca}");
        assert!(cb.contains(&format!("/{parent}/{b}")), "{cb}");
    }

    // Containers reach each other on localhost.
    let page = cri.exec_out(&b, &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]);
    assert_eq!(page.trim(), "hello-from-httpd");

    // The pod's network: the guest NIC has the MAC of the pod's veth (a restored NIC came with
    // the template's) and the pod's IP, and the guest answers there from the pod network.
    let veth = cri
        .netns()
        .command("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-o", "link", "show", "eth0"])
        .output()
        .expect("ip link in the pod netns");
    let veth = String::from_utf8_lossy(&veth.stdout).into_owned();
    let veth_mac = veth
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {veth:?}"));
    let guest_mac = cri.exec_out(&b, &["cat", "/sys/class/net/eth0/address"]);
    assert_eq!(guest_mac.trim(), veth_mac, "the guest NIC's MAC");
    let ip = cri.pod_ip(&pod).expect("the pod IP");
    let addrs = cri.exec_out(&b, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(
        addrs.contains(&format!("inet {ip}/")),
        "{ip} not in {addrs}"
    );
    // A TCP connection to a closed port, from the pod network: the guest's own answer (a reset,
    // after ARP found it) proves the path both ways; silence would be a timeout.
    let addr: std::net::SocketAddr = format!("{ip}:9").parse().expect("the pod IP");
    let answer = cri
        .netns()
        .enter(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(20)));
    assert_eq!(
        answer.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the pod does not answer at {addr}"
    );

    // ExecSync: output and exit code.
    let r = cri
        .exec_sync(&b, &["sh", "-c", "echo out; echo err >&2; exit 3"], 30)
        .expect("ExecSync");
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );

    // Exec (streaming) through containerd's streaming server.
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
    let url = cri
        .exec_url(&b, &["head", "-n", "1"], true)
        .expect("Exec with stdin");
    let mut session = cri.stream(&url);
    session.send_stdin(b"through-stdin\n").expect("stdin");
    let out = session.finish(Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through-stdin\n",
        "{out:?}"
    );
    assert_eq!(out.exit_code, Some(0), "{out:?}");

    // Attach: the ticker's output, live.
    let url = cri.attach_url(&b, false).expect("Attach");
    let mut session = cri.stream(&url);
    assert!(
        session.read_until("tick", Duration::from_secs(20)),
        "{:?}",
        session.output()
    );
    session.close();

    // Logs land in the CRI log path, in CRI's format; ReopenContainerLog starts a new file.
    let logs = PathBuf::from(&config.log_directory);
    let text = wait_for_log(&logs.join("httpd/0.log"), "stdout F httpd-up", WAIT);
    assert!(!text.contains("tick"), "{text}");
    let ticker_log = logs.join("ticker/0.log");
    wait_for_log(&ticker_log, "stdout F tick", WAIT);
    std::fs::rename(&ticker_log, logs.join("ticker/0.log.1")).unwrap();
    cri.block_on(
        cri.runtime()
            .reopen_container_log(k8s_cri::v1::ReopenContainerLogRequest {
                container_id: b.clone(),
            }),
    )
    .expect("ReopenContainerLog");
    wait_for_log(&ticker_log, "stdout F tick", WAIT);

    // Stats from the guest's cgroups.
    let stats = cri
        .block_on(cri.runtime().container_stats(ContainerStatsRequest {
            container_id: a.clone(),
        }))
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    let cpu = stats
        .cpu
        .expect("cpu")
        .usage_core_nano_seconds
        .expect("cpu usage")
        .value;
    let memory = stats
        .memory
        .expect("memory")
        .working_set_bytes
        .expect("working set")
        .value;
    assert!(
        cpu > 0 && memory > 0,
        "cpu {cpu} ns, working set {memory} B"
    );
    // PodSandboxStats: containerd reads the pod's host cgroup, where the shim put the VMM (the
    // guest's RAM is charged there) and itself.
    let pod_stats = cri
        .block_on(
            cri.runtime()
                .pod_sandbox_stats(k8s_cri::v1::PodSandboxStatsRequest {
                    pod_sandbox_id: pod.clone(),
                }),
        )
        .unwrap_or_else(|e| panic!("PodSandboxStats: {e}\n{}", cri.log_tail()))
        .into_inner()
        .stats
        .and_then(|s| s.linux)
        .expect("linux pod stats");
    let pod_cpu = pod_stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map_or(0, |v| v.value);
    let pod_memory = pod_stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    assert!(
        pod_cpu > 0 && pod_memory > 16 << 20,
        "pod cpu {pod_cpu} ns, working set {pod_memory} B"
    );
    eprintln!("PodSandboxStats: cpu {pod_cpu} ns, working set {pod_memory} B");
    assert!(!hull_tests::host_cgroup_dirs(Path::new(&cri.pod_cgroup("web"))).is_empty());

    // UpdateContainerResources changes the guest cgroup.
    cri.block_on(cri.runtime().update_container_resources(
        k8s_cri::v1::UpdateContainerResourcesRequest {
            container_id: b.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 96 * 1024 * 1024,
                cpu_period: 100_000,
                cpu_quota: 50_000,
                ..Default::default()
            }),
            ..Default::default()
        },
    ))
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", cri.log_tail()));
    // No cgroup namespace (CRI asks for none on a cgroup v1 host): the container sees the guest's
    // hierarchy and finds its own cgroup in it; with one, its own cgroup is its root.
    let own = if cgroupns {
        "/sys/fs/cgroup".to_owned()
    } else {
        format!("/sys/fs/cgroup/{}/{b}", cri.pod_cgroup("web"))
    };
    assert_eq!(
        cri.exec_out(&b, &["cat", &format!("{own}/memory.max")])
            .trim(),
        (96 * 1024 * 1024).to_string()
    );
    assert_eq!(
        cri.exec_out(&b, &["cat", &format!("{own}/cpu.max")]).trim(),
        "50000 100000"
    );

    // StopContainer: a container that ignores SIGTERM is killed after the grace period...
    let stubborn = Cri::container_config(
        "stubborn",
        0,
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    );
    let c = cri.run_container(&pod, &config, stubborn);
    cri.wait_container(&c, ContainerState::ContainerRunning, WAIT);
    let t = Instant::now();
    cri.stop_container(&c, 3).expect("StopContainer");
    let took = t.elapsed();
    let st = cri.wait_container(&c, ContainerState::ContainerExited, WAIT);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "stop took {took:?}"
    );
    assert_eq!(st.exit_code, 137, "SIGKILLed");
    // ...one that handles it exits with its own code, before the grace period ends.
    // (Its trap must be set before the signal comes: a PID 1 without a handler ignores SIGTERM.)
    let d = cri.run_sigterm_trapper(&pod, &config);
    let t = Instant::now();
    cri.stop_container(&d, 30).expect("StopContainer");
    let took = t.elapsed();
    let st = cri.wait_container(&d, ContainerState::ContainerExited, WAIT);
    assert_eq!(st.exit_code, 7);
    assert!(took < Duration::from_secs(15), "stop took {took:?}");

    // A read-only root (`readOnlyRootFilesystem`) and a read-only volume (ConfigMap-like) are
    // read-only in virtiofsd's own mount namespace, which serves the guest, not only in the
    // guest (whose flags guest root can lift: tests/tests/e2e/escape_readonly.rs); the root still got
    // the mount points CRI's files need (the image has no /etc/hosts). The sandbox's root, an
    // image layer lent read-only, too; a writable root stays writable.
    let config_map = cri.containerd().dir().join("config-map");
    std::fs::create_dir_all(&config_map).unwrap();
    std::fs::write(config_map.join("key"), "value").unwrap();
    let mut readonly = Cri::container_config("readonly", 0, &["sleep", "1000"]);
    readonly.mounts = vec![k8s_cri::v1::Mount {
        container_path: "/config".into(),
        host_path: config_map.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    if let Some(sc) = readonly
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.readonly_rootfs = true;
    }
    let e = cri.run_container(&pod, &config, readonly);
    cri.wait_container(&e, ContainerState::ContainerRunning, WAIT);
    assert_eq!(cri.exec_out(&e, &["cat", "/config/key"]), "value");
    assert!(cri
        .exec_out(&e, &["cat", "/etc/hosts"])
        .contains("localhost"));
    let touch = cri.exec_sync(&e, &["touch", "/new"], 30).expect("ExecSync");
    assert_ne!(touch.exit_code, 0, "a read-only root took a new file");
    let served = virtiofsd_mounts(&cri, &pod);
    let flags = |point: &str| {
        served
            .iter()
            .find(|(p, _, _)| p == point)
            .map(|(_, _, f)| f.clone())
            .unwrap_or_else(|| panic!("virtiofsd has no mount at {point}: {served:?}"))
    };
    assert!(
        flags(&format!("/{e}/rootfs")).starts_with("ro,"),
        "{served:?}"
    );
    assert!(
        flags(&format!("/{pod}/rootfs")).starts_with("ro,"),
        "{served:?}"
    );
    assert!(
        flags(&format!("/{a}/rootfs")).starts_with("rw,"),
        "{served:?}"
    );
    let config_mount: Vec<&String> = served
        .iter()
        .filter(|(p, root, _)| {
            p.starts_with(&format!("/{e}/mounts/")) && root.ends_with("/config-map")
        })
        .map(|(_, _, f)| f)
        .collect();
    assert!(
        config_mount.len() == 1 && config_mount[0].starts_with("ro,"),
        "{served:?}"
    );

    // A container exits and is restarted (a new attempt) in the running pod.
    let once = |attempt| {
        Cri::container_config("once", attempt, &["sh", "-c", "echo run; sleep 2; exit 5"])
    };
    let r0 = cri.run_container(&pod, &config, once(0));
    let st = cri.wait_container(&r0, ContainerState::ContainerExited, WAIT);
    assert_eq!(st.exit_code, 5);
    let r1 = cri.run_container(&pod, &config, once(1));
    cri.wait_container(&r1, ContainerState::ContainerRunning, WAIT);
    assert_eq!(cri.exec_out(&r1, &["hostname"]).trim(), "web");
    assert_eq!(boot_id(&r1), boot_id(&a), "the restart is in the same VM");
    cri.remove_container(&r0)
        .expect("RemoveContainer of the exited attempt");
    assert_eq!(
        pod_processes(&cri, &pod),
        one_pod_vm(&cri, &pod),
        "still one shim and VM"
    );
    cri.wait_container(&a, ContainerState::ContainerRunning, WAIT);

    // The VM goes with the sandbox, and nothing is left.
    let ids = [a, b, c, d, e, r0, r1];
    let t = Instant::now();
    cri.remove_pod(&pod)
        .unwrap_or_else(|e| panic!("Stop/RemovePodSandbox: {e}\n{}", cri.log_tail()));
    eprintln!("Stop + RemovePodSandbox: {:?}", t.elapsed());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left = cri.leftovers(&pod, Some(&netns));
        for id in &ids {
            left.extend(
                mounts_under(cri.containerd().dir())
                    .into_iter()
                    .filter(|m| m.contains(id.as_str())),
            );
        }
        if pod_processes(&cri, &pod) != (0, 0, 0, 0) {
            left.push(format!("processes {:?}", pod_processes(&cri, &pod)));
        }
        // The pod's host cgroup and the parent it created.
        for dir in hull_tests::host_cgroup_dirs(Path::new(&cri.pod_cgroup("web"))) {
            left.push(format!("cgroup {}", dir.display()));
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
    eprintln!("whole test: {:?}", t0.elapsed());
}

#[test]
fn a_pod_whose_vm_cannot_start_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("not-a-kernel");
    std::fs::write(&kernel, vec![0x5a_u8; 64 * 1024]).unwrap();
    let Some(cri) = Cri::start_with(Options {
        kernel: Some(kernel),
        ..Default::default()
    }) else {
        return;
    };
    let config = cri.pod_config("broken");
    let t = Instant::now();
    let err = cri
        .run_pod(&config, HANDLER)
        .expect_err("a VM without a kernel cannot start");
    eprintln!(
        "RunPodSandbox failed after {:?}: {}",
        t.elapsed(),
        err.message()
    );
    let msg = err.message();
    // The message carries what the VMM said (the pod's directory with its log is gone).
    assert!(
        msg.contains("cannot start the pod VM") && msg.contains("VMM: "),
        "the message says why: {msg}"
    );
    assert!(cri.pods().is_empty(), "CRI keeps no pod: {:?}", cri.pods());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut left: Vec<String> = processes()
            .into_iter()
            .filter(|(_, c)| {
                c.contains(&cri.containerd().dir().display().to_string())
                    && !c.contains("containerd --config ")
            })
            .map(|(pid, c)| format!("process {pid}: {c}"))
            .collect();
        left.extend(
            mounts_under(cri.containerd().dir())
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        let run_dir = cri.containerd().run_dir();
        if std::fs::read_dir(&run_dir).is_ok_and(|mut d| d.next().is_some()) {
            left.push(format!("pods in {}", run_dir.display()));
        }
        let veths = cri
            .netns()
            .command("ip")
            .args(["-o", "link", "show", "type", "veth"])
            .output()
            .expect("ip link");
        let veths = String::from_utf8_lossy(&veths.stdout).into_owned();
        if !veths.trim().is_empty() {
            left.push(format!("veths: {veths}"));
        }
        for dir in hull_tests::host_cgroup_dirs(Path::new(&cri.pod_cgroup("broken"))) {
            left.push(format!("cgroup {}", dir.display()));
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
}
