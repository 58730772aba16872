//! Moving frames. TX: each chain's readable bytes are the virtio-net header and one frame; the
//! header is skipped (no offloads were negotiated, so it says nothing) and the frame is written
//! to the tap. RX: frames are read from the tap until it is empty or the guest has no RX buffer
//! left (the frame then waits, and the next RX kick delivers it); each goes into one chain
//! behind a header whose only non-zero field is `num_buffers = 1`. A pass takes at most a
//! queue's size of chains ([`pass_budget`]); the guest's next kick starts the next.

use std::io::{Read, Write};

use virtio_queue::{DescriptorChain, QueueT, Reader, Writer};

use super::device::NetDevice;
use super::{MAX_FRAME, RXQ, TXQ, VNET_HDR_LEN};
use crate::devices::virtio::{drain_tx_queue, pass_budget};
use crate::memory::GuestMemory;

/// Reads the frame of one TX chain into `buf`; `None` when the chain is unreadable, shorter than
/// the header, or holds a frame larger than `buf`.
pub fn read_frame(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    buf: &mut [u8],
) -> Option<usize> {
    let mut reader = Reader::new(mem, chain).ok()?;
    let total = reader.available_bytes();
    let len = total.checked_sub(VNET_HDR_LEN)?;
    if len > buf.len() {
        return None;
    }
    let mut hdr = [0u8; VNET_HDR_LEN];
    reader.read_exact(&mut hdr).ok()?;
    reader.read_exact(&mut buf[..len]).ok()?;
    Some(len)
}

/// The header of every frame given to the guest.
pub fn rx_header() -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    h[10..12].copy_from_slice(&1u16.to_le_bytes());
    h
}

impl NetDevice {
    /// Drains the TX queue to the tap.
    pub(super) fn process_tx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let (tap, tx_buf, stats) = (&mut self.tap, &mut self.tx_buf, &mut self.stats);
        drain_tx_queue(
            &mut active.queues[TXQ],
            &active.mem,
            &active.interrupt,
            |chain| match read_frame(&active.mem, chain, tx_buf) {
                Some(len) => match tap.write_frame(&tx_buf[..len]) {
                    Ok(_) => stats.tx_frames += 1,
                    Err(_) => stats.tap_errors += 1,
                },
                None => stats.tx_dropped += 1,
            },
        );
    }

    /// Moves frames from the tap into RX buffers while both last.
    pub(super) fn process_rx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.mem;
        let mut used = false;
        for _ in 0..pass_budget(&active.queues[RXQ]) {
            let len = match self.rx_pending.take() {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.rx_buf[..MAX_FRAME]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                },
            };
            let Some(chain) = active.queues[RXQ].pop_descriptor_chain(mem) else {
                self.rx_pending = Some(len);
                break;
            };
            let head = chain.head_index();
            let written = Writer::new(mem, chain).ok().and_then(|mut w| {
                (w.available_bytes() >= VNET_HDR_LEN + len
                    && w.write_all(&rx_header()).is_ok()
                    && w.write_all(&self.rx_buf[..len]).is_ok())
                .then(|| w.bytes_written())
            });
            let used_len = match written {
                Some(n) => {
                    self.stats.rx_frames += 1;
                    u32::try_from(n).unwrap_or(0)
                }
                None => {
                    self.stats.rx_dropped += 1;
                    0
                }
            };
            if active.queues[RXQ].add_used(mem, head, used_len).is_err() {
                break;
            }
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
    }
}
