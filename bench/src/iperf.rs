//! Pod ⇄ host TCP throughput for `hull-bench cri`, with Debian's `iperf3`: the server runs in
//! the CRI harness's network namespace bound to the CNI bridge's gateway address (the node's
//! side of every pod), the client in a pod's container (`iperf3 -c <gateway> -J`, through
//! ExecSync), once each way (`-R`: host → pod). The client comes into the container image as the
//! host's `/usr/bin/iperf3` with the shared libraries `ldd` lists, at the same paths.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hull_tests::containerd::build_busybox_image_with;
use hull_tests::cri::Cri;
use hull_tests::netns::TestNetns;
use k8s_cri::v1::ImageSpec;
use serde::Serialize;

/// The image with the iperf3 client.
pub const IMAGE: &str = "hull.test/iperf3:latest";

/// The iperf3 binary on the host and in the image.
const IPERF3: &str = "/usr/bin/iperf3";

/// The test network's bridge (`tests/src/cri.rs`'s CNI configuration).
const BRIDGE: &str = "hull-cni0";

/// The server's port.
const PORT: &str = "5201";

/// One runtime's throughput, Gbit/s as the receiving end counted it.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// The pod sends, the host receives.
    pub pod_to_host_gbit_s: f64,
    /// The host sends, the pod receives (`iperf3 -R`).
    pub host_to_pod_gbit_s: f64,
}

