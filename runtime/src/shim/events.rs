//! Task events to containerd. The shim publishes through an [`EventSink`] so the Task logic can
//! run against a recording sink in unit tests; in the shim the sink is containerd's event
//! service (`RemotePublisher`), queued in order.

use std::sync::Mutex;

use async_trait::async_trait;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use ttrpc::context::Context;

/// Where task events go.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Publishes `event` on `topic` (e.g. `/tasks/exit`). Failures are logged, never returned:
    /// a lost event must not fail the Task call that caused it.
    async fn publish(&self, topic: &'static str, event: Box<dyn MessageDyn>);
}

/// containerd's event service.
pub struct ContainerdEvents {
    publisher: RemotePublisher,
    namespace: String,
}

impl std::fmt::Debug for ContainerdEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdEvents")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ContainerdEvents {
    /// Events of `namespace` through `publisher`.
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Self {
            publisher,
            namespace: namespace.to_owned(),
        }
    }
}

#[async_trait]
impl EventSink for ContainerdEvents {
    async fn publish(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            tracing::warn!(topic, "cannot publish event: {e}");
        }
    }
}

/// Keeps events in memory (tests).
#[derive(Debug, Default)]
pub struct RecordedEvents {
    events: Mutex<Vec<(&'static str, String)>>,
}

impl RecordedEvents {
    /// Topics and text forms of the events so far.
    pub fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl EventSink for RecordedEvents {
    async fn publish(&self, topic: &'static str, event: Box<dyn MessageDyn>) {
        let text = format!("{event:?}");
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((topic, text));
    }
}
