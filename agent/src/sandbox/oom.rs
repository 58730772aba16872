//! OOM events: every container's `memory.events` `oom_kill` counter is watched; each increase
//! becomes one event for `GetOomEvent`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{lock, AgentError, Sandbox};

/// How often the counters are read.
const POLL: Duration = Duration::from_millis(100);

impl Sandbox {
    /// Watches for OOM kills forever.
    pub async fn watch_oom(self: Arc<Self>) {
        let mut seen: HashMap<String, u64> = HashMap::new();
        loop {
            tokio::time::sleep(POLL).await;
            let entries: Vec<_> = lock(&self.containers).values().cloned().collect();
            seen.retain(|id, _| entries.iter().any(|e| &e.id == id));
            for entry in entries {
                let Ok(count) = entry.with(|c| Ok(c.oom_kill_count()?)) else {
                    continue;
                };
                let before = seen.insert(entry.id.clone(), count).unwrap_or(0);
                if count > before {
                    let _ = self.oom_tx.try_send(entry.id.clone());
                }
            }
        }
    }

    /// `GetOomEvent`: the next container that was OOM-killed.
    pub async fn next_oom_event(&self) -> Result<String, AgentError> {
        self.oom_rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| AgentError::FailedPrecondition("the OOM watcher stopped".into()))
    }
}
