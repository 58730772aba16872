//! The vhost-user side of virtio-fs: connecting to the backend and negotiating what the guest
//! may see, then, each time the driver activates the device, the memory table and the vrings
//! (sizes, host addresses, base index, call and kick eventfds); `GET_VRING_BASE` stops them
//! again when the driver resets the device.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{FsError, NUM_QUEUES, QUEUE_SIZE};
use crate::memory::GuestMemory;

/// virtio features hull-vmm lets through from the backend to the guest: the ring layout ones
/// virtiofsd implements (hull-vmm never touches these rings itself).
pub const GUEST_FEATURES: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_RING_F_INDIRECT_DESC) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// Protocol features hull-vmm uses when the backend has them: several queues, and an ack for
/// every request so a failure shows up at the request that caused it.
pub const PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// The memory table for the backend: every guest RAM region with its memfd and offset.
pub fn memory_regions(mem: &GuestMemory) -> Result<Vec<VhostUserMemoryRegionInfo>, FsError> {
    mem.iter()
        .map(|r| {
            let fo = r
                .file_offset()
                .ok_or(FsError::NotShared(r.start_addr().0))?;
            Ok(VhostUserMemoryRegionInfo {
                guest_phys_addr: r.start_addr().0,
                memory_size: r.len(),
                userspace_addr: r.as_ptr() as u64,
                mmap_offset: fo.start(),
                mmap_handle: fo.file().as_raw_fd(),
            })
        })
        .collect()
}

/// A queue's vring addresses as this process maps them (vhost-user speaks in frontend
/// virtual addresses, translated through the memory table). Every address must lie in guest
/// memory; the transport already checked the whole ring with `Queue::is_valid`.
pub fn vring_config(
    mem: &GuestMemory,
    index: usize,
    q: &Queue,
) -> Result<VringConfigData, FsError> {
    let host = |what: &'static str, gpa: u64| {
        mem.get_host_address(GuestAddress(gpa))
            .map(|p| p as u64)
            .map_err(|_| FsError::QueueAddress(index, what, gpa))
    };
    Ok(VringConfigData {
        queue_max_size: QUEUE_SIZE,
        queue_size: q.size(),
        flags: 0,
        desc_table_addr: host("descriptor table", q.desc_table())?,
        used_ring_addr: host("used ring", q.used_ring())?,
        avail_ring_addr: host("available ring", q.avail_ring())?,
        log_addr: None,
    })
}

/// A connection to a vhost-user backend.
pub struct Backend {
    frontend: Frontend,
    features: u64,
    protocol: bool,
    started: Vec<usize>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("features", &format_args!("{:#x}", self.features))
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

fn req(what: &'static str) -> impl FnOnce(vhost::Error) -> FsError {
    move |e| FsError::Request(what, e)
}

impl Backend {
    /// Connects to the backend at `path` and negotiates the protocol features.
    pub fn connect(path: &Path) -> Result<Self, FsError> {
        let mut frontend = Frontend::connect(path, NUM_QUEUES as u64)
            .map_err(|e| FsError::Connect(path.to_owned(), e))?;
        frontend.set_owner().map_err(req("SET_OWNER"))?;
        let features = frontend.get_features().map_err(req("GET_FEATURES"))?;
        if features & (1 << VIRTIO_F_VERSION_1) == 0 {
            return Err(FsError::Backend("does not offer VIRTIO_F_VERSION_1"));
        }
        let protocol = features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol {
            let theirs = frontend
                .get_protocol_features()
                .map_err(req("GET_PROTOCOL_FEATURES"))?;
            let ours = theirs & PROTOCOL_FEATURES;
            frontend
                .set_protocol_features(ours)
                .map_err(req("SET_PROTOCOL_FEATURES"))?;
            if ours.contains(VhostUserProtocolFeatures::MQ) {
                let n = frontend.get_queue_num().map_err(req("GET_QUEUE_NUM"))?;
                if n < NUM_QUEUES as u64 {
                    return Err(FsError::Backend("serves fewer than 2 queues"));
                }
            }
            if ours.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
        }
        Ok(Self {
            frontend,
            features,
            protocol,
            started: Vec::new(),
        })
    }

    /// The features the guest is offered.
    pub fn guest_features(&self) -> u64 {
        self.features & GUEST_FEATURES
    }

    /// Whether queues run: started and not stopped since.
    pub fn running(&self) -> bool {
        !self.started.is_empty()
    }

    /// Hands the driver's queues to the backend: `acked` features, the memory table, then for
    /// every ready queue its size, addresses, base, call and kick eventfds.
    pub fn start(
        &mut self,
        mem: &GuestMemory,
        acked: u64,
        queues: &[Queue],
        kicks: &[Arc<EventFd>],
        calls: &[EventFd],
    ) -> Result<(), FsError> {
        let f = &mut self.frontend;
        let vhost_bits = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        f.set_features((acked & GUEST_FEATURES) | vhost_bits)
            .map_err(req("SET_FEATURES"))?;
        f.set_mem_table(&memory_regions(mem)?)
            .map_err(req("SET_MEM_TABLE"))?;
        for (i, q) in queues.iter().enumerate().filter(|(_, q)| q.ready()) {
            let (Some(kick), Some(call)) = (kicks.get(i), calls.get(i)) else {
                return Err(FsError::Backend("got more queues than eventfds"));
            };
            let config = vring_config(mem, i, q)?;
            f.set_vring_num(i, q.size()).map_err(req("SET_VRING_NUM"))?;
            f.set_vring_addr(i, &config)
                .map_err(req("SET_VRING_ADDR"))?;
            f.set_vring_base(i, q.next_avail())
                .map_err(req("SET_VRING_BASE"))?;
            f.set_vring_call(i, call).map_err(req("SET_VRING_CALL"))?;
            f.set_vring_kick(i, kick).map_err(req("SET_VRING_KICK"))?;
            if self.protocol {
                f.set_vring_enable(i, true)
                    .map_err(req("SET_VRING_ENABLE"))?;
            }
            self.started.push(i);
        }
        Ok(())
    }

    /// Stops every started queue (`GET_VRING_BASE`); errors are only logged: the backend may
    /// already be gone.
    pub fn stop(&mut self) {
        for i in std::mem::take(&mut self.started) {
            if let Err(e) = self.frontend.get_vring_base(i) {
                eprintln!("hull-vmm: virtio-fs: cannot stop queue {i}: {e}");
            }
        }
    }
}
