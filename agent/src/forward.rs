//! Port-forward streams from the host (CRI `PortForward`, `kubectl port-forward`): each vsock
//! connection on [`FORWARD_PORT`] names a TCP port; the agent dials `127.0.0.1:<port>` in the
//! guest's root network namespace (the pod's network, where the pod's containers listen) and
//! joins the two streams. The host side is the shim's `network::port_forward`.

use hull_protocol::FORWARD_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host_vsock::HostListener;

/// Accepts port-forward streams from the host on [`FORWARD_PORT`] forever.
pub async fn serve() -> std::io::Result<()> {
    let listener = HostListener::bind(FORWARD_PORT)?;
    loop {
        let stream = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = forward(stream).await {
                eprintln!("hull-agent: port-forward: {e}");
            }
        });
    }
}

async fn forward(mut host: tokio_vsock::VsockStream) -> std::io::Result<()> {
    let port = host.read_u16().await?;
    let mut target = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(t) => {
            host.write_u8(0).await?;
            t
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::ECONNREFUSED);
            host.write_u8(u8::try_from(errno).unwrap_or(u8::MAX))
                .await?;
            return Ok(());
        }
    };
    // Both ways until either side ends; then both close (the host never half-closes: a hybrid
    // vsock half-close drops the whole connection).
    let (mut hr, mut hw) = tokio::io::split(host);
    let (mut tr, mut tw) = target.split();
    tokio::select! {
        r = tokio::io::copy(&mut hr, &mut tw) => { r?; }
        r = tokio::io::copy(&mut tr, &mut hw) => { r?; let _ = hw.flush().await; }
    }
    Ok(())
}
