//! ConfigMap and Secret updates seen inside the pod. The kubelet updates a ConfigMap, Secret,
//! projected or downward-API volume by swapping a `..data` symlink in the volume's host directory
//! (see `hull_protocol::volume`). Shared over virtio-fs, the guest would never see that the way a
//! runc container does: virtio-fs passes no inotify event from the host, and with
//! `virtio_fs_cache = "metadata"` a cached lookup keeps serving the old `..data` for a long time.
//!
//! So such a volume, when read-only (the kubelet always mounts these so), is not shared but
//! copied: the shim reads its payload without following symlinks (`crate::share::atomic_dir`),
//! the agent keeps it in a tmpfs of its own in the guest (`WriteVolume`), and the container's bind
//! mount points there. The shim watches the host directory with inotify (the watch is made before
//! the first read, so no update falls between them); on a change it reads the payload again after
//! a short settle and, when it differs from what the guest has, sends it, and the agent replays
//! the kubelet's swap in the tmpfs. Guest watchers and plain reads then see what they would on a
//! runc node, a moment later.
//!
//! Payloads over the caps (`hull_protocol::volume`), writable mounts and anything that is not the
//! kubelet's layout stay shared over virtio-fs, with a warning in the shim's log for the first.
//! An update that no longer fits is logged and the guest keeps the last payload. The watches go
//! with the container ([`VolumeWatch`] is dropped at `Delete`), or when the host directory goes.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use hull_protocol::volume::{guest_volume_dir, Payload};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use oci_spec::runtime::Spec;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::agent::client::{error_chain, AgentClientError};
use crate::agent::AgentClient;
use crate::share::atomic_dir::{self, AtomicDirError};
use crate::share::mounts::Access;
use crate::share::spec::HostBind;

/// How long after the first event of an update the payload is read: the kubelet's update is a
/// handful of calls (new directory, link, rename, user-visible links, removal).
const SETTLE: Duration = Duration::from_millis(100);

/// How often a read that failed (an update racing the read) is tried again before waiting for
/// the next event.
const READ_ATTEMPTS: u32 = 3;

/// What the watch listens for in the volume directory: the swap and the links around it, and the
/// directory itself going.
fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
        | AddWatchFlags::IN_DONT_FOLLOW
}

/// A volume that could not be copied (it is shared instead).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The inotify watch could not be made.
    #[error("cannot watch {0}")]
    Watch(PathBuf, #[source] nix::Error),
    /// Its payload could not be read.
    #[error(transparent)]
    Read(#[from] AtomicDirError),
}

/// A volume copied into the guest, with its host watch and the payload the guest has.
pub struct CopiedVolume {
    /// Its index in the spec's mounts (the agent's volume number).
    pub mount: u32,
    source: PathBuf,
    inotify: Inotify,
    payload: Payload,
}

impl std::fmt::Debug for CopiedVolume {
    // Never the payload: it is a Secret's bytes as often as not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopiedVolume")
            .field("mount", &self.mount)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CopiedVolume {
    /// Watches `source`, then reads its payload.
    fn open(source: PathBuf, mount: u32) -> Result<Self, CopyError> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| CopyError::Watch(source.clone(), e))?;
        inotify
            .add_watch(&source, watch_mask())
            .map_err(|e| CopyError::Watch(source.clone(), e))?;
        let payload = atomic_dir::read_payload(&source)?;
        Ok(Self {
            mount,
            source,
            inotify,
            payload,
        })
    }
}

