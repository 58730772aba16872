//! A privileged container (`ctr run --privileged`: every capability, every device, no masked
//! paths) is hostile and tries to leave its VM: host files outside the pod's share, host vsock
//! ports nobody listens on (and the agent's own ports over the guest's loopback), and the host's
//! network namespace. Each attempt's output is checked byte for byte, next to a positive control
//! that shows the same path works where it should (so "nothing read" cannot be a broken probe).
//! See docs/jail.md, "What a privileged container can reach".

use hull_tests::probe_output::{lines_after, text};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use hull_tests::containerd::{build_busybox_image_with, Containerd, IMAGE, RUNTIME};

/// How long one attacking container may run (TCG guests on a loaded machine are slow).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits (in the container) for the test to create `/vol/go`; exits 99 after ~2 minutes.
const WAIT_FOR_GO: &str =
    "i=0; until [ -e /vol/go ]; do i=$((i+1)); [ $i -gt 600 ] && { echo no-go; exit 99; }; sleep 0.2; done";

/// Shell lines that call the agent's ports over the guest's vsock loopback (CID 1, and the
/// guest's own CID 3) as container `id`: its API (ttrpc `Check`), its stdio port and its
/// port-forward port.
fn agent_loopback_script(id: &str) -> String {
    format!(
        r#"for cid in 1 3; do
  echo "agent api via $cid: $(hull-fs-probe ttrpc-call $cid 1024 hull.agent.v1.Agent Check 2>&1 | tr '\n' ' ')"
  echo "agent stdio via $cid: $(hull-fs-probe vsock-connect $cid 1025 'HULL-STDIO 1 {id} - stdout' 2>&1 | tr '\n' ' ')"
  echo "agent forward via $cid: $(hull-fs-probe vsock-connect $cid 1026 'GET / HTTP/1.0' 2>&1 | tr '\n' ' ')"
done"#
    )
}

/// The agent's ports over the loopback: the guest kernel accepts the connection, but the agent
/// closes it unanswered (it serves the host's CID only, see agent/src/host_vsock.rs).
fn assert_agent_unreachable(all: &str) {
    for cid in [1, 3] {
        let api = lines_after(all, &format!("agent api via {cid}: "));
        assert_eq!(api.len(), 1, "{all}");
        assert!(
            !api[0].contains("response"),
            "a container called the agent API via CID {cid}:\n{all}"
        );
        let stdio = lines_after(all, &format!("agent stdio via {cid}: "));
        assert_eq!(stdio.len(), 1, "{all}");
        assert!(
            !stdio[0].contains("OK") && !stdio[0].contains("ERR"),
            "the agent's stdio port answered a container via CID {cid}:\n{all}"
        );
        // Served, the port-forward port would answer a status byte (0, or an errno).
        let forward = lines_after(all, &format!("agent forward via {cid}: "));
        assert_eq!(forward.len(), 1, "{all}");
        let answer = forward[0]
            .split_once("reply:")
            .map_or("", |(_, r)| r.trim());
        assert!(
            answer.is_empty(),
            "the agent's port-forward port answered a container via CID {cid}:\n{all}"
        );
    }
}

/// A private containerd whose busybox image carries `hull-fs-probe`.
fn containerd() -> Option<Containerd> {
    let c = Containerd::start()?;
    let probe = hull_tests::rootfs::fs_probe_binary();
    assert!(
        probe.is_file(),
        "{} is missing (scripts/build.sh builds it)",
        probe.display()
    );
    let image = c.dir().join("busybox-probe.tar");
    build_busybox_image_with(&image, IMAGE, &[(probe.as_path(), "bin/hull-fs-probe")])
        .expect("busybox image with the probe");
    c.import(&image).expect("import the probe image");
    Some(c)
}

/// 32 random hex digits.
fn token() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `ctr run --rm` (attached) of `sh -c script` as container `id`, with `flags` (before the image).
fn spawn_run(c: &Containerd, id: &str, flags: &[&str], script: &str) -> Child {
    let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, id, "sh", "-c", script]);
    c.ctr_command()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr run")
}

