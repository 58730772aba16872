//! `kubectl port-forward` (CRI `PortForward`) into a hull pod.
//!
//! containerd serves `PortForward` by entering the pod's network namespace (the host one CNI
//! made) and dialling `127.0.0.1:<port>` there. A hull pod's processes live in the guest, so
//! nothing listens on that namespace's loopback. This module makes it lead into the guest:
//! - [`prepare`], before the shim is confined: in the pod's namespace, a listener on
//!   `127.0.0.1:<ephemeral>` and one nat rule (`iptables … OUTPUT -o lo -d 127.0.0.1 -p tcp !
//!   --dport <it> -j REDIRECT --to-ports <it>`), so every TCP connection to the namespace's
//!   loopback reaches the listener, its original port kept (`SO_ORIGINAL_DST`). The rule goes
//!   away with the namespace;
//! - [`serve`]: per connection, a vsock stream to the agent's [`FORWARD_PORT`] naming the port;
//!   the agent dials it in the guest's pod network (`agent/src/forward.rs`), and the bytes flow
//!   both ways.
//!
//! Without `iptables` on the host, or when the rule cannot be added, the pod runs without
//! port-forward (a warning in the log says why).

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hull_protocol::FORWARD_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::netns::on_thread_in;

/// How long the agent may take to answer a port-forward stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the forwarding listener in the network namespace `netns` and redirects its loopback
/// TCP there; `None` (after a warning) when that cannot be done.
pub fn prepare(netns: &Path) -> Option<TcpListener> {
    let made = on_thread_in(netns, || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port().to_string();
        let out = Command::new("iptables")
            .args([
                "-w",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-o",
                "lo",
                "-d",
                "127.0.0.1",
            ])
            .args([
                "-p",
                "tcp",
                "!",
                "--dport",
                &port,
                "-j",
                "REDIRECT",
                "--to-ports",
            ])
            .arg(&port)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "iptables: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(listener)
    });
    match made {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(netns = %netns.display(), "no port-forward for this pod: {e}");
            None
        }
    }
}

/// Serves port-forward connections on `listener` through the VM's hybrid vsock socket `uds`,
/// until the task is aborted.
pub async fn serve(listener: TcpListener, uds: PathBuf) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("no port-forward for this pod: {e}");
            return;
        }
    };
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of descriptors or the like: wait rather than spin.
                tracing::warn!("port-forward: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uds = uds.clone();
        tokio::spawn(async move {
            if let Err(e) = forward(client, &uds).await {
                tracing::info!("port-forward: {e}");
            }
        });
    }
}

async fn forward(mut client: tokio::net::TcpStream, uds: &Path) -> std::io::Result<()> {
    let port = original_port(&client)?;
    let mut guest = crate::vsock::connect(uds, FORWARD_PORT, CONNECT_TIMEOUT)
        .await
        .map_err(std::io::Error::other)?;
    guest.write_u16(port).await?;
    let status = guest.read_u8().await?;
    if status != 0 {
        return Err(std::io::Error::other(format!(
            "guest port {port}: {}",
            std::io::Error::from_raw_os_error(i32::from(status))
        )));
    }
    // Both ways until either side ends. The vsock side is never half-closed (a hybrid vsock
    // half-close drops the whole connection): the guest's answer ends the exchange.
    let (mut cr, mut cw) = client.split();
    let (mut gr, mut gw) = guest.split();
    let upstream = tokio::io::copy(&mut cr, &mut gw);
    let downstream = tokio::io::copy(&mut gr, &mut cw);
    tokio::pin!(downstream);
    tokio::select! {
        r = &mut downstream => { r?; }
        // The client is done sending: keep relaying the guest's answer.
        r = upstream => { r?; (&mut downstream).await?; }
    }
    Ok(())
}

/// The port the client dialled before the REDIRECT rule sent it here.
fn original_port(client: &tokio::net::TcpStream) -> std::io::Result<u16> {
    let mut addr: libc::sockaddr_in = zeroed_sockaddr();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_in>())
        .map_err(std::io::Error::other)?;
    // SAFETY: a valid socket fd; `addr` and `len` describe a buffer of the size passed; the
    // return value is checked.
    let r = unsafe {
        libc::getsockopt(
            client.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            std::ptr::addr_of_mut!(addr).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u16::from_be(addr.sin_port))
}

fn zeroed_sockaddr() -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    }
}

/// The forwarding task of a pod VM; stopped when dropped (with the VM).
#[derive(Debug)]
pub struct Forwarder(tokio::task::JoinHandle<()>);

impl Forwarder {
    /// Serves `listener` ([`prepare`]) through the VM's hybrid vsock socket `uds`.
    pub fn start(listener: TcpListener, uds: PathBuf) -> Self {
        Self(tokio::spawn(serve(listener, uds)))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}
