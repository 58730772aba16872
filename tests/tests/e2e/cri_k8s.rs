//! Kubernetes behaviours a platform team checks before adopting a runtime class, through a real
//! containerd's CRI with handler `hull` (issue 16): what a VM cannot give (the node's namespaces,
//! host mount propagation) refused with why and what to use instead; setuid binaries with and
//! without no_new_privs; a NET_ADMIN container managing its own network with Debian's real tools;
//! `kubectl port-forward` reaching a port in the guest; a ConfigMap update seen inside the pod by an
//! inotify watcher and by plain reads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hull_tests::containerd::{mounts_under, processes};
use hull_tests::cri::{Cri, HANDLER};
use k8s_cri::v1::{Mount, MountPropagation, NamespaceMode, PodSandboxConfig};

/// A change to a pod's namespace options.
type ChangeNamespaces = fn(&mut k8s_cri::v1::NamespaceOption);

/// `config` with the pod's namespace options changed by `f`.
fn with_namespaces(
    mut config: PodSandboxConfig,
    f: impl FnOnce(&mut k8s_cri::v1::NamespaceOption),
) -> PodSandboxConfig {
    let options = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("the pod config has namespace options");
    f(options);
    config
}

/// Waits until containerd `cri` runs no shim, VMM or helper of a pod, mounts nothing, keeps no
/// pod directory and no veth, and the pods `names` have no host cgroup left; panics otherwise.
fn assert_no_pod_left(cri: &Cri, names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let base = cri.containerd().dir().display().to_string();
        let mut left: Vec<String> = processes()
            .into_iter()
            .filter(|(_, c)| c.contains(&base) && !c.starts_with("containerd --config"))
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
        for name in names {
            let rel = PathBuf::from(cri.pod_cgroup(name));
            for dir in hull_tests::host_cgroup_dirs(&rel) {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        if left.is_empty() {
            return;
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

/// A host directory bind-mounted on itself and made shared, as a node's `/var/lib/kubelet` is:
/// containerd allows host-to-container propagation only from such a mount. Unmounted on drop.
struct SharedMount(tempfile::TempDir);

impl SharedMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 path").to_owned();
        for args in [
            vec!["--bind", path.as_str(), path.as_str()],
            vec!["--make-shared", path.as_str()],
        ] {
            let out = Command::new("mount").args(&args).output().expect("mount");
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn node_namespaces_and_host_propagation_are_refused_with_why() {
    let Some(cri) = Cri::start() else { return };
    let t0 = Instant::now();
    // hostNetwork / hostIPC / hostPID: RunPodSandbox fails before any VM boots.
    let cases: [(&str, ChangeNamespaces, &str); 3] = [
        (
            "hostnet",
            |o| o.network = NamespaceMode::Node.into(),
            "the node's network namespace (hostNetwork)",
        ),
        (
            "hostipc",
            |o| o.ipc = NamespaceMode::Node.into(),
            "the node's IPC namespace (hostIPC)",
        ),
        (
            "hostpid",
            |o| o.pid = NamespaceMode::Node.into(),
            "the node's PID namespace (hostPID)",
        ),
    ];
    for (name, change, asked) in cases {
        let config = with_namespaces(cri.pod_config(name), change);
        let err = cri
            .run_pod(&config, HANDLER)
            .expect_err("a pod asking for the node's namespace is refused");
        let msg = err.message();
        eprintln!("{name}: {:?} {msg}", err.code());
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{msg}");
        assert!(
            msg.contains(&format!("the pod asks for {asked}, which hull cannot give"))
                && msg.contains("a VM with its own kernel")
                && msg.contains("runc RuntimeClass"),
            "the message says what, why and what instead: {msg}"
        );
    }
    assert!(cri.pods().is_empty(), "CRI keeps no pod: {:?}", cri.pods());
    assert_no_pod_left(&cri, &["hostnet", "hostipc", "hostpid"]);
    eprintln!("three refusals: {:?}", t0.elapsed());

    // A running pod: a container asking for host mount propagation is refused, the pod runs on
    // and a private mount of the same directory is fine.
    let shared = SharedMount::new();
    let config = cri.pod_config("prop");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    let volume = |propagation: MountPropagation| {
        let mut c = Cri::container_config("vol", 0, &["sleep", "600"]);
        c.mounts = vec![Mount {
            container_path: "/node".into(),
            host_path: shared.path().display().to_string(),
            propagation: propagation.into(),
            ..Default::default()
        }];
        c
    };
    for (propagation, mode) in [
        (
            MountPropagation::PropagationHostToContainer,
            "HostToContainer",
        ),
        (MountPropagation::PropagationBidirectional, "Bidirectional"),
    ] {
        // containerd 1.6 creates the task (the shim's Create) at StartContainer: the refusal
        // comes there, and the container is left created, never running, for the kubelet to
        // remove.
        let id = cri
            .create_container(&pod, &config, volume(propagation))
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", cri.log_tail()));
        let err = cri
            .start_container(&id)
            .expect_err("host mount propagation is refused");
        let msg = err.message();
        eprintln!("{mode}: {:?} {msg}", err.code());
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{msg}");
        assert!(
            msg.contains(&format!("the container asks for mount propagation {mode}"))
                && msg.contains("on /node")
                && msg.contains("virtio-fs")
                && msg.contains("runc RuntimeClass"),
            "{msg}"
        );
        let state = cri.container_status(&id).expect("ContainerStatus").state;
        assert_ne!(
            state,
            i32::from(k8s_cri::v1::ContainerState::ContainerRunning)
        );
        cri.remove_container(&id).expect("RemoveContainer");
    }
    let id = cri.run_container(&pod, &config, volume(MountPropagation::PropagationPrivate));
    std::fs::write(shared.path().join("f"), "from-the-node").unwrap();
    assert_eq!(cri.exec_out(&id, &["cat", "/node/f"]), "from-the-node");
    cri.remove_pod(&pod).expect("remove pod");

    // host_namespaces = "ignore": the same hostNetwork pod starts, in the VM's namespaces.
    let hull_toml = cri.containerd().dir().join("hull.toml");
    let mut text = std::fs::read_to_string(&hull_toml).unwrap();
    text.push_str("host_namespaces = \"ignore\"\n");
    std::fs::write(&hull_toml, text).unwrap();
    let config = with_namespaces(cri.pod_config("hostnet"), |o| {
        o.network = NamespaceMode::Node.into();
    });
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox with ignore: {e}\n{}", cri.log_tail()));
    let id = cri.run_container(
        &pod,
        &config,
        Cri::container_config("c", 0, &["sleep", "600"]),
    );
    assert_eq!(cri.exec_out(&id, &["echo", "ran"]), "ran\n");
    cri.remove_pod(&pod).expect("remove pod");
    assert_no_pod_left(&cri, &["hostnet", "prop"]);
    eprintln!("whole test: {:?}", t0.elapsed());
}

/// `config` running as uid 1000 with image `image`, `no_new_privs` as given, and `caps` added.
fn secured(
    mut config: k8s_cri::v1::ContainerConfig,
    image: &str,
    uid: Option<i64>,
    no_new_privs: bool,
    caps: &[&str],
) -> k8s_cri::v1::ContainerConfig {
    config.image = Some(k8s_cri::v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    });
    let security = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("the container config has a security context");
    security.run_as_user = uid.map(|value| k8s_cri::v1::Int64Value { value });
    security.no_new_privs = no_new_privs;
    security.capabilities = Some(k8s_cri::v1::Capability {
        add_capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
        ..Default::default()
    });
    config
}

/// The options of the mount at `target` in `mountinfo` (per-mount and super-block ones).
fn mount_options(mountinfo: &str, target: &str) -> String {
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target))
        .map(|l| {
            let cols: Vec<&str> = l.split(' ').collect();
            format!("{} {}", cols[5], cols.last().unwrap_or(&""))
        })
        .unwrap_or_else(|| panic!("no mount at {target} in:\n{mountinfo}"))
}

const SUID_IMAGE: &str = "hull.test/suid:latest";

#[test]
fn setuid_binaries_take_effect_unless_no_new_privs() {
    let Some(cri) = Cri::start() else { return };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("suid.tar");
    let probe = hull_tests::rootfs::fs_probe_binary();
    hull_tests::containerd::build_image_files(
        &archive,
        SUID_IMAGE,
        &[hull_tests::containerd::ImageFile {
            from: &probe,
            to: "bin/suid-probe",
            mode: Some(0o4755),
        }],
        None,
    )
    .expect("setuid image");
    cri.import_image(&archive, SUID_IMAGE).expect("import");
    let config = cri.pod_config("suid");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    let sleeper = |name: &str| Cri::container_config(name, 0, &["sleep", "600"]);
    // allowPrivilegeEscalation: true (the default) — no_new_privs off.
    let free = cri.run_container(
        &pod,
        &config,
        secured(sleeper("free"), SUID_IMAGE, Some(1000), false, &[]),
    );
    // allowPrivilegeEscalation: false — no_new_privs on.
    let nnp = cri.run_container(
        &pod,
        &config,
        secured(sleeper("nnp"), SUID_IMAGE, Some(1000), true, &[]),
    );
    assert_eq!(
        cri.exec_out(&free, &["/bin/suid-probe", "ids"]).trim(),
        "uid=1000 euid=0",
        "a setuid-root binary runs with euid 0, as under runc"
    );
    assert_eq!(
        cri.exec_out(&nnp, &["/bin/suid-probe", "ids"]).trim(),
        "uid=1000 euid=1000",
        "no_new_privs blocks setuid"
    );
    // The root is not nosuid; the mounts the spec makes nosuid still are.
    let mountinfo = cri.exec_out(&free, &["cat", "/proc/self/mountinfo"]);
    assert!(
        !mount_options(&mountinfo, "/").contains("nosuid"),
        "{mountinfo}"
    );
    for nosuid in ["/dev", "/dev/pts", "/dev/mqueue", "/sys"] {
        assert!(
            mount_options(&mountinfo, nosuid).contains("nosuid"),
            "{nosuid}: {mountinfo}"
        );
    }
    cri.remove_pod(&pod).expect("remove pod");
    assert_no_pod_left(&cri, &["suid"]);
    eprintln!("whole test: {:?}", t0.elapsed());
}

const NET_IMAGE: &str = "hull.test/nettools:latest";

/// Runs `script` with `sh -c` in container `id`: (exit code, stdout + stderr).
fn sh(cri: &Cri, id: &str, script: &str) -> (i32, String) {
    let r = cri
        .exec_sync(id, &["sh", "-c", script], 60)
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e}\n{}", cri.log_tail()));
    let mut text = String::from_utf8_lossy(&r.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, text)
}

#[test]
fn net_admin_pods_manage_their_own_network() {
    let Some(cri) = Cri::start() else { return };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("nettools.tar");
    use hull_tests::host_tools::{build_tools_image, Tool};
    let probe = hull_tests::rootfs::fs_probe_binary().display().to_string();
    let tools = [
        Tool {
            host: "/usr/sbin/xtables-legacy-multi",
            image: "usr/sbin/iptables-legacy",
        },
        Tool {
            host: "/usr/sbin/xtables-legacy-multi",
            image: "usr/sbin/ip6tables-legacy",
        },
        Tool {
            host: "/usr/sbin/xtables-nft-multi",
            image: "usr/sbin/iptables-nft",
        },
        Tool {
            host: "/usr/sbin/xtables-nft-multi",
            image: "usr/sbin/ip6tables-nft",
        },
        Tool {
            host: "/usr/sbin/nft",
            image: "usr/sbin/nft",
        },
        Tool {
            host: "/usr/sbin/brctl",
            image: "usr/sbin/brctl",
        },
        Tool {
            host: "/bin/ip",
            image: "usr/sbin/ip",
        },
        Tool {
            host: &probe,
            image: "bin/probe",
        },
    ];
    if let Err(e) = build_tools_image(
        &archive,
        NET_IMAGE,
        &tools,
        &["/usr/lib/x86_64-linux-gnu/xtables"],
    ) {
        hull_tests::skip_or_fail(&format!("network tools image: {e}"));
        return;
    }
    cri.import_image(&archive, NET_IMAGE).expect("import");
    eprintln!("image: {:?}", t0.elapsed());
    let config = cri.pod_config("netadmin");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    let sleeper = |name: &str| Cri::container_config(name, 0, &["sleep", "600"]);
    let admin = cri.run_container(
        &pod,
        &config,
        secured(sleeper("admin"), NET_IMAGE, None, false, &["NET_ADMIN"]),
    );
    let plain = cri.run_container(
        &pod,
        &config,
        secured(sleeper("plain"), NET_IMAGE, None, false, &[]),
    );
    // Each step as a platform's tools run it; with NET_ADMIN it works, without it is refused
    // for want of the capability (not for want of kernel support).
    let steps: [(&str, &str, &str); 12] = [
        ("bridge", "/usr/sbin/brctl addbr br-hull && /usr/sbin/brctl show", "br-hull"),
        (
            "veth",
            "/usr/sbin/ip link add veth-a type veth peer name veth-b && /usr/sbin/ip -o link show veth-a",
            "veth-a@veth-b",
        ),
        (
            "vxlan",
            "/usr/sbin/ip link add vx42 type vxlan id 42 dstport 4789 && /usr/sbin/ip -d -o link show vx42",
            "vxlan id 42",
        ),
        (
            "bridge port",
            "/usr/sbin/ip link set veth-b master br-hull && /usr/sbin/brctl show br-hull",
            "veth-b",
        ),
        (
            "iptables (nft) nat REDIRECT",
            "/usr/sbin/iptables-nft -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 8080 -j REDIRECT --to-ports 15001 \
             && /usr/sbin/iptables-nft -t nat -S OUTPUT",
            "--to-ports 15001",
        ),
        (
            "iptables (nft) mesh matches",
            "/usr/sbin/iptables-nft -t nat -N MESH && /usr/sbin/iptables-nft -t nat -A MESH -m owner --uid-owner 1337 -j RETURN \
             && /usr/sbin/iptables-nft -t nat -A MESH -m mark --mark 0x539 -m comment --comment hull -j RETURN \
             && /usr/sbin/iptables-nft -t nat -A MESH -p tcp -m multiport --dports 15000,15090 -m addrtype --dst-type LOCAL -j RETURN \
             && /usr/sbin/iptables-nft -t filter -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT \
             && /usr/sbin/iptables-nft -t mangle -A PREROUTING -p tcp -j MARK --set-mark 7 \
             && /usr/sbin/iptables-nft -t mangle -A PREROUTING -p tcp -m socket --transparent -j RETURN \
             && /usr/sbin/iptables-nft -t mangle -A PREROUTING -p tcp --dport 9999 -j TPROXY --on-port 15006 --tproxy-mark 0x1/0x1 \
             && /usr/sbin/iptables-nft -t nat -A POSTROUTING -o eth9 -j MASQUERADE \
             && /usr/sbin/iptables-nft -t nat -S MESH",
            "--uid-owner 1337",
        ),
        (
            "ip6tables (nft) filter",
            "/usr/sbin/ip6tables-nft -t filter -A INPUT -p tcp --dport 9 -j REJECT && /usr/sbin/ip6tables-nft -S INPUT",
            "--dport 9 -j REJECT",
        ),
        (
            "iptables (legacy) nat",
            "/usr/sbin/iptables-legacy -t nat -A OUTPUT -p tcp --dport 9090 -j DNAT --to-destination 127.0.0.1:9091 \
             && /usr/sbin/iptables-legacy -t nat -S OUTPUT",
            "--to-destination 127.0.0.1:9091",
        ),
        (
            "iptables (legacy) filter",
            "/usr/sbin/iptables-legacy -A INPUT -p udp --dport 9 -m state --state NEW -j DROP && /usr/sbin/iptables-legacy -S INPUT",
            "--dport 9",
        ),
        (
            "ip6tables (legacy) nat",
            "/usr/sbin/ip6tables-legacy -t nat -A OUTPUT -p tcp --dport 8081 -j REDIRECT --to-ports 15002 \
             && /usr/sbin/ip6tables-legacy -t nat -S OUTPUT",
            "--to-ports 15002",
        ),
        (
            "nftables",
            "/usr/sbin/nft add table inet hull && /usr/sbin/nft 'add chain inet hull in { type filter hook input priority 0; }' \
             && /usr/sbin/nft add rule inet hull in tcp dport 9 ct state new counter drop \
             && /usr/sbin/nft 'add chain inet hull out { type nat hook output priority -100; }' \
             && /usr/sbin/nft add rule inet hull out tcp dport 8082 redirect to :15003 \
             && /usr/sbin/nft list table inet hull",
            "redirect to :15003",
        ),
        ("tun", "cat /sys/class/misc/tun/dev", "10:200"),
    ];
    for (what, script, expect) in steps {
        let (code, out) = sh(&cri, &admin, script);
        assert!(
            code == 0 && out.contains(expect),
            "{what} with NET_ADMIN: exit {code}, expected {expect:?} in:\n{out}"
        );
        eprintln!("{what}: ok");
    }
    // The REDIRECT rule takes effect: conntrack + NAT send 127.0.0.1:8080 to the httpd on 15001.
    // (The static probe connects: busybox's static wget crashes in an image that has glibc's
    // shared libraries, which its NSS lookups then try to load.)
    let (code, out) = sh(
        &cri,
        &admin,
        "mkdir -p /www && echo redirected-by-nat > /www/index.html && \
         httpd -p 127.0.0.1:15001 -h /www </dev/null >/dev/null 2>&1 && sleep 0.5 && \
         /bin/probe tcp-connect 127.0.0.1:8080 'GET /index.html HTTP/1.0\n'",
    );
    assert!(
        code == 0 && out.contains("200 OK") && out.contains("redirected-by-nat"),
        "NAT REDIRECT: exit {code}:\n{out}"
    );
    // Without NET_ADMIN: the capability is missing, nothing else.
    for (what, script) in [
        ("bridge", "/usr/sbin/brctl addbr br-plain"),
        (
            "veth",
            "/usr/sbin/ip link add veth-c type veth peer name veth-d",
        ),
        (
            "iptables (nft)",
            "/usr/sbin/iptables-nft -t nat -A OUTPUT -p tcp --dport 1 -j RETURN",
        ),
        (
            "iptables (legacy)",
            "/usr/sbin/iptables-legacy -t nat -A OUTPUT -p tcp --dport 1 -j RETURN",
        ),
        ("nftables", "/usr/sbin/nft add table inet plain"),
    ] {
        let (code, out) = sh(&cri, &plain, script);
        assert_ne!(code, 0, "{what} without NET_ADMIN succeeded:\n{out}");
        let lower = out.to_lowercase();
        assert!(
            lower.contains("operation not permitted") || lower.contains("permission denied"),
            "{what} without NET_ADMIN fails for the capability:\n{out}"
        );
        assert!(
            !lower.contains("not installed") && !lower.contains("not supported"),
            "{out}"
        );
    }
    cri.remove_pod(&pod).expect("remove pod");
    assert_no_pod_left(&cri, &["netadmin"]);
    eprintln!("whole test: {:?}", t0.elapsed());
}

/// One pod for the checks of a running pod's services: `kubectl port-forward` reaching a port in
/// the guest, and a ConfigMap update seen inside the pod.
#[test]
fn port_forward_and_configmap_updates_reach_the_guest() {
    let Some(cri) = Cri::start() else { return };
    let t0 = Instant::now();
    let config = cri.pod_config("pf");
    let pod = cri
        .run_pod(&config, HANDLER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cri.log_tail()));
    port_forward_reaches_the_guests_port(&cri, &pod, &config);
    eprintln!("port-forward: {:?}", t0.elapsed());
    let t1 = Instant::now();
    configmap_swaps_are_seen_by_watchers_and_reads(&cri, &pod, &config);
    eprintln!("configmap updates: {:?}", t1.elapsed());
    cri.remove_pod(&pod).expect("remove pod");
    assert_no_pod_left(&cri, &["pf"]);
    eprintln!("whole test: {:?}", t0.elapsed());
}

