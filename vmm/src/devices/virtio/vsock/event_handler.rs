//! Moving packets: TX chains from the guest are parsed and handed to the muxer; the muxer's
//! packets for the guest fill RX chains. Both directions check every length against the chain
//! they came in or go out on.

use std::io::{Read, Write};

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT, Reader, Writer};

use super::device::VsockDevice;
use super::packet::{Header, Op, HDR_LEN, MAX_PAYLOAD};
use super::{RXQ, TXQ};
use crate::devices::virtio::{drain_tx_queue, pass_budget};
use crate::memory::GuestMemory;

/// Why a TX chain was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TxError {
    /// No readable header.
    NoHeader,
    /// The header claims more payload than allowed or than the chain holds.
    BadLength(Header),
}

/// Reads one packet from a TX chain.
pub fn read_packet(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
) -> Result<(Header, Vec<u8>), TxError> {
    let mut reader = Reader::new(mem, chain).map_err(|_| TxError::NoHeader)?;
    let mut hdr = [0u8; HDR_LEN];
    reader.read_exact(&mut hdr).map_err(|_| TxError::NoHeader)?;
    let hdr = Header::decode(&hdr);
    let len = usize::try_from(hdr.len).unwrap_or(usize::MAX);
    if hdr.len > MAX_PAYLOAD || len > reader.available_bytes() {
        return Err(TxError::BadLength(hdr));
    }
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|_| TxError::BadLength(hdr))?;
    Ok((hdr, payload))
}

impl VsockDevice {
    /// Drains the TX queue.
    pub(super) fn process_tx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let (muxer, stats) = (&mut self.muxer, &mut self.stats);
        drain_tx_queue(
            &mut active.queues[TXQ],
            &active.mem,
            &active.interrupt,
            |chain| match read_packet(&active.mem, chain) {
                Ok((hdr, payload)) => {
                    stats.tx_packets += 1;
                    muxer.recv(&hdr, &payload);
                }
                Err(TxError::BadLength(hdr)) => {
                    stats.malformed_tx += 1;
                    if hdr.op() != Some(Op::Rst) {
                        // Answer as for an unknown op on that connection: RST.
                        let rst = Header {
                            op: 0,
                            len: 0,
                            ..hdr
                        };
                        muxer.recv(&rst, &[]);
                    }
                }
                Err(TxError::NoHeader) => stats.malformed_tx += 1,
            },
        );
    }

    /// Fills RX buffers with whatever the muxer has for the guest.
    pub(super) fn process_rx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.mem;
        let mut used = false;
        for _ in 0..pass_budget(&active.queues[RXQ]) {
            if !self.muxer.has_rx() {
                break;
            }
            let Some(chain) = active.queues[RXQ].pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let Ok(mut writer) = Writer::new(mem, chain) else {
                self.stats.bad_rx_buffers += 1;
                let _ = active.queues[RXQ].add_used(mem, head, 0);
                used = true;
                continue;
            };
            if writer.available_bytes() < HDR_LEN {
                self.stats.bad_rx_buffers += 1;
                let _ = active.queues[RXQ].add_used(mem, head, 0);
                used = true;
                continue;
            }
            let room = writer.available_bytes() - HDR_LEN;
            let Some((hdr, n)) = self.muxer.next_rx(room, &mut self.buf) else {
                active.queues[RXQ].go_to_previous_position();
                break;
            };
            if writer.write_all(&hdr.encode()).is_err() || writer.write_all(&self.buf[..n]).is_err()
            {
                self.stats.bad_rx_buffers += 1;
            }
            let len = u32::try_from(writer.bytes_written()).unwrap_or(0);
            if active.queues[RXQ].add_used(mem, head, len).is_err() {
                break;
            }
            self.stats.rx_packets += 1;
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
    }
}
