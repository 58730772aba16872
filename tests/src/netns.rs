//! Named network namespaces for network tests (`ip netns`), removed on drop with everything in
//! them, and a way to run code inside one without moving the test's own threads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace at `/var/run/netns/<name>`; dropping it deletes it (and its interfaces).
#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// A fresh namespace named after `prefix`, this process and a counter.
    pub fn new(prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind-mounted file.
    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <ns> args…`, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `tc -n <ns> args…`, panicking on failure; returns stdout.
    pub fn tc(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("tc", &all)
    }

    /// `program` run in this namespace (through `nsenter --net`, which changes nothing else: the
    /// mount namespace and the rest stay the caller's).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs `f` on a thread inside this namespace and returns what it returns.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        hull_runtime::network::netns::on_thread_in(&self.path(), || Ok(f()))
            .expect("a thread inside the test netns")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Whether a namespace named `name` exists.
pub fn exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod-like pair of namespaces as CNI would leave them: `pod` holds `eth0` (`<prefix>.2/24`,
/// MTU 1400, default route via `<prefix>.1`), whose veth peer `peer0` (`<prefix>.1/24`) sits in
/// `outside`, standing in for the node.
#[derive(Debug)]
pub struct PodNet {
    /// The pod's namespace.
    pub pod: TestNetns,
    /// The other end.
    pub outside: TestNetns,
    /// The pod's address.
    pub pod_ip: String,
    /// The outside address (the pod's gateway).
    pub outside_ip: String,
}

impl PodNet {
    /// Sets up the pair on subnet `<prefix>.0/24` (e.g. `10.199.7`).
    pub fn new(prefix: &str) -> Self {
        let pod = TestNetns::new("hull-pod");
        let outside = TestNetns::new("hull-out");
        let (pod_ip, outside_ip) = (format!("{prefix}.2"), format!("{prefix}.1"));
        pod.ip(&[
            "link",
            "add",
            "eth0",
            "mtu",
            "1400",
            "type",
            "veth",
            "peer",
            "name",
            "peer0",
            "mtu",
            "1400",
            "netns",
            outside.name(),
        ]);
        pod.ip(&["addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"]);
        pod.ip(&["link", "set", "eth0", "up"]);
        pod.ip(&["route", "add", "default", "via", &outside_ip]);
        outside.ip(&["addr", "add", &format!("{outside_ip}/24"), "dev", "peer0"]);
        outside.ip(&["link", "set", "peer0", "up"]);
        Self {
            pod,
            outside,
            pod_ip,
            outside_ip,
        }
    }
}
