//! The agent API end to end through the QEMU backend: health, guest details, a container's exit
//! code and signals, stdio, and errors for bad requests.

use hull_tests::pod::{pipes, TestPod};
use hull_tests::rootfs::GUEST_ROOTFS;
use hull_tests::spec::{process, spec, to_bytes};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_an_exec_and_sigkill_the_init() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    agent
        .create_container(
            "sig",
            to_bytes(&spec(&["sleep", "1000"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    agent.start_container("sig").await.unwrap();
    // An exec'd process is not its PID namespace's init, so SIGTERM's default action applies.
    agent
        .exec_process(
            "sig",
            "e1",
            serde_json::to_vec(&process(&["sleep", "1000"])).unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    agent.signal_process("sig", "e1", 15, false).await.unwrap();
    let exit = agent.wait_process("sig", "e1").await.unwrap();
    assert_eq!((exit.exit_status, exit.signal), (143, 15));
    // A signal to an exited process is refused as not found.
    let err = agent
        .signal_process("sig", "e1", 15, false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND), "{err:?}");
    // The init of a PID namespace ignores SIGTERM without a handler; SIGKILL ends it.
    agent.signal_process("sig", "", 9, false).await.unwrap();
    let exit = agent.wait_process("sig", "").await.unwrap();
    assert_eq!((exit.exit_status, exit.signal), (137, 9));
    agent.remove_container("sig").await.unwrap();
    let err = agent.wait_process("sig", "").await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    let code = |e: hull_runtime::agent::AgentClientError| e.code();

    let err = agent
        .create_container("broken", b"{ not json".to_vec(), GUEST_ROOTFS, pipes(false))
        .await
        .unwrap_err();
    assert_eq!(code(err), Some(ttrpc::Code::INVALID_ARGUMENT));

    let err = agent.start_container("nope").await.unwrap_err();
    assert_eq!(code(err), Some(ttrpc::Code::NOT_FOUND));

    let mut s = spec(&["true"]);
    s["linux"]["namespaces"] = serde_json::json!([{ "type": "pid" }, { "type": "bogus" }]);
    let err = agent
        .create_container("badns", to_bytes(&s), GUEST_ROOTFS, pipes(false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::INVALID_ARGUMENT), "{err:?}");

    // A missing binary fails at start with the exec error.
    agent
        .create_container(
            "nobin",
            to_bytes(&spec(&["/bin/does-not-exist"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    let err = agent.start_container("nobin").await.unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("No such file") || text.contains("ENOENT"),
        "{text}"
    );

    // Duplicate ids are refused; the first container is untouched.
    agent
        .create_container(
            "dup",
            to_bytes(&spec(&["sleep", "100"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap();
    let err = agent
        .create_container(
            "dup",
            to_bytes(&spec(&["true"])),
            GUEST_ROOTFS,
            pipes(false),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), Some(ttrpc::Code::ALREADY_EXISTS));
    // Exec before start is a precondition failure.
    let err = agent
        .exec_process(
            "dup",
            "x",
            serde_json::to_vec(&process(&["true"])).unwrap(),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), Some(ttrpc::Code::FAILED_PRECONDITION));
    agent.start_container("dup").await.unwrap();
    assert!(!agent.list_processes("dup").await.unwrap().is_empty());

    // The agent checks ids itself, whatever the client does.
    let raw = hull_protocol::agent_ttrpc::AgentClient::new(ttrpc::r#async::Client::new(
        ttrpc::r#async::transport::Socket::new(
            hull_runtime::vsock::connect(
                pod.vm.vsock_uds(),
                hull_protocol::AGENT_PORT,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap(),
        ),
    ));
    let req = hull_protocol::agent::CreateContainerRequest {
        container_id: "../evil".into(),
        oci_spec_json: to_bytes(&spec(&["true"])),
        rootfs: GUEST_ROOTFS.into(),
        ..Default::default()
    };
    let err = raw
        .create_container(ttrpc::context::with_timeout(5_000_000_000), &req)
        .await
        .unwrap_err();
    match err {
        ttrpc::Error::RpcStatus(s) => assert_eq!(s.code(), ttrpc::Code::INVALID_ARGUMENT),
        other => panic!("{other:?}"),
    }
    assert!(agent.check().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_is_created_once_and_destroy_removes_every_container() {
    let Some(pod) = TestPod::boot(1, 256).await else {
        return;
    };
    let agent = pod.agent();
    let req = |dns: &str| hull_protocol::agent::CreateSandboxRequest {
        sandbox_id: "pod-1".into(),
        hostname: "pod-1".into(),
        dns_servers: vec![dns.into()],
        ..Default::default()
    };
    agent.create_sandbox(req("10.0.0.10")).await.unwrap();
    let err = agent.create_sandbox(req("10.0.0.10")).await.unwrap_err();
    assert_eq!(err.code(), Some(ttrpc::Code::ALREADY_EXISTS));
    // A container without its own UTS namespace sees the sandbox's hostname.
    let mut s = spec(&["hostname"]);
    s["linux"]["namespaces"] = serde_json::json!([{ "type": "pid" }, { "type": "mount" }]);
    s.as_object_mut().unwrap().remove("hostname");
    assert_eq!(pod.run("host", &s).await.out(), "pod-1\n");
    for id in ["a", "b"] {
        agent
            .create_container(
                id,
                to_bytes(&spec(&["sleep", "100"])),
                GUEST_ROOTFS,
                pipes(false),
            )
            .await
            .unwrap();
        agent.start_container(id).await.unwrap();
    }
    agent.destroy_sandbox().await.unwrap();
    for id in ["a", "b", "host"] {
        let err = agent.list_processes(id).await.unwrap_err();
        assert_eq!(err.code(), Some(ttrpc::Code::NOT_FOUND), "{id}");
    }
    // After destroy a new sandbox may be created.
    agent.create_sandbox(req("10.0.0.11")).await.unwrap();
}
