//! virtio-mmio register semantics against a recording fake device.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::devices::virtio::{ActivateError, DeviceSnapshot, INT_VRING};

#[derive(Default)]
struct Fake {
    acked: u64,
    activated: Option<usize>,
    resets: u32,
    notified: Vec<u16>,
    config: [u8; 8],
    queues: Vec<Queue>,
}

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        42
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 0b101
    }
    fn ack_features(&mut self, f: u64) {
        self.acked = f;
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let o = usize::try_from(offset).unwrap();
        data.copy_from_slice(&self.config[o..o + data.len()]);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let o = usize::try_from(offset).unwrap();
        self.config[o..o + data.len()].copy_from_slice(data);
    }
    fn activate(
        &mut self,
        _m: GuestMemory,
        q: Vec<Queue>,
        _i: Interrupt,
    ) -> Result<(), ActivateError> {
        assert!(q[0].ready() && q[0].size() == 16);
        self.activated = Some(q.len());
        self.queues = q;
        Ok(())
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.activated = None;
    }
    fn queue_notify(&mut self, q: u16) {
        self.notified.push(q);
    }
    fn state(&self) -> Result<DeviceSnapshot, String> {
        Ok(DeviceSnapshot::of(42, self.acked, &self.queues))
    }
}

struct Ctx {
    t: MmioTransport,
    dev: Arc<Mutex<Fake>>,
    evts: Vec<Arc<EventFd>>,
    irq: Arc<EventFd>,
}

fn ctx() -> Ctx {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let dev = Arc::new(Mutex::new(Fake::default()));
    let evts: Vec<_> = (0..2)
        .map(|_| Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()))
        .collect();
    let irq = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
    let t = MmioTransport::new(dev.clone(), mem, Interrupt::new(irq.clone()), evts.clone());
    Ctx { t, dev, evts, irq }
}

fn r(t: &mut MmioTransport, off: u64) -> u32 {
    let mut d = [0u8; 4];
    t.read(off, &mut d);
    u32::from_le_bytes(d)
}

fn w(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn negotiate(t: &mut MmioTransport, features_hi: u32, features_lo: u32) {
    w(t, reg::STATUS, status::ACKNOWLEDGE);
    w(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    w(t, reg::DRIVER_FEATURES_SEL, 1);
    w(t, reg::DRIVER_FEATURES, features_hi);
    w(t, reg::DRIVER_FEATURES_SEL, 0);
    w(t, reg::DRIVER_FEATURES, features_lo);
    w(
        t,
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
    );
}

fn setup_queue(t: &mut MmioTransport, q: u32, base: u32, size: u32) {
    w(t, reg::QUEUE_SEL, q);
    w(t, reg::QUEUE_NUM, size);
    w(t, reg::QUEUE_DESC_LOW, base);
    w(t, reg::QUEUE_DESC_HIGH, 0);
    w(t, reg::QUEUE_DRIVER_LOW, base + 0x1000);
    w(t, reg::QUEUE_DRIVER_HIGH, 0);
    w(t, reg::QUEUE_DEVICE_LOW, base + 0x2000);
    w(t, reg::QUEUE_DEVICE_HIGH, 0);
    w(t, reg::QUEUE_READY, 1);
}

#[test]
fn identity_registers() {
    let mut c = ctx();
    assert_eq!(r(&mut c.t, reg::MAGIC), 0x7472_6976);
    assert_eq!(r(&mut c.t, reg::VERSION), 2);
    assert_eq!(r(&mut c.t, reg::DEVICE_ID), 42);
    assert_eq!(r(&mut c.t, reg::VENDOR_ID), VENDOR);
    w(&mut c.t, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(r(&mut c.t, reg::DEVICE_FEATURES), 0b101);
    w(&mut c.t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut c.t, reg::DEVICE_FEATURES), 1);
    w(&mut c.t, reg::DEVICE_FEATURES_SEL, 7);
    assert_eq!(r(&mut c.t, reg::DEVICE_FEATURES), 0);
    w(&mut c.t, reg::QUEUE_SEL, 1);
    assert_eq!(r(&mut c.t, reg::QUEUE_NUM_MAX), 8);
    w(&mut c.t, reg::QUEUE_SEL, 9);
    assert_eq!(r(&mut c.t, reg::QUEUE_NUM_MAX), 0, "no such queue");
    // Unaligned or narrow register accesses read zero and are ignored.
    let mut two = [0xffu8; 2];
    c.t.read(reg::MAGIC, &mut two);
    assert_eq!(two, [0, 0]);
}

#[test]
fn full_handshake_activates_with_the_configured_queues() {
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0b001);
    assert_ne!(c.t.status() & status::FEATURES_OK, 0);
    assert_eq!(c.dev.lock().unwrap().acked, VIRTIO_F_VERSION_1 | 1);
    setup_queue(&mut c.t, 0, 0x1_0000, 16);
    setup_queue(&mut c.t, 1, 0x2_0000, 8);
    w(&mut c.t, reg::QUEUE_SEL, 0);
    assert_eq!(r(&mut c.t, reg::QUEUE_READY), 1);
    w(&mut c.t, reg::STATUS, 0xf);
    assert!(c.t.activated());
    assert_eq!(c.dev.lock().unwrap().activated, Some(2));
    assert_eq!(r(&mut c.t, reg::STATUS), 0xf);
}

#[test]
fn features_without_version_1_or_not_offered_are_refused() {
    let mut c = ctx();
    negotiate(&mut c.t, 0, 0b001);
    assert_eq!(c.t.status() & status::FEATURES_OK, 0, "legacy driver");
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0b010);
    assert_eq!(c.t.status() & status::FEATURES_OK, 0, "feature not offered");
}

