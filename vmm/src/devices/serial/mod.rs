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
}
