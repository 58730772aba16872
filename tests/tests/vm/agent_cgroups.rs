//! cgroup v2 inside the guest: memory limit → OOM event, pids limit, pause/resume, stats, update.

use std::time::Duration;

use hull_tests::pod::{pipes, TestPod};
use hull_tests::rootfs::GUEST_ROOTFS;
use hull_tests::spec::{spec, to_bytes};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_kills_with_an_oom_event() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent().clone();
    let oom = tokio::spawn(async move { agent.get_oom_event().await });
    // dd fills a 64 MiB buffer; the container may use 32 MiB and no swap.
    let mut s = spec(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    s["linux"]["resources"]["memory"] = json!({ "limit": 33_554_432, "swap": 33_554_432 });
    let done = pod.run("oom", &s).await;
    assert_eq!(
        (done.exit.exit_status, done.exit.signal),
        (137, 9),
        "{}",
        done.err()
    );
    let event = tokio::time::timeout(Duration::from_secs(20), oom)
        .await
        .expect("an OOM event");
    assert_eq!(event.unwrap().unwrap(), "oom");
    let stats = pod.agent().stats_container("oom").await.unwrap();
    assert!(stats.memory.events_oom_kill >= 1);
    assert_eq!(stats.memory.limit, 33_554_432);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_is_enforced() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait; echo end";
    // Without a limit the twelve children run.
    let done = pod.run("nolimit", &spec(&["sh", "-c", script])).await;
    assert_eq!(
        (done.exit.exit_status, done.out()),
        (0, "end\n".to_owned()),
        "{}",
        done.err()
    );
    // With pids.max = 6 the shell cannot fork them all (busybox sh gives up with status 2).
    let mut s = spec(&["sh", "-c", script]);
    s["linux"]["resources"]["pids"] = json!({ "limit": 6 });
    let done = pod.run("pids", &s).await;
    assert!(
        done.err().contains("can't fork"),
        "expected fork failures: {}",
        done.err()
    );
    assert_ne!(done.exit.exit_status, 0);
    assert!(!done.out().contains("end"));
}

async fn cpu_usage(pod: &TestPod, id: &str) -> u64 {
    pod.agent()
        .stats_container(id)
        .await
        .unwrap()
        .cpu
        .usage_usec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_freezes_and_resume_continues() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    agent
        .create_container(
            "spin",
            to_bytes(&spec(&["sh", "-c", "while :; do :; done"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    agent.start_container("spin").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.pause_container("spin").await.unwrap();
    let frozen = cpu_usage(&pod, "spin").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        cpu_usage(&pod, "spin").await,
        frozen,
        "a frozen container used CPU"
    );
    agent.resume_container("spin").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        cpu_usage(&pod, "spin").await > frozen,
        "no progress after resume"
    );
    agent.signal_process("spin", "", 9, true).await.unwrap();
    assert_eq!(agent.wait_process("spin", "").await.unwrap().signal, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_stats_and_process_list() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    let mut s = spec(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    s["linux"]["resources"]["pids"] = json!({ "limit": 20 });
    agent
        .create_container("upd", to_bytes(&s), GUEST_ROOTFS, pipes(false))
        .await
        .unwrap();
    agent.start_container("upd").await.unwrap();
    let mut pids = Vec::new();
    for _ in 0..100 {
        pids = agent.list_processes("upd").await.unwrap();
        if pids.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    let stats = agent.stats_container("upd").await.unwrap();
    assert_eq!((stats.pids.current, stats.pids.limit), (3, 20));
    assert!(stats.memory.current > 0);
    agent
        .update_container(
            "upd",
            serde_json::to_vec(
                &json!({ "pids": { "limit": 50 }, "memory": { "limit": 67_108_864 } }),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let stats = agent.stats_container("upd").await.unwrap();
    assert_eq!(stats.pids.limit, 50);
    assert_eq!(stats.memory.limit, 67_108_864);
    let err = agent
        .update_container("upd", b"[1,2]".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INVALID_ARGUMENT));
    agent.remove_container("upd").await.unwrap();
    assert_eq!(
        agent.list_processes("upd").await.unwrap_err().code(),
        Some(ttrpc::Code::NOT_FOUND)
    );
}
