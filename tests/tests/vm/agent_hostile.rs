//! Garbage at every door: the vsock backend, the agent's ttrpc port and its stdio port refuse
//! malformed input, and the VM, the backend and the agent keep working.

use std::time::Duration;

use hull_protocol::{AGENT_PORT, STDIO_PORT};
use hull_runtime::vsock::{self, VsockError};
use hull_tests::data::bytes;
use hull_tests::pod::TestPod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    )
    .is_ok()
}

/// Reads until the peer closes or `limit` passes; returns what came.
async fn drain(stream: &mut UnixStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_refused_and_everything_survives() {
    let Some(mut pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let uds = pod.vm.vsock_uds().to_owned();

    // 1. Not the hybrid handshake at all: the backend drops the connection.
    let mut s = UnixStream::connect(&uds).await.unwrap();
    s.write_all(&bytes(1, 4096)).await.unwrap();
    let _ = drain(&mut s, Duration::from_secs(3)).await;

    // 2. A port nobody listens on is refused.
    let err = vsock::connect(&uds, 4242, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, VsockError::Refused(4242)), "{err:?}");

    // 3. A ttrpc frame claiming 2 GiB (the cap is 4 MiB), then junk.
    let mut s = vsock::connect(&uds, AGENT_PORT, Duration::from_secs(5))
        .await
        .unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&0x7fff_ffffu32.to_be_bytes()); // length
    header.extend_from_slice(&1u32.to_be_bytes()); // stream id
    header.extend_from_slice(&[1, 0]); // request, no flags
    s.write_all(&header).await.unwrap();
    let _ = s.write_all(&bytes(2, 64 << 10)).await;
    let _ = drain(&mut s, Duration::from_secs(3)).await;

    // 4. Pure junk on the ttrpc port.
    let mut s = vsock::connect(&uds, AGENT_PORT, Duration::from_secs(5))
        .await
        .unwrap();
    let _ = s.write_all(&bytes(3, 64 << 10)).await;
    let _ = drain(&mut s, Duration::from_secs(3)).await;

    // 5. Bad stdio headers get an ERR line, not a crash.
    for junk in [
        &b"HULL-STDIO 9 c - stdout\n"[..],
        b"HULL-STDIO 1 nope - stdout\n",
        &bytes(4, 300),
    ] {
        let mut s = vsock::connect(&uds, STDIO_PORT, Duration::from_secs(5))
            .await
            .unwrap();
        s.write_all(junk).await.unwrap();
        let reply = drain(&mut s, Duration::from_secs(12)).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("ERR "),
            "stdio reply to {junk:?}: {text:?}"
        );
    }

    // Everything still works: the agent answers and runs a container.
    let agent = pod.agent().reconnect().await.unwrap();
    assert!(agent.check().await.is_ok());
    let done = pod
        .run("after", &hull_tests::spec::spec(&["echo", "still here"]))
        .await;
    assert_eq!(done.out(), "still here\n");
    if let Some(backend) = pod.vm.vsock_pid() {
        assert!(alive(backend), "vsock backend died");
    }
    assert!(
        pod.vm.vm().wait_timeout(Duration::ZERO).unwrap().is_none(),
        "VMM died"
    );
}
