//! `hull` as Docker's OCI runtime (registered in `daemon.json`, `docs/oci-cli.md`): Debian's
//! Docker 20.10 through containerd's runc shim, with its own daemons, storage and sockets, in a
//! network namespace of the test's (its bridge, NAT rules and published ports stay there), each
//! container in its own microVM. dockerd puts its `libnetwork-setkey` prestart hook in every
//! spec: hull runs it on the host with the monitor's pid, and the VM takes over the veth Docker
//! moved into the monitor's network namespace. One daemon for the whole core set (exit codes,
//! stdio, `-i`, exec, stats, stop, kill, a volume, a published port, `rm -f`); it ends with nothing
//! left: no monitor, VMM, virtiofsd, vsock backend, runc shim, state or pod directory.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hull_tests::docker::{Docker, IMAGE};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn docker_runs_containers_in_microvms() {
    let t0 = Instant::now();
    let d = match Docker::launch() {
        Ok(d) => d,
        Err(hull_tests::containerd::LaunchError::Missing(why)) => {
            hull_test_support::skip_or_fail(&why);
            return;
        }
        Err(e) => panic!("cannot set up docker: {e}"),
    };
    eprintln!("docker up in {:?}", t0.elapsed());
    let run = |cmd: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none", IMAGE];
        args.extend_from_slice(cmd);
        d.docker(&args)
    };

    // Exit codes, stdout and stderr apart, and the guest's kernel, not the host's.
    let out = run(&["sh", "-c", "uname -r; echo to-err >&2; exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", d.explain(&out));
    hull_tests::assert_guest_kernel(&text(&out.stdout));
    assert_eq!(text(&out.stderr), "to-err\n", "{}", d.explain(&out));
    let out = run(&["false"]);
    assert_eq!(out.status.code(), Some(1), "{}", d.explain(&out));

    // `-i`: stdin reaches the guest process and its end is seen (cat returns).
    let mut child = d
        .command()
        .args(["run", "--rm", "-i", "--network", "none", IMAGE])
        .args(["sh", "-c", "cat; echo done; exit 5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line one\nline two\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", d.explain(&out));
    assert_eq!(text(&out.stdout), "line one\nline two\ndone\n");
    eprintln!("run checks done at {:?}", t0.elapsed());

    // A detached container with a volume: exec (output, exit code, a write through the volume),
    // then stop (SIGTERM reaches the trap; its status is the container's).
    let vol = d.dir().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let volume = format!("{}:/vol", vol.display());
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "none",
        "-v",
        &volume,
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let out = d.docker(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo in-c1 > /vol/f; cat /vol/f; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", d.explain(&out));
    assert_eq!(text(&out.stdout), "in-c1\n", "{}", d.explain(&out));
    assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "in-c1\n");
    // `docker stats`: containerd's runc shim reads the host cgroup Docker named, which holds the
    // VM's host processes (monitor, VMM, virtiofsd), so it shows what the VM costs the host.
    let out = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
        "c1",
    ]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let line = text(&out.stdout);
    let fields: Vec<&str> = line.trim().split('|').collect();
    assert_eq!(fields.len(), 3, "{line:?}");
    assert_eq!(fields[0], "c1", "{line:?}");
    assert!(
        !fields[1].starts_with("0B") && !fields[1].starts_with("--"),
        "memory usage {line:?}"
    );
    let pids: u32 = fields[2].parse().unwrap_or(0);
    assert!(pids >= 2, "the VM's host processes are counted: {line:?}");
    let out = d.docker(&["stop", "-t", "20", "c1"]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let code = d.docker(&["inspect", "-f", "{{.State.ExitCode}}", "c1"]);
    assert_eq!(text(&code.stdout).trim(), "7", "{}", d.explain(&code));
    let logs = d.docker(&["logs", "c1"]);
    assert!(
        text(&logs.stdout).contains("got-term"),
        "{}",
        d.explain(&logs)
    );
    let out = d.docker(&["rm", "c1"]);
    assert!(out.status.success(), "{}", d.explain(&out));
    eprintln!("exec/stop checks done at {:?}", t0.elapsed());

    // Docker's bridge network: the VM has the address libnetwork gave the container, and a
    // published port is reached on the daemon namespace's loopback through docker-proxy. Then
    // `docker kill` (SIGKILL: 137) and `rm -f` of a running container.
    let www = d.dir().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello-from-the-guest\n").unwrap();
    let volume = format!("{}:/www:ro", www.display());
    let out = d.docker(&[
        "run", "-d", "--name", "web", "-p", "8080:80", "-v", &volume, IMAGE, "httpd", "-f", "-p",
        "80", "-h", "/www",
    ]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let ip = text(&ip.stdout).trim().to_owned();
    assert!(ip.starts_with("172.17."), "docker's address {ip:?}");
    let out = d.docker(&["exec", "web", "ip", "-4", "addr", "show", "eth0"]);
    assert!(
        text(&out.stdout).contains(&format!("inet {ip}/")),
        "{}",
        d.explain(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let got = d
            .in_netns("wget")
            .args(["-q", "-O-", "-T", "5", "http://127.0.0.1:8080/"])
            .output()
            .unwrap();
        if got.status.success() || Instant::now() > deadline {
            break text(&got.stdout);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body, "hello-from-the-guest\n", "{}", d.explain(&out));
    let out = d.docker(&["kill", "web"]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let code = d.docker(&["wait", "web"]);
    assert_eq!(text(&code.stdout).trim(), "137", "{}", d.explain(&code));
    let out = d.docker(&["rm", "web"]);
    assert!(out.status.success(), "{}", d.explain(&out));

    let out = d.docker(&["run", "-d", "--name", "c2", IMAGE, "sleep", "600"]);
    assert!(out.status.success(), "{}", d.explain(&out));
    let out = d.docker(&["rm", "-f", "c2"]);
    assert!(out.status.success(), "{}", d.explain(&out));
    d.assert_clean(Duration::from_secs(30));
    eprintln!("all docker checks done at {:?}", t0.elapsed());
}
