//! The Task API's verbs, one per file. Each takes plain values and the [`Pod`], and returns plain
//! values; `super::service` converts containerd's messages to and from them.

pub mod checkpoint;
pub mod close_io;
pub mod connect;
pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod pids;
pub mod resize;
pub mod resume;
pub mod shutdown;
pub mod start;
pub mod state;
pub mod stats;
pub mod update;
pub mod wait;

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    //! The Task verbs' answers where no VM is involved, with a recording event sink.

    use std::sync::Arc;

    use containerd_shim::ExitSignal;

    use crate::shim::config::HullConfig;
    use crate::shim::events::RecordedEvents;
    use crate::shim::pod::Pod;
    use crate::shim::ShimError;

    fn pod(dir: &std::path::Path) -> (Arc<Pod>, Arc<RecordedEvents>, Arc<ExitSignal>) {
        let events = Arc::new(RecordedEvents::default());
        let exit = Arc::new(ExitSignal::default());
        let config = HullConfig {
            run_dir: dir.to_owned(),
            kernel: dir.join("no-kernel"),
            ..HullConfig::default()
        };
        let pod = Arc::new(Pod::new("p1", config, events.clone(), exit.clone()));
        (pod, events, exit)
    }

    #[tokio::test]
    async fn unknown_containers_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (pod, events, _) = pod(dir.path());
        let e = super::kill::kill(&pod, "nope", "", 9, false)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::NOT_FOUND);
        let e = super::state::state(&pod, "nope", "").unwrap_err();
        assert!(matches!(e, ShimError::NotFound(_)));
        let e = super::delete::delete(&pod, "nope", "").await.unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::NOT_FOUND);
        let e = super::checkpoint::checkpoint().unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::UNIMPLEMENTED);
        assert!(events.take().is_empty());
    }

    #[tokio::test]
    async fn create_refuses_bad_input_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (pod, events, _) = pod(dir.path());
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let args = |id: &str| super::create::CreateArgs {
            id: id.into(),
            bundle: bundle.clone(),
            rootfs: vec![],
            stdio: Default::default(),
            oci: None,
        };
        let e = super::create::create(&pod, args("../x")).await.unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
        let e = super::create::create(&pod, args("c1")).await.unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT, "{e}");
        std::fs::write(
            bundle.join("config.json"),
            r#"{"process":{"args":["true"]}}"#,
        )
        .unwrap();
        let e = super::create::create(&pod, args("c1")).await.unwrap_err();
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT, "{e}");
        let text = crate::agent::client::error_chain(&e);
        assert!(text.contains("missing field `user`"), "{text}");
        std::fs::write(
            bundle.join("config.json"),
            r#"{"process":{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap();
        let e = super::create::create(&pod, args("c1")).await.unwrap_err();
        let text = crate::agent::client::error_chain(&e);
        assert!(
            text.contains("no-kernel") && text.contains("missing"),
            "{text}"
        );
        assert!(!dir.path().join("p1").exists());
        assert!(pod.is_empty());
        assert!(events.take().is_empty());
    }

    #[tokio::test]
    async fn shutdown_of_an_empty_pod_lets_the_shim_exit() {
        let dir = tempfile::tempdir().unwrap();
        let (pod, _, exit) = pod(dir.path());
        super::shutdown::shutdown(&pod).await;
        tokio::time::timeout(std::time::Duration::from_secs(1), exit.wait())
            .await
            .expect("exit signalled");
        let (shim, task, _) = super::connect::connect(&pod).await;
        assert_eq!((shim, task), (std::process::id(), 0));
    }
}