/// Files of the host's iperf3 that the image needs: the binary and every library `ldd` names,
/// the dynamic loader included.
fn client_files() -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        Path::new(IPERF3).is_file(),
        "{IPERF3} is missing: install Debian's iperf3 (scripts/install-deps.sh)"
    );
    let out = Command::new("ldd").arg(IPERF3).output().context("ldd")?;
    anyhow::ensure!(
        out.status.success(),
        "ldd {IPERF3}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = vec![PathBuf::from(IPERF3)];
    files.extend(ldd_paths(&String::from_utf8_lossy(&out.stdout)));
    Ok(files)
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; not the vDSO).
fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, p)| p);
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// Builds the busybox image with the iperf3 client into `dir` and imports it into CRI.
pub fn import_image(cri: &Cri, dir: &Path) -> anyhow::Result<()> {
    let files = client_files()?;
    let extra = files
        .iter()
        .map(|f| {
            let to = f.to_str().context("a non-UTF-8 library path")?;
            Ok((f.as_path(), to.trim_start_matches('/')))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let archive = dir.join("iperf3-image.tar");
    build_busybox_image_with(&archive, IMAGE, &extra).map_err(anyhow::Error::msg)?;
    let imported = cri
        .import_image(&archive, IMAGE)
        .map_err(anyhow::Error::msg);
    let _ = std::fs::remove_file(&archive);
    imported
}

/// The gateway address on the CNI bridge (there once a pod has been networked).
fn gateway(netns: &TestNetns) -> anyhow::Result<String> {
    let out = netns.ip(&["-4", "-o", "addr", "show", "dev", BRIDGE]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_owned)
        .with_context(|| format!("no IPv4 address on {BRIDGE}: {out:?}"))
}

/// `iperf3 -s` in the harness's namespace; killed on drop.
struct Server {
    child: Child,
}

impl Server {
    fn start(netns: &TestNetns, address: &str) -> anyhow::Result<Self> {
        let child = netns
            .command(IPERF3)
            .args(["-s", "-B", address, "-p", PORT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn iperf3 -s")?;
        let mut me = Self { child };
        // Listening when `ss` in the namespace shows the socket (a test connection would count
        // as a client).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = me.child.try_wait()? {
                anyhow::bail!("iperf3 -s exited at once: {status}");
            }
            let ss = netns
                .command("ss")
                .args(["-Hltn", &format!("sport = :{PORT}")])
                .output()
                .context("ss")?;
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                return Ok(me);
            }
            anyhow::ensure!(Instant::now() < deadline, "iperf3 -s is not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver's rate (bits/s) from `iperf3 -c … -J` output, or iperf3's own error.
pub fn received_bits_per_second(json: &str) -> anyhow::Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3's JSON")?;
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("iperf3: {error}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3's JSON has no end.sum_received.bits_per_second")
}

/// Runs the client in container `container` for `secs` seconds, `reverse` for host → pod; Gbit/s.
fn client(
    cri: &Cri,
    container: &str,
    server: &str,
    secs: u32,
    reverse: bool,
) -> anyhow::Result<f64> {
    let secs_arg = secs.to_string();
    let mut cmd = vec![IPERF3, "-c", server, "-p", PORT, "-t", &secs_arg, "-J"];
    if reverse {
        cmd.push("-R");
    }
    let r = cri
        .exec_sync(container, &cmd, i64::from(secs) + 60)
        .map_err(|e| anyhow::anyhow!("ExecSync {cmd:?}: {}", e.message()))?;
    let stdout = String::from_utf8_lossy(&r.stdout);
    let bps = received_bits_per_second(&stdout).with_context(|| {
        format!(
            "{cmd:?} exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        )
    })?;
    Ok(bps / 1e9)
}

/// Both directions between a fresh pod of `handler` and the host, `secs` seconds each; the pod
/// and the server are gone when this returns.
pub fn measure(cri: &Cri, handler: &str, secs: u32) -> anyhow::Result<Throughput> {
    let config = cri.pod_config(&format!("{handler}-iperf"));
    let pod = cri
        .run_pod(&config, handler)
        .map_err(|e| anyhow::anyhow!("RunPodSandbox ({handler}): {}", e.message()))?;
    let result = (|| -> anyhow::Result<Throughput> {
        let mut container = Cri::container_config("iperf3", 0, &["sleep", "1000000"]);
        container.image = Some(ImageSpec {
            image: IMAGE.to_owned(),
            ..Default::default()
        });
        let id = cri
            .create_container(&pod, &config, container)
            .map_err(|e| anyhow::anyhow!("CreateContainer ({handler}): {}", e.message()))?;
        cri.start_container(&id)
            .map_err(|e| anyhow::anyhow!("StartContainer ({handler}): {}", e.message()))?;
        let address = gateway(cri.netns())?;
        let _server = Server::start(cri.netns(), &address)?;
        let pod_to_host_gbit_s = client(cri, &id, &address, secs, false)?;
        let host_to_pod_gbit_s = client(cri, &id, &address, secs, true)?;
        Ok(Throughput {
            pod_to_host_gbit_s,
            host_to_pod_gbit_s,
        })
    })();
    let removed = cri.remove_pod(&pod);
    let throughput = result?;
    removed.map_err(|e| anyhow::anyhow!("removing the iperf pod: {}", e.message()))?;
    eprintln!(
        "hull-bench cri: {handler}: pod → host {:.2} Gbit/s, host → pod {:.2} Gbit/s",
        throughput.pod_to_host_gbit_s, throughput.host_to_pod_gbit_s
    );
    Ok(throughput)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receivers_rate_is_read_from_iperf3s_json() {
        // Trimmed from `iperf3 -c 127.0.0.1 -t 1 -J` (iperf 3.12).
        let json = r#"{"start": {"version": "iperf 3.12"}, "intervals": [],
            "end": {"streams": [],
                "sum_sent": {"start": 0, "end": 1.000352, "seconds": 1.000352,
                    "bytes": 2808872960, "bits_per_second": 22463076677.009693,
                    "retransmits": 2, "sender": true},
                "sum_received": {"start": 0, "end": 1.00093, "seconds": 1.00093,
                    "bytes": 2808872960, "bits_per_second": 22450105082.273483,
                    "sender": true}}}"#;
        let bps = received_bits_per_second(json).unwrap();
        assert!((bps - 22_450_105_082.273_483).abs() < 1e-3);
    }

    #[test]
    fn iperf3s_error_is_reported() {
        let json = r#"{"start": {}, "intervals": [], "end": {},
            "error": "unable to connect to server: Connection refused"}"#;
        let err = received_bits_per_second(json).unwrap_err().to_string();
        assert!(err.contains("Connection refused"), "{err}");
        assert!(received_bits_per_second(r#"{"end": {}}"#).is_err());
        assert!(received_bits_per_second("iperf3: error - no JSON").is_err());
    }

    #[test]
    fn ldd_output_gives_the_librarys_and_the_loaders_paths() {
        let ldd = "\tlinux-vdso.so.1 (0x00007f4d9bab9000)\n\
            \tlibiperf.so.0 => /lib/x86_64-linux-gnu/libiperf.so.0 (0x00007f4d9ba72000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4d9b890000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f4d9babb000)\n";
        assert_eq!(
            ldd_paths(ldd),
            [
                "/lib/x86_64-linux-gnu/libiperf.so.0",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }
}
