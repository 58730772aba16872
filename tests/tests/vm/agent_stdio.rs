//! Stdio through the agent: bulk stdin → process → stdout, a terminal with resize, and many
//! concurrent vsock streams, all checked byte for byte.

use hull_protocol::stdio::Channel;
use hull_runtime::agent::client::StdioConfig;
use hull_runtime::agent::stdio::split_pty;
use hull_tests::data::{bytes, checksum};
use hull_tests::pod::{pipes, TestPod};
use hull_tests::rootfs::GUEST_ROOTFS;
use hull_tests::spec::{process, spec, to_bytes};
use tokio::io::AsyncReadExt;

/// Sends `input` to `cid`/`eid`'s stdin (then end of input) while reading its stdout.
async fn pump(pod: &TestPod, cid: &str, eid: &str, input: Vec<u8>) -> Vec<u8> {
    let mut stdin = pod.stdin(cid, eid).await;
    let mut stdout = pod.attach(cid, eid, Channel::Stdout).await;
    let writer = tokio::spawn(async move {
        stdin.write(&input).await.unwrap();
        stdin.close().await.unwrap()
    });
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await.unwrap();
    drop(writer.await.unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_through_stdin_cat_stdout() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    agent
        .create_container("cat", to_bytes(&spec(&["cat"])), GUEST_ROOTFS, pipes(true))
        .await
        .unwrap();
    agent.start_container("cat").await.unwrap();
    let input = bytes(16, 16 << 20);
    let want = checksum(&input);
    let out = pump(&pod, "cat", "", input.clone()).await;
    assert_eq!(out.len(), input.len());
    assert_eq!(checksum(&out), want);
    assert!(out == input);
    let exit = agent.wait_process("cat", "").await.unwrap();
    assert_eq!(
        exit.exit_status, 0,
        "cat saw end of input and exited cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_and_stderr_stay_separate_and_nothing_is_lost_at_exit() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    // 1 MiB on stdout and a marker on stderr, written right before exit.
    let script = "head -c 1048576 /dev/zero | tr '\\0' o; echo; echo only-err >&2; printf last-words; exit 3";
    let done = pod.run("sep", &spec(&["sh", "-c", script])).await;
    assert_eq!(done.exit.exit_status, 3);
    assert_eq!(done.err(), "only-err\n");
    assert_eq!(done.stdout.len(), (1 << 20) + 1 + "last-words".len());
    assert!(done.stdout[..1 << 20].iter().all(|b| *b == b'o'));
    assert!(done.out().ends_with("\nlast-words"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_process_sees_a_tty_and_its_resize() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    let mut s = spec(&[
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo is-a-tty; read go; stty size",
    ]);
    s["process"]["terminal"] = serde_json::json!(true);
    let tty = StdioConfig {
        terminal: true,
        ..Default::default()
    };
    agent
        .create_container("tty", to_bytes(&s), GUEST_ROOTFS, tty)
        .await
        .unwrap();
    let (mut output, mut input) = split_pty(pod.attach("tty", "", Channel::Pty).await);
    agent.start_container("tty").await.unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("is-a-tty") {
        let mut buf = [0u8; 256];
        let n = output.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "pty closed early: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    agent.resize_tty("tty", "", 40, 100).await.unwrap();
    input.write(b"go\n").await.unwrap();
    output.read_to_end(&mut seen).await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("40 100"), "{text:?}");
    assert_eq!(agent.wait_process("tty", "").await.unwrap().exit_status, 0);
    // A process without a terminal cannot be resized.
    agent
        .create_container(
            "notty",
            to_bytes(&spec(&["true"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    let err = agent.resize_tty("notty", "", 1, 1).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::FAILED_PRECONDITION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_streams_of_four_mib() {
    let Some(pod) = TestPod::boot(1, 512).await else {
        return;
    };
    let agent = pod.agent();
    agent
        .create_container(
            "many",
            to_bytes(&spec(&["sleep", "1000"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    agent.start_container("many").await.unwrap();
    // 32 `cat` processes: 32 stdin streams in and 32 stdout streams out, all at once.
    let stdio = StdioConfig {
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    for i in 0..32 {
        let eid = format!("cat{i}");
        let p = serde_json::to_vec(&process(&["cat"])).unwrap();
        agent
            .exec_process("many", &eid, p, stdio.clone())
            .await
            .unwrap();
    }
    let pod = std::sync::Arc::new(pod);
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let pod = pod.clone();
        tasks.push(tokio::spawn(async move {
            let eid = format!("cat{i}");
            let input = bytes(i + 100, 4 << 20);
            let out = pump(&pod, "many", &eid, input.clone()).await;
            assert_eq!(
                (out.len(), checksum(&out)),
                (input.len(), checksum(&input)),
                "{eid}"
            );
            pod.agent()
                .wait_process("many", &eid)
                .await
                .unwrap()
                .exit_status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_eof_reaches_the_process_and_close_stdin_without_a_stream() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    agent
        .create_container(
            "eof",
            to_bytes(&spec(&["sh", "-c", "wc -c; echo done"])),
            GUEST_ROOTFS,
            pipes(true),
        )
        .await
        .unwrap();
    agent.start_container("eof").await.unwrap();
    // No stdin stream at all: CloseStdin alone ends the input.
    agent.close_stdin("eof", "").await.unwrap();
    let mut out = pod.attach("eof", "", Channel::Stdout).await;
    let mut text = String::new();
    out.read_to_string(&mut text).await.unwrap();
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["0", "done"]);
}
