//! The virtio-fs device's virtio face: id 26, the features the backend offers (filtered), two
//! queues (high priority, requests) and the config space: the 36-byte tag and the number of
//! request queues. Activation and reset only record what the driver wants and wake the event
//! loop, which brings the backend in line ([`FsDevice::backend_event`] with index 0).

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::vhost_user::Backend;
use super::{FsError, NUM_QUEUES, QUEUE_SIZE, VIRTIO_ID_FS};
use crate::config::FS_TAG_MAX;
use crate::devices::virtio::{read_config_space, ActivateError, Interrupt, VirtioDevice};
use crate::memory::GuestMemory;

/// Size of the config space: tag, then `num_request_queues` (le32).
pub const CONFIG_LEN: usize = FS_TAG_MAX + 4;

/// The config space for `tag` (truncated to 36 bytes, NUL padded) and one request queue.
pub fn config_space(tag: &str) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let n = tag.len().min(FS_TAG_MAX);
    c[..n].copy_from_slice(&tag.as_bytes()[..n]);
    let request_queues = u32::try_from(NUM_QUEUES - 1).expect("few queues");
    c[FS_TAG_MAX..].copy_from_slice(&request_queues.to_le_bytes());
    c
}

/// What the driver asked for at its last activation.
#[derive(Debug)]
struct Wanted {
    mem: GuestMemory,
    queues: Vec<Queue>,
    interrupt: Interrupt,
}

/// virtio-fs, served by a vhost-user backend.
#[derive(Debug)]
pub struct FsDevice {
    config: [u8; CONFIG_LEN],
    backend: Backend,
    features: u64,
    acked: u64,
    kicks: Vec<Arc<EventFd>>,
    calls: Vec<EventFd>,
    wake: EventFd,
    wanted: Option<Wanted>,
    /// Bumped by every activation and reset; the backend is in line when `started == generation`.
    generation: u64,
    started: u64,
}

impl FsDevice {
    /// Connects to the backend listening on `socket`; the guest mounts the share as `tag`.
    pub fn connect(socket: &Path, tag: &str) -> Result<Self, FsError> {
        let backend = Backend::connect(socket)?;
        let evt = || EventFd::new(libc::EFD_NONBLOCK).map_err(FsError::EventFd);
        Ok(Self {
            config: config_space(tag),
            features: backend.guest_features(),
            backend,
            acked: 0,
            kicks: Vec::new(),
            calls: (0..NUM_QUEUES).map(|_| evt()).collect::<Result<_, _>>()?,
            wake: evt()?,
            wanted: None,
            generation: 0,
            started: 0,
        })
    }

    /// Whether the backend currently serves the driver's queues.
    pub fn running(&self) -> bool {
        self.backend.running()
    }

    /// Brings the backend in line with the driver: stops what ran before, starts what the
    /// driver activated last. A failure is logged and leaves the queues unserved (the guest's
    /// requests then wait, as they would for a dead virtiofsd).
    fn reconcile(&mut self) {
        if self.started == self.generation {
            return;
        }
        self.started = self.generation;
        self.backend.stop();
        if let Some(w) = &self.wanted {
            let r = self
                .backend
                .start(&w.mem, self.acked, &w.queues, &self.kicks, &self.calls);
            match r {
                Ok(()) => eprintln!("hull-vmm: virtio-fs: vhost-user backend serves the queues"),
                // `{:#}`: the error and its sources on one line, as at every edge of hull.
                Err(e) => eprintln!("hull-vmm: virtio-fs: {:#}", anyhow::Error::from(e)),
            }
        }
    }
}

impl VirtioDevice for FsDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features & self.features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_space(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        interrupt: Interrupt,
    ) -> Result<(), ActivateError> {
        if queues.len() != NUM_QUEUES {
            return Err(ActivateError::QueueCount {
                want: NUM_QUEUES,
                got: queues.len(),
            });
        }
        self.wanted = Some(Wanted {
            mem,
            queues,
            interrupt,
        });
        self.generation += 1;
        self.wake.write(1).map_err(ActivateError::Backend)
    }

    fn reset(&mut self) {
        self.wanted = None;
        self.acked = 0;
        self.generation += 1;
        let _ = self.wake.write(1);
    }

    fn queue_notify(&mut self, _queue: u16) {}

    fn take_queue_events(&mut self, evts: &[Arc<EventFd>]) -> bool {
        self.kicks = evts.to_vec();
        true
    }

    /// The queues' progress lives in the backend: a snapshot is only taken before the driver
    /// made any request (the guest has not mounted the share), when the saved queues are exact
    /// and a fresh virtiofsd can take them over.
    fn state(&self) -> Result<crate::devices::virtio::DeviceSnapshot, String> {
        let queues = self.wanted.as_ref().map_or(&[][..], |w| &w.queues[..]);
        if let Some(w) = &self.wanted {
            for (i, q) in queues.iter().enumerate().filter(|(_, q)| q.ready()) {
                let avail = q
                    .avail_idx(&w.mem, std::sync::atomic::Ordering::Acquire)
                    .map_err(|e| format!("virtio-fs queue {i}: {e}"))?;
                if avail.0 != q.next_avail() {
                    return Err(format!(
                        "virtio-fs queue {i} has carried requests (its state is in virtiofsd): \
                         snapshot before the guest mounts the share"
                    ));
                }
            }
        }
        Ok(crate::devices::virtio::DeviceSnapshot::of(
            VIRTIO_ID_FS,
            self.acked,
            queues,
        ))
    }

    fn backend_events(&self) -> Vec<(RawFd, EventSet)> {
        std::iter::once(&self.wake)
            .chain(&self.calls)
            .map(|e| (e.as_raw_fd(), EventSet::IN))
            .collect()
    }

    fn backend_event(&mut self, index: usize) {
        if index == 0 {
            let _ = self.wake.read();
            self.reconcile();
            return;
        }
        if let Some(call) = self.calls.get(index - 1) {
            let _ = call.read();
            if let Some(w) = &self.wanted {
                w.interrupt.signal_used_queue();
            }
        }
    }
}