fn port_forward_reaches_the_guests_port(cri: &Cri, pod: &str, config: &PodSandboxConfig) {
    // Bound to the guest's loopback only: kubectl port-forward reaches such servers too.
    let web = cri.run_container(
        pod,
        config,
        Cri::container_config(
            "web",
            0,
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello-through-port-forward > /www/index.html && \
                 exec httpd -f -p 127.0.0.1:8080 -h /www",
            ],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while cri
        .exec_sync(&web, &["wget", "-q", "-O-", "http://127.0.0.1:8080/"], 10)
        .map_or(true, |r| r.exit_code != 0)
    {
        assert!(Instant::now() < deadline, "httpd did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    for round in 0..2 {
        let url = cri
            .port_forward_url(pod, 8080)
            .unwrap_or_else(|e| panic!("PortForward: {e}\n{}", cri.log_tail()));
        let mut session = cri.stream(&format!("{url}?port=8080"));
        session
            .send_stdin(b"GET /index.html HTTP/1.0\r\n\r\n")
            .expect("send the request");
        let seen = session.read_data_until("hello-through-port-forward", Duration::from_secs(20));
        let out = session.close();
        assert!(
            seen,
            "round {round}: data {:?}, error channel {:?}\n{}",
            String::from_utf8_lossy(&out.data),
            String::from_utf8_lossy(&out.stdout),
            cri.log_tail()
        );
        assert!(String::from_utf8_lossy(&out.data).contains("200 OK"));
    }
    // A port nobody listens on: the error channel says so, nothing hangs.
    let url = cri.port_forward_url(pod, 8081).expect("PortForward");
    let mut session = cri.stream(&format!("{url}?port=8081"));
    let _ = session.send_stdin(b"GET / HTTP/1.0\r\n\r\n");
    let out = session.finish(Duration::from_secs(10));
    assert!(
        !String::from_utf8_lossy(&out.data).contains("HTTP/1.0 200"),
        "{out:?}"
    );
}

/// What the kubelet's `AtomicWriter` does to a ConfigMap volume's host directory `dir`: the
/// payload `files` into a new directory `ts`, `..data_tmp -> ts` renamed over `..data`, a
/// `<key> -> ..data/<key>` link per new key, the links of gone keys and the old directory removed.
fn kubelet_update(dir: &Path, ts: &str, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::create_dir(dir.join(ts)).unwrap();
    for (key, value) in files {
        std::fs::write(dir.join(ts).join(key), value).unwrap();
    }
    symlink(ts, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (key, _) in files {
        if std::fs::symlink_metadata(dir.join(key)).is_err() {
            symlink(format!("..data/{key}"), dir.join(key)).unwrap();
        }
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !files.iter().any(|(k, _)| *k == name) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// Polls `what` (true when done) up to 30 s (TCG is slow; no timing is asserted); panics with
/// `explain` after that.
fn poll(what: impl Fn() -> bool, explain: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !what() {
        assert!(Instant::now() < deadline, "{}", explain());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A ConfigMap volume (the kubelet's layout, mounted read-only as the kubelet does) updated on
/// the host: an inotify watcher in the container sees the `..data` swap, and plain reads see the
/// new keys and values, the gone key gone (issue 16).
fn configmap_swaps_are_seen_by_watchers_and_reads(cri: &Cri, pod: &str, config: &PodSandboxConfig) {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("kubernetes.io~configmap/settings");
    std::fs::create_dir_all(&volume).unwrap();
    kubelet_update(
        &volume,
        "..2026_12_06_08_00_00.1",
        &[("key", "v1"), ("gone", "bye")],
    );
    // A Secret's `defaultMode: 0640` with an `fsGroup`: the copy keeps mode and owner.
    let key = volume.join("..2026_12_06_08_00_00.1/key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&key, Some(0), Some(2000)).unwrap();
    let probe = hull_tests::rootfs::fs_probe_binary();
    let mut c = Cri::container_config(
        "cfg",
        0,
        &[
            "sh",
            "-c",
            "/probe inotify-watch /cfg >/tmp/events 2>&1 & exec sleep 600",
        ],
    );
    c.mounts = vec![
        Mount {
            container_path: "/cfg".into(),
            host_path: volume.display().to_string(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/probe".into(),
            host_path: probe.display().to_string(),
            readonly: true,
            ..Default::default()
        },
    ];
    let id = cri.run_container(pod, config, c);
    // Empty until the container's shell has made the file (the container runs before it has).
    let events = || cri.exec_out(&id, &["sh", "-c", "cat /tmp/events 2>/dev/null; true"]);
    poll(
        || events().contains("watching /cfg"),
        || format!("the watcher did not start: {}", events()),
    );
    assert_eq!(
        cri.exec_out(&id, &["cat", "/cfg/key", "/cfg/gone"]),
        "v1bye"
    );
    // Copied into a guest tmpfs, not shared over virtio-fs (whose events never reach the guest).
    let mounts = cri.exec_out(&id, &["cat", "/proc/self/mounts"]);
    assert!(mounts.contains(" /cfg tmpfs ro,"), "{mounts}");
    assert_eq!(
        cri.exec_out(&id, &["stat", "-L", "-c", "%a %u:%g", "/cfg/key"]),
        "640 0:2000\n"
    );
    let touch = cri.exec_sync(&id, &["touch", "/cfg/new"], 30).unwrap();
    assert_ne!(touch.exit_code, 0, "the volume stays read-only");
    assert!(!events().contains("..data"), "{}", events());

    let t = Instant::now();
    kubelet_update(
        &volume,
        "..2026_12_06_08_01_00.2",
        &[("key", "v2"), ("added", "new")],
    );
    poll(
        || events().contains("IN_MOVED_TO ..data"),
        || format!("the watcher saw no swap: {}\n{}", events(), cri.log_tail()),
    );
    poll(
        || cri.exec_out(&id, &["cat", "/cfg/key"]) == "v2",
        || format!("read {:?}", cri.exec_out(&id, &["cat", "/cfg/key"])),
    );
    eprintln!("first update seen after {:?}", t.elapsed());
    assert_eq!(cri.exec_out(&id, &["cat", "/cfg/added"]), "new");
    let gone = cri
        .exec_sync(&id, &["test", "-e", "/cfg/gone"], 30)
        .unwrap();
    assert_ne!(gone.exit_code, 0, "a removed key is gone");
    // The watch goes on: a second update is seen too.
    kubelet_update(&volume, "..2026_12_06_08_02_00.3", &[("key", "v3")]);
    poll(
        || cri.exec_out(&id, &["cat", "/cfg/key"]) == "v3",
        || format!("read {:?}", cri.exec_out(&id, &["cat", "/cfg/key"])),
    );
    let ls = cri.exec_out(&id, &["ls", "-a", "/cfg"]);
    let names: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(names.len(), 5, "., .., one payload dir, ..data, key: {ls}");
    assert!(names.contains(&"..data") && names.contains(&"key"), "{ls}");
}
