//! The 8250 UART at COM1 (port 0x3f8, IRQ 4): the guest's console, written to a file or stdout.
//! Interrupts go to the in-kernel IOAPIC through an irqfd.

use std::io::Write;

use vm_superio::{Serial as Uart, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::{read_byte_port, write_byte_port};
use crate::bus::BusDevice;

/// COM1's first port.
pub const COM1_BASE: u64 = 0x3f8;
/// Ports covered.
pub const COM1_LEN: u64 = 8;
/// COM1's GSI.
pub const COM1_GSI: u32 = 4;

/// Raises the UART's interrupt by writing its irqfd.
#[derive(Debug)]
pub struct IrqFd(pub EventFd);

impl Trigger for IrqFd {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// Where console output goes.
pub type ConsoleOut = Box<dyn Write + Send>;

/// The UART on the port bus.
pub struct Serial(Uart<IrqFd, vm_superio::serial::NoEvents, ConsoleOut>);

impl std::fmt::Debug for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serial")
    }
}

impl Serial {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: EventFd, out: ConsoleOut) -> Self {
        Self(Uart::new(IrqFd(irq), out))
    }

    /// Flushes console output.
    pub fn flush(&mut self) {
        let _ = self.0.writer_mut().flush();
    }

    /// The UART's registers and receive FIFO, for a snapshot.
    pub fn state(&self) -> SerialSnapshot {
        let s = self.0.state();
        SerialSnapshot {
            regs: [
                s.baud_divisor_low,
                s.baud_divisor_high,
                s.interrupt_enable,
                s.interrupt_identification,
                s.line_control,
                s.line_status,
                s.modem_control,
                s.modem_status,
                s.scratch,
            ],
            in_buffer: s.in_buffer,
        }
    }

    /// A UART raising `irq` and writing to `out`, in the state a snapshot recorded; `None` when
    /// the recorded FIFO is larger than a UART's.
    pub fn restore(irq: EventFd, out: ConsoleOut, state: &SerialSnapshot) -> Option<Self> {
        let [baud_divisor_low, baud_divisor_high, interrupt_enable, interrupt_identification, line_control, line_status, modem_control, modem_status, scratch] =
            state.regs;
        let s = vm_superio::serial::SerialState {
            baud_divisor_low,
            baud_divisor_high,
            interrupt_enable,
            interrupt_identification,
            line_control,
            line_status,
            modem_control,
            modem_status,
            scratch,
            in_buffer: state.in_buffer.clone(),
        };
        Uart::from_state(&s, IrqFd(irq), vm_superio::serial::NoEvents, out)
            .ok()
            .map(Self)
    }
}

/// A snapshot of the UART: its nine registers (divisor low/high, IER, IIR, LCR, LSR, MCR, MSR,
/// scratch) and the bytes waiting in its receive FIFO.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    regs: [u8; 9],
    in_buffer: Vec<u8>,
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_byte_port(offset, data, |o| self.0.read(o));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_byte_port(offset, data, |o, b| {
            let _ = self.0.write(o, b);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_console() {
        let sink = Sink::default();
        let mut s = Serial::new(EventFd::new(0).unwrap(), Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter holding register empty");
    }

    #[test]
    fn state_survives_a_restore() {
        let sink = Sink::default();
        let mut s = Serial::new(EventFd::new(0).unwrap(), Box::new(sink.clone()));
        s.write(7, &[0x5a]); // scratch
        s.write(3, &[0x03]); // LCR: 8 bits
        let snap = s.state();
        let mut r =
            Serial::restore(EventFd::new(0).unwrap(), Box::new(sink.clone()), &snap).unwrap();
        let mut b = [0u8];
        r.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        assert_eq!(r.state(), snap);
        r.write(0, b"z");
        assert_eq!(&*sink.0.lock().unwrap(), b"z");
    }
}
