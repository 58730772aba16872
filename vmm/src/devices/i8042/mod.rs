//! The i8042 keyboard controller, reduced to what a microVM guest uses: its status port and the
//! CPU reset command (0xfe on port 0x64), which Linux's `reboot=k` sends. A reset ends the VM.

use vm_superio::{I8042Device, Trigger};

use super::{read_byte_port, write_byte_port, ExitReason, ExitSignal};
use crate::bus::BusDevice;

/// First port (data); the command/status port is at +4.
pub const I8042_BASE: u64 = 0x60;
/// Ports covered (0x60..=0x64).
pub const I8042_LEN: u64 = 5;

/// Turns the i8042's reset line into a VM exit.
#[derive(Debug, Clone)]
pub struct ResetLine(pub ExitSignal);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.exit(ExitReason::Reset);
        Ok(())
    }
}

/// The i8042 on the port bus.
#[derive(Debug)]
pub struct I8042(I8042Device<ResetLine>);

impl I8042 {
    /// A controller whose reset ends the VM through `exit`.
    pub fn new(exit: ExitSignal) -> Self {
        Self(I8042Device::new(ResetLine(exit)))
    }
}

impl BusDevice for I8042 {
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

    #[test]
    fn reset_command_ends_the_vm() {
        let exit = ExitSignal::new().unwrap();
        let mut dev = I8042::new(exit.clone());
        dev.write(4, &[0x00]);
        assert_eq!(exit.reason(), ExitReason::Running);
        dev.write(4, &[0xfe]);
        assert_eq!(exit.reason(), ExitReason::Reset);
    }
}