/// Takes out of `binds` the read-only binds of kubelet atomic-writer directories that can be
/// copied, and points their mounts in `spec` at the guest copies. What cannot be copied stays a
/// bind, with a warning when only its size or contents stopped it.
pub fn take_copies(
    spec: &mut Spec,
    cid: &str,
    binds: Vec<HostBind>,
) -> (Vec<HostBind>, Vec<CopiedVolume>) {
    let mut kept = Vec::new();
    let mut copies = Vec::new();
    for b in binds {
        let index = u32::try_from(b.mount).ok();
        let candidate = b.access != Access::ReadWrite && atomic_dir::is_atomic_writer(&b.source);
        let Some(index) = index.filter(|_| candidate) else {
            kept.push(b);
            continue;
        };
        match CopiedVolume::open(b.source.clone(), index) {
            Ok(copy) => {
                let target = guest_volume_dir(cid, index);
                if let Some(m) = spec.mounts_mut().as_mut().and_then(|l| l.get_mut(b.mount)) {
                    m.set_source(Some(PathBuf::from(target)));
                }
                copies.push(copy);
            }
            Err(e) => {
                tracing::warn!(
                    "container {cid}: sharing {} over virtio-fs instead of copying it (updates may not be seen in the guest): {}",
                    b.source.display(),
                    error_chain(&e)
                );
                kept.push(b);
            }
        }
    }
    (kept, copies)
}

/// Gives the guest its copies of container `cid`'s volumes (before the container is created).
pub async fn copy_in(
    agent: &AgentClient,
    cid: &str,
    copies: &[CopiedVolume],
) -> Result<(), AgentClientError> {
    for c in copies {
        agent.write_volume(cid, c.mount, &c.payload).await?;
    }
    Ok(())
}

/// The watches of one container's copied volumes; dropping it stops them.
#[derive(Debug, Default)]
pub struct VolumeWatch(Vec<JoinHandle<()>>);