/// Waits for an attached run to end; on timeout kills the task and fails.
fn finish(c: &Containerd, id: &str, child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(out) => out.expect("ctr run"),
        Err(_) => {
            c.remove(id);
            panic!(
                "{id} did not finish within {RUN_TIMEOUT:?}\n{}",
                hull_tests::containerd::tail(&c.log(), 60)
            );
        }
    }
}

/// A volume directory for container `id`, mounted at `/vol`: the test hands files in (and the
/// go signal) through it.
fn volume(c: &Containerd, id: &str) -> (PathBuf, String) {
    let dir = c.dir().join(format!("vol-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = format!("type=bind,src={},dst=/vol,options=rbind:rw", dir.display());
    (dir, flag)
}

/// Waits until task `id` runs, then creates `<vol>/go`.
fn go(c: &Containerd, id: &str, vol: &Path) {
    c.wait_status(id, "RUNNING", Duration::from_secs(120));
    std::fs::write(vol.join("go"), "").unwrap();
}

/// The attack on host files: direct paths, `..` from every mount root, the virtio-fs tag mounted
/// again, symlinks planted on the share (read back in the guest), `/proc/1/root`, forged FUSE
/// file handles (node id 1 is the share's root on the host), every block device node; and the
/// agent's ports over the guest's loopback.
fn file_attack_script(id: &str, host_secret: &Path, pod_secret: &Path, share: &Path) -> String {
    let (s1, s2, share) = (host_secret.display(), pod_secret.display(), share.display());
    format!(
        r#"{WAIT_FOR_GO}
echo "control: $(cat /vol/inshare)"
hostname hull-escaped 2>/dev/null; echo "uts: $(hostname)"
echo "etc-hostname: $(cat /etc/hostname 2>&1)"
cat {s1} {s2} {share}/../secret /etc/machine-id 2>&1
mkdir -p /mnt/share && mount -t virtiofs hull /mnt/share; echo "remount=$?"
echo "remount-ls: $(ls /mnt/share 2>&1 | tr '\n' ' ')"
for base in / /vol /mnt/share; do
  for up in .. ../.. ../../.. ../../../.. ../../../../../../../../..; do
    cat "$base/$up/secret" "$base/$up{s1}" "$base/$up{s2}" "$base/$up/etc/machine-id" 2>/dev/null
    ls "$base/$up" 2>&1 | tr '\n' ' '; echo
  done
done
for dir in /vol /mnt/share /; do
  n=0
  for target in {s1} {s2} ../secret ../../secret ../../../secret ../../../../secret /etc/machine-id {share}/../secret; do
    n=$((n+1))
    ln -sf "$target" "$dir/esc-link-$n" 2>&1 && cat "$dir/esc-link-$n" 2>&1
  done
done
cat /proc/1/root{s1} /proc/1/root{s2} /proc/self/root/../secret 2>&1
echo "proc1-root: $(ls /proc/1/root/ | tr '\n' ' ')"
for m in / /vol /mnt/share; do
  echo "handle-self $m: $(hull-fs-probe handle-open $m 2>&1 | tail -n 1)"
  echo "handle-root $m: $(hull-fs-probe handle-open $m 1 0 2>&1 | tail -n 1)"
done
for d in /dev/*; do
  [ -b "$d" ] || continue
  if dd if="$d" of=/tmp/block bs=4096 count=1 2>/dev/null && [ -s /tmp/block ]; then
    echo "block $d: readable"; cat /tmp/block
  else
    echo "block $d: unreadable"
  fi
done
{agent}
echo END"#,
        agent = agent_loopback_script(id)
    )
}

/// Runs the file attack in container `id` (privileged or not) and checks that no secret showed.
fn file_attack(c: &Containerd, id: &str, privileged: bool) -> String {
    let secrets = tempfile::Builder::new()
        .prefix("hull-escape-")
        .tempdir_in("/tmp")
        .unwrap();
    let host_name = nix::unistd::gethostname().expect("hostname");
    let host_secret = secrets.path().join("secret");
    let host_token = token();
    std::fs::write(&host_secret, &host_token).unwrap();
    let pod_dir = c.run_dir().join(id);
    let pod_secret = pod_dir.join("secret");
    let pod_token = token();
    let (vol, vol_flag) = volume(c, id);
    let visible = token();
    std::fs::write(vol.join("inshare"), &visible).unwrap();
    let script = file_attack_script(id, &host_secret, &pod_secret, &pod_dir.join("shared"));
    let mut flags = vec!["--mount", &vol_flag];
    if privileged {
        flags.push("--privileged");
    }
    let child = spawn_run(c, id, &flags, &script);
    c.wait_status(id, "RUNNING", Duration::from_secs(120));
    // Beside the share: what `..` from the share's root would reach on the host.
    std::fs::write(&pod_secret, &pod_token).unwrap();
    go(c, id, &vol);
    let out = finish(c, id, child);
    let all = text(&out);
    // Shown with --nocapture (and kept by the harness when the test fails).
    println!("{all}");
    assert_eq!(out.status.code(), Some(0), "{}", c.explain(&out));
    assert!(all.contains("\nEND"), "the attack did not finish:\n{all}");
    // Positive control: a file that is in the share is read.
    assert_eq!(lines_after(&all, "control: "), [visible.as_str()], "{all}");
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    for (what, secret) in [
        ("the host secret", host_token.as_str()),
        ("the secret beside the share", pod_token.as_str()),
        ("the host's /etc/machine-id", machine_id.trim()),
    ] {
        if !secret.is_empty() {
            assert!(!all.contains(secret), "{id} read {what}:\n{all}");
        }
    }
    // The container starts with the host's hostname, as under runc (a copy: the guest is given
    // the host's name at boot); setting its own (a privileged container may) changes only its
    // UTS namespace in the guest, never the host's.
    let host_name = host_name.to_str().expect("utf-8 hostname");
    assert_eq!(lines_after(&all, "uts: ").len(), 1, "{all}");
    if privileged {
        assert_eq!(lines_after(&all, "uts: "), ["hull-escaped"], "{all}");
    }
    assert_eq!(
        nix::unistd::gethostname().expect("hostname").to_str(),
        Some(host_name),
        "{id} changed the host's hostname"
    );
    assert_ne!(lines_after(&all, "etc-hostname: "), [host_name], "{all}");
    // The symlinks crossed the share to the host as symlinks, and nothing followed them there.
    let link = vol.join("esc-link-1");
    assert_eq!(
        std::fs::read_link(&link).ok().as_deref(),
        Some(host_secret.as_path()),
        "{id}: no symlink on the share:\n{all}"
    );
    assert_eq!(std::fs::read_to_string(&host_secret).unwrap(), host_token);
    assert!(
        !all.contains(": readable"),
        "{id} read a block device:\n{all}"
    );
    assert_agent_unreachable(&all);
    c.assert_clean(id, Duration::from_secs(20));
    all
}

#[test]
fn privileged_container_cannot_read_host_files_outside_its_share() {
    let Some(c) = containerd() else { return };
    let all = file_attack(&c, "esc-files", true);
    // It really was privileged: it mounted the virtio-fs tag again and reopened a file handle.
    assert_eq!(lines_after(&all, "remount="), ["0"], "{all}");
    let own = lines_after(&all, "handle-self /vol: ");
    assert!(
        own.len() == 1 && own[0].starts_with("opened: ") && own[0].contains("inshare"),
        "{all}"
    );
    // FUSE's root node (the share's root on the host) is not reachable by a forged handle.
    for m in ["/", "/vol", "/mnt/share"] {
        assert_eq!(
            lines_after(&all, &format!("handle-root {m}: ")),
            ["ESTALE"],
            "{all}"
        );
    }
    // The spec handed it the host's device nodes; the VM has no disk behind any of them.
    assert!(all.contains("block /dev/"), "no block device tried:\n{all}");
}

#[test]
fn unprivileged_container_cannot_read_host_files_outside_its_share() {
    let Some(c) = containerd() else { return };
    let all = file_attack(&c, "esc-files-unpriv", false);
    assert_ne!(lines_after(&all, "remount="), ["0"], "{all}");
    assert_eq!(lines_after(&all, "handle-root /vol: "), ["EPERM"], "{all}");
}

/// A unix listener at `path` that answers one line with `host-ack <line>`, counting connections.
struct HostPort {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HostPort {
    fn listen(path: &Path) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                        let mut line = String::new();
                        let mut reader = BufReader::new(&stream);
                        if reader.read_line(&mut line).is_ok() {
                            let _ = (&stream).write_all(format!("host-ack {line}").as_bytes());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            accepted,
            thread: Some(thread),
        }
    }
}

impl Drop for HostPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn privileged_container_reaches_no_vsock_port_the_host_does_not_listen_on() {
    let Some(c) = containerd() else { return };
    let id = "esc-vsock";
    let (vol, vol_flag) = volume(&c, id);
    // A port of the test's own; hull itself listens on no guest-to-host port.
    let port = 20_000 + u32::from_str_radix(&token()[..4], 16).unwrap() % 20_000;
    let script = format!(
        r#"{WAIT_FOR_GO}
echo "control: $(hull-fs-probe vsock-connect 2 {port} hello-from-guest | tr '\n' ' ')"
for p in 1024 1025 1 22 80 2049 {other}; do
  echo "host port $p: $(hull-fs-probe vsock-connect 2 $p 2>&1 | tr '\n' ' ')"
done
for cid in 0 4 42 4294967294; do
  echo "cid $cid: $(hull-fs-probe vsock-connect $cid {port} 2>&1 | tr '\n' ' ')"
done
{agent}
echo END"#,
        other = port + 1,
        agent = agent_loopback_script(id)
    );
    let child = spawn_run(&c, id, &["--privileged", "--mount", &vol_flag], &script);
    c.wait_status(id, "RUNNING", Duration::from_secs(120));
    // The guest-to-host side of the hybrid vsock: CID 2 port P lands on `<uds>_P`.
    let pod_dir = c.run_dir().join(id);
    let uds = hull_tests::pod_vsock_uds(&pod_dir)
        .unwrap_or_else(|| panic!("no hybrid vsock socket in {}", pod_dir.display()));
    let mut path = uds.into_os_string();
    path.push(format!("_{port}"));
    let host = HostPort::listen(Path::new(&path));
    go(&c, id, &vol);
    let out = finish(&c, id, child);
    let accepted = host.accepted.load(Ordering::Relaxed);
    drop(host);
    let _ = std::fs::remove_file(&path);
    let all = text(&out);
    // Shown with --nocapture (and kept by the harness when the test fails).
    println!("{all}");
    assert_eq!(out.status.code(), Some(0), "{}", c.explain(&out));
    assert!(all.contains("\nEND"), "the attack did not finish:\n{all}");
    // Positive control: where the host listens, the connection is made and carries bytes.
    assert_eq!(
        lines_after(&all, "control: "),
        ["connected reply: host-ack hello-from-guest "],
        "{all}"
    );
    assert_eq!(accepted, 1, "{all}");
    let refused: Vec<&str> = lines_after(&all, "host port ")
        .into_iter()
        .chain(lines_after(&all, "cid "))
        .collect();
    assert_eq!(refused.len(), 11, "{all}");
    for line in refused {
        assert!(!line.contains("connected"), "reached {line}\n{all}");
    }
    assert_agent_unreachable(&all);
    c.assert_clean(id, Duration::from_secs(20));
}

/// A TCP listener on every host address, counting (and answering) connections.
struct HostTcp {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HostTcp {
    fn listen() -> Self {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.write_all(b"host-side\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            stop,
            accepted,
            thread: Some(thread),
        }
    }
}

impl Drop for HostTcp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The host's global addresses (`ip -o addr show scope global`), IPv6 ones in brackets.
fn host_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let at = cols.iter().position(|c| *c == "inet" || *c == "inet6")?;
            let addr = cols.get(at + 1)?.split('/').next()?;
            Some(if cols[at] == "inet6" {
                format!("[{addr}]")
            } else {
                addr.to_owned()
            })
        })
        .collect()
}

#[test]
fn privileged_container_cannot_reach_the_host_network_namespace() {
    let Some(c) = containerd() else { return };
    let id = "esc-net";
    let host = HostTcp::listen();
    let port = host.port;
    let mut targets = vec![
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
        // QEMU's user-mode network gateway, were there a `-nic user`.
        "10.0.2.2".to_owned(),
    ];
    targets.extend(host_addresses());
    let tries: String = targets
        .iter()
        .map(|a| {
            format!(
                "echo \"tcp {a}: $(hull-fs-probe tcp-connect {a}:{port} 2>&1 | tr '\\n' ' ')\"\n"
            )
        })
        .collect();
    let script = format!(
        r#"echo "links: $(for l in /sys/class/net/*; do printf '%s:%s ' "${{l##*/}}" "$(cat $l/type)"; done)"
ip link set lo up; echo "lo-up=$?"
echo guest-side | nc -l -p {port} >/dev/null &
sleep 2
echo "control: $(hull-fs-probe tcp-connect 127.0.0.1:{port} ping 2>&1 | tr '\n' ' ')"
{tries}for a in {list}; do
  echo "nc $a: $(echo ping | nc -w 5 $a {port} 2>&1 | tr '\n' ' ')"
done
echo END"#,
        list = targets
            .iter()
            .filter(|a| !a.starts_with('['))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = c.ctr(&[
        "run",
        "--rm",
        "--privileged",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "sh",
        "-c",
        &script,
    ]);
    let accepted = host.accepted.load(Ordering::Relaxed);
    drop(host);
    let all = text(&out);
    // Shown with --nocapture (and kept by the harness when the test fails).
    println!("{all}");
    assert_eq!(out.status.code(), Some(0), "{}", c.explain(&out));
    assert!(all.contains("\nEND"), "the run did not finish:\n{all}");
    // No network device but loopback (and the kernel's idle tunnel devices, which need an
    // underlying route): ARPHRD_LOOPBACK 772, SIT 776, TUNNEL 768, TUNNEL6 769.
    let links = lines_after(&all, "links: ");
    assert_eq!(links.len(), 1, "{all}");
    assert!(links[0].contains("lo:772"), "{all}");
    for link in links[0].split_whitespace() {
        let kind = link.rsplit(':').next().unwrap_or_default();
        assert!(
            ["772", "776", "768", "769"].contains(&kind),
            "a network device in the VM: {link}\n{all}"
        );
    }
    // Positive control: the probe's TCP works, over the guest's own loopback, to the guest's
    // own listener on the very port the host listens on.
    assert_eq!(lines_after(&all, "lo-up="), ["0"], "{all}");
    assert_eq!(
        lines_after(&all, "control: "),
        ["connected reply: guest-side "],
        "{all}"
    );
    for a in &targets {
        let tried = lines_after(&all, &format!("tcp {a}: "));
        assert_eq!(tried.len(), 1, "{all}");
        // 127.0.0.1 reaches the guest's loopback: its listener is gone by then (refused).
        assert!(
            !tried[0].contains("connected"),
            "connected to {a}:{port}\n{all}"
        );
    }
    assert!(!all.contains("host-side"), "reached the host:\n{all}");
    assert_eq!(accepted, 0, "the host's listener was reached:\n{all}");
    c.assert_clean(id, Duration::from_secs(20));
}
