//! The earlier suites, run as part of the comparison and turned into its schema: virtio-fs
//! against the host directory (`fs`) and vsock + agent RPC (`agent`).

use hull_runtime::share::CacheMode;

use super::schema::{AgentFigures, FsFigures, FsWorkload, VsockThroughput};
use crate::{agent, fs};

fn workload(w: &fs::Workload) -> FsWorkload {
    FsWorkload {
        seq_write_s: w.seq_write_s,
        seq_read_s: w.seq_read_s,
        create_s: w.create_s,
        stat_s: w.stat_s,
        unlink_s: w.unlink_s,
    }
}

/// virtio-fs with the shim's default cache mode against the host directory.
pub async fn fs(mib: usize, files: usize) -> anyhow::Result<FsFigures> {
    let cache = CacheMode::default();
    let r = fs::measure(&[cache], mib, files).await?;
    let mode = r
        .modes
        .first()
        .ok_or_else(|| anyhow::anyhow!("the fs suite measured no cache mode"))?;
    Ok(FsFigures {
        backend: r.backend.clone(),
        cache: mode.cache.clone(),
        file_mib: mib,
        files,
        host: workload(&r.host_baseline),
        guest: workload(&mode.guest),
    })
}

/// Agent RPC round trips, container runs in a running VM and vsock throughput.
pub async fn agent(rpcs: usize, runs: usize, stream_mib: usize) -> anyhow::Result<AgentFigures> {
    let r = agent::measure(&agent::AgentOptions {
        rpcs,
        runs,
        stream_mib,
    })
    .await?;
    Ok(AgentFigures {
        backend: r.backend,
        rpc_us: r.rpc_samples_us,
        container_true_ms: r.container_true_samples_ms,
        throughput: r
            .throughput
            .iter()
            .map(|t| VsockThroughput {
                direction: t.direction.to_owned(),
                streams: t.streams,
                mib_per_s: t.mib_per_s,
            })
            .collect(),
    })
}