impl Drop for VolumeWatch {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Follows container `cid`'s copied volumes, sending each host update to the guest.
pub fn watch(agent: &AgentClient, cid: &str, copies: Vec<CopiedVolume>) -> VolumeWatch {
    VolumeWatch(
        copies
            .into_iter()
            .map(|c| tokio::spawn(follow(agent.clone(), cid.to_owned(), c)))
            .collect(),
    )
}

/// The inotify descriptor as tokio's reactor wants it.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Whether `events` say the watched directory itself went (the pod's volume was torn down).
fn gone(events: &[nix::sys::inotify::InotifyEvent]) -> bool {
    events.iter().any(|e| {
        e.mask.intersects(
            AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_IGNORED,
        )
    })
}

/// Everything queued now, without waiting (empty when nothing is).
fn drain(fd: &AsyncFd<Fd>) -> std::io::Result<Vec<nix::sys::inotify::InotifyEvent>> {
    let mut all = Vec::new();
    loop {
        match fd.get_ref().0.read_events() {
            Ok(events) => all.extend(events),
            Err(nix::Error::EAGAIN) => return Ok(all),
            Err(e) => return Err(e.into()),
        }
    }
}

async fn follow(agent: AgentClient, cid: String, copy: CopiedVolume) {
    let CopiedVolume {
        mount,
        source,
        inotify,
        mut payload,
    } = copy;
    // SAFETY: `Fd` owns the inotify descriptor, which stays open and the same until the AsyncFd
    // (its only owner) is dropped.
    let fd = match unsafe { AsyncFd::register(Fd(inotify)) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("container {cid}: cannot follow {}: {e}", source.display());
            return;
        }
    };
    loop {
        let mut events = match fd.readable().await {
            Ok(mut ready) => {
                ready.clear_ready();
                match drain(&fd) {
                    Ok(events) => events,
                    Err(e) => {
                        tracing::warn!("container {cid}: watching {}: {e}", source.display());
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("container {cid}: watching {}: {e}", source.display());
                return;
            }
        };
        if events.is_empty() {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        events.extend(drain(&fd).unwrap_or_default());
        if gone(&events) {
            tracing::debug!("container {cid}: {} went away", source.display());
            return;
        }
        let Some(fresh) = read_settled(&cid, &source).await else {
            continue;
        };
        if fresh == payload {
            continue;
        }
        match agent.write_volume(&cid, mount, &fresh).await {
            Ok(()) => {
                tracing::info!("container {cid}: {} updated in the guest", source.display());
                payload = fresh;
            }
            // The guest keeps what it had; the next change tries again.
            Err(e) => tracing::warn!(
                "container {cid}: cannot update {} in the guest: {}",
                source.display(),
                error_chain(&e)
            ),
        }
    }
}

/// The payload after an update, or `None` (logged) when it cannot be read now: a second update
/// racing the read is tried again a few times; too big or malformed waits for the next change.
async fn read_settled(cid: &str, source: &std::path::Path) -> Option<Payload> {
    for attempt in 1..=READ_ATTEMPTS {
        let path = source.to_owned();
        let read = tokio::task::spawn_blocking(move || atomic_dir::read_payload(&path)).await;
        match read {
            Ok(Ok(p)) => return Some(p),
            Ok(Err(e @ AtomicDirError::Io { .. })) if attempt < READ_ATTEMPTS => {
                tracing::debug!("container {cid}: reading {}: {e}; again", source.display());
                tokio::time::sleep(SETTLE).await;
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "container {cid}: the guest keeps the last copy of {}: {}",
                    source.display(),
                    error_chain(&e)
                );
                return None;
            }
            Err(e) => {
                tracing::warn!("container {cid}: reading {}: {e}", source.display());
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_read_only_kubelet_directories_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let kube = dir.path().join("kubernetes.io~configmap/cfg");
        std::fs::create_dir_all(kube.join("..2026_01_01_00_00_00.1")).unwrap();
        std::fs::write(kube.join("..2026_01_01_00_00_00.1/key"), "v1").unwrap();
        std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", kube.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/key", kube.join("key")).unwrap();
        let plain = dir.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let mut spec: Spec = serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/cfg", "type": "bind", "source": kube, "options": ["rbind", "ro"]},
                {"destination": "/rw", "type": "bind", "source": kube, "options": ["rbind", "rw"]},
                {"destination": "/plain", "type": "bind", "source": plain, "options": ["rbind", "ro"]}
            ]
        }))
        .unwrap();
        let binds =
            crate::share::spec::rewrite(&mut spec, "c1", std::path::Path::new("/s")).unwrap();
        let (kept, copies) = take_copies(&mut spec, "c1", binds);
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0].mount, 0);
        assert_eq!(copies[0].payload.top_level(), ["key"]);
        let kept: Vec<usize> = kept.iter().map(|b| b.mount).collect();
        assert_eq!(kept, [1, 2], "writable and plain directories stay shared");
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(
            mounts[0].source().as_deref(),
            Some(std::path::Path::new("/run/hull/volumes/c1/0"))
        );
        assert_eq!(
            mounts[1].source().as_deref(),
            Some(std::path::Path::new("/run/hull/shared/c1/mounts/1"))
        );
        assert!(
            !format!("{:?}", copies[0]).contains("v1"),
            "no payload in logs"
        );
    }

    #[test]
    fn a_volume_over_the_caps_stays_shared() {
        let dir = tempfile::tempdir().unwrap();
        let kube = dir.path().join("kubernetes.io~secret/big");
        std::fs::create_dir_all(kube.join("..1")).unwrap();
        let big = vec![b'x'; hull_protocol::volume::MAX_VOLUME_BYTES + 1];
        std::fs::write(kube.join("..1/key"), big).unwrap();
        std::os::unix::fs::symlink("..1", kube.join("..data")).unwrap();
        let mut spec: Spec = serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/big", "type": "bind", "source": kube, "options": ["rbind", "ro"]}
            ]
        }))
        .unwrap();
        let binds =
            crate::share::spec::rewrite(&mut spec, "c1", std::path::Path::new("/s")).unwrap();
        let (kept, copies) = take_copies(&mut spec, "c1", binds);
        assert!(copies.is_empty());
        assert_eq!(kept.len(), 1);
        let mounts = spec.mounts().as_ref().unwrap();
        assert_eq!(
            mounts[0].source().as_deref(),
            Some(std::path::Path::new("/run/hull/shared/c1/mounts/0"))
        );
    }
}
