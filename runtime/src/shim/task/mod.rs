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

#[allow(unused_imports)]
use super::pod::Pod;

/// A protobuf timestamp of `t`.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}
