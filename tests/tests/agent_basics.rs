//! The agent API end to end through the QEMU backend: health, guest details, a container's exit
//! code and signals, stdio, and errors for bad requests.

use hull_tests::pod::TestPod;
use hull_tests::spec::spec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_guest_details_answer() {
    let Some(pod) = TestPod::boot(2, 256).await else {
        return;
    };
    assert_eq!(
        pod.agent().check().await.unwrap(),
        env!("CARGO_PKG_VERSION")
    );
    let details = pod.agent().guest_details().await.unwrap();
    assert_eq!(details.cpus, 2);
    assert!(details.mem_total_kib > 200 * 1024 && details.mem_total_kib <= 256 * 1024);
    assert!(
        details.kernel_release.starts_with("6.1"),
        "{}",
        details.kernel_release
    );
    for c in ["cpu", "memory", "pids"] {
        assert!(details.cgroup_controllers.iter().any(|x| x == c), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_42_comes_back() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let done = pod
        .run(
            "c42",
            &spec(&["sh", "-c", "echo out; echo err >&2; exit 42"]),
        )
        .await;
    assert_eq!(done.exit.exit_status, 42, "stderr: {}", done.err());
    assert_eq!(done.exit.signal, 0);
    assert_eq!(done.out(), "out\n");
    assert_eq!(done.err(), "err\n");
    assert!(done.exit.exited_at_unix_nanos > 0);
}