#[test]
fn queues_cannot_be_configured_before_features_ok_or_after_driver_ok() {
    let mut c = ctx();
    setup_queue(&mut c.t, 0, 0x1_0000, 16);
    w(&mut c.t, reg::QUEUE_SEL, 0);
    assert_eq!(r(&mut c.t, reg::QUEUE_READY), 0);
    negotiate(&mut c.t, 1, 0);
    setup_queue(&mut c.t, 0, 0x1_0000, 16);
    w(&mut c.t, reg::STATUS, 0xf);
    assert!(c.t.activated());
    w(&mut c.t, reg::QUEUE_SEL, 1);
    w(&mut c.t, reg::QUEUE_NUM, 8);
    w(&mut c.t, reg::QUEUE_READY, 1);
    assert_eq!(
        r(&mut c.t, reg::QUEUE_READY),
        0,
        "no queue set-up after DRIVER_OK"
    );
}

#[test]
fn invalid_queue_addresses_need_a_reset() {
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0);
    // Rings beyond guest memory.
    setup_queue(&mut c.t, 0, 0x7000_0000, 16);
    w(&mut c.t, reg::STATUS, 0xf);
    assert!(!c.t.activated());
    assert_ne!(c.t.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn status_zero_resets_device_and_transport() {
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0);
    setup_queue(&mut c.t, 0, 0x1_0000, 16);
    w(&mut c.t, reg::STATUS, 0xf);
    w(&mut c.t, reg::STATUS, 0);
    assert_eq!(c.t.status(), 0);
    assert!(!c.t.activated());
    assert_eq!(c.dev.lock().unwrap().resets, 1);
    w(&mut c.t, reg::QUEUE_SEL, 0);
    assert_eq!(r(&mut c.t, reg::QUEUE_READY), 0);
}

#[test]
fn status_bits_cannot_be_cleared_one_by_one() {
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0);
    w(&mut c.t, reg::STATUS, status::ACKNOWLEDGE);
    assert_eq!(c.t.status(), 0xb);
}

#[test]
fn notify_writes_reach_the_queue_eventfd_and_interrupts_are_acked() {
    let mut c = ctx();
    w(&mut c.t, reg::QUEUE_NOTIFY, 1);
    assert_eq!(c.evts[1].read().unwrap(), 1);
    w(&mut c.t, reg::QUEUE_NOTIFY, 5); // no such queue: ignored
    c.t.interrupt.signal_used_queue();
    assert_eq!(c.irq.read().unwrap(), 1);
    assert_eq!(r(&mut c.t, reg::INTERRUPT_STATUS), 1);
    w(&mut c.t, reg::INTERRUPT_ACK, 1);
    assert_eq!(r(&mut c.t, reg::INTERRUPT_STATUS), 0);
}

#[test]
fn config_space_goes_to_the_device() {
    let mut c = ctx();
    c.t.write(reg::CONFIG + 2, &[9, 8]);
    let mut d = [0u8; 4];
    c.t.read(reg::CONFIG, &mut d);
    assert_eq!(d, [0, 0, 9, 8]);
    assert!(c.dev.lock().unwrap().notified.is_empty());
}

#[test]
fn state_restores_into_a_fresh_transport_and_reactivates_the_device() {
    let mut c = ctx();
    negotiate(&mut c.t, 1, 0b100);
    setup_queue(&mut c.t, 0, 0x1_0000, 16);
    // A snapshot half-way: the queues are still the transport's.
    let early = c.t.state().unwrap();
    assert!(!early.activated && early.device.queues.is_empty());
    assert!(early.queues[0].ready);
    let mut d = ctx();
    d.t.restore(&early).unwrap();
    assert_eq!(d.t.state().unwrap(), early);
    assert_eq!(lock(&d.dev).activated, None);

    w(&mut c.t, reg::STATUS, 0xf);
    assert!(c.t.activated());
    c.t.interrupt.raise(INT_VRING);
    let late = c.t.state().unwrap();
    assert_eq!(late.device.queues.len(), 2);
    assert_eq!(late.device.acked_features, VIRTIO_F_VERSION_1 | 0b100);
    let mut d = ctx();
    d.t.restore(&late).unwrap();
    assert!(d.t.activated());
    assert_eq!(lock(&d.dev).activated, Some(2));
    assert_eq!(lock(&d.dev).acked, VIRTIO_F_VERSION_1 | 0b100);
    assert_eq!(r(&mut d.t, reg::INTERRUPT_STATUS), INT_VRING);
    assert_eq!(d.t.state().unwrap(), late);

    // Another device, or saved queues that are not a queue, are refused.
    let mut other = late.clone();
    other.device.device_type = 19;
    assert!(ctx().t.restore(&other).unwrap_err().contains("type 19"));
    let mut bad = late.clone();
    bad.device.queues[0].size = 3;
    assert!(ctx()
        .t
        .restore(&bad)
        .unwrap_err()
        .contains("invalid saved queue"));
    let mut outside = late;
    outside.device.queues[0].desc_table = 0xffff_0000;
    assert!(ctx().t.restore(&outside).unwrap_err().contains("outside"));
}
