//! OOM kills in the guest become containerd `TaskOOM` events, each kill reported once whether
//! the agent's OOM watch or a process's exit saw it first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::topics::TASK_OOM_EVENT_TOPIC;

use super::lock;
use crate::agent::AgentClient;
use crate::shim::events::EventSink;

/// How many OOM kills containerd was told of, per container: the agent's OOM watch (polled) and
/// a process's exit (which checks the cgroup's `oom_kill` count before `TaskExit`) both report,
/// and each kill is reported once.
#[derive(Debug, Default)]
pub struct OomLedger(Mutex<HashMap<String, u64>>);

impl OomLedger {
    /// The cgroup counted `total` kills: true (and now recorded) when some were not reported.
    pub fn catch_up(&self, cid: &str, total: u64) -> bool {
        let mut all = lock(&self.0);
        let seen = all.entry(cid.to_owned()).or_default();
        if total > *seen {
            *seen = total;
            true
        } else {
            false
        }
    }
}

/// Publishes `TaskOOM` for `container_id`.
pub async fn publish_oom(events: &dyn EventSink, container_id: &str) {
    tracing::info!(container = %container_id, "OOM kill in the guest");
    let event = TaskOOM {
        container_id: container_id.to_owned(),
        ..Default::default()
    };
    events.publish(TASK_OOM_EVENT_TOPIC, Box::new(event)).await;
}

/// Publishes the agent's OOM events until its connection ends.
pub(super) async fn watch_oom(
    agent: AgentClient,
    events: Arc<dyn EventSink>,
    ooms: Arc<OomLedger>,
) {
    loop {
        match agent.get_oom_event().await {
            Ok(container_id) => {
                // The exit path may have reported this kill already: count from the cgroup.
                let fresh = match agent.stats_container(&container_id).await {
                    Ok(stats) => {
                        let kills = stats.memory.as_ref().map_or(1, |m| m.events_oom_kill);
                        ooms.catch_up(&container_id, kills)
                    }
                    // No count (the container may be going away): this event stands for at
                    // least one kill, which the exit path may already have reported.
                    Err(_) => ooms.catch_up(&container_id, 1),
                };
                if fresh {
                    publish_oom(events.as_ref(), &container_id).await;
                }
            }
            Err(e) => {
                tracing::debug!("OOM watch ended: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_oom_kill_is_reported_once() {
        let ooms = OomLedger::default();
        // The exit path saw the cgroup count one kill first; the watch's event for it is old.
        assert!(ooms.catch_up("c", 1));
        assert!(!ooms.catch_up("c", 1));
        // A second kill, seen by the watch.
        assert!(ooms.catch_up("c", 2));
        // The watch's event without a count (the container is going away) stands for one kill,
        // which the exit path had reported already: not again.
        assert!(ooms.catch_up("d", 1));
        assert!(!ooms.catch_up("d", 1));
        assert!(ooms.catch_up("d", 2));
    }
}
