//! A test guest that never finishes by itself, for snapshot tests: it counts in guest RAM (the
//! counter at [`COUNTER`]) and in a register (`rbx`), checks the two agree (a mismatch executes
//! `ud2` under the empty boot IDT: a triple fault), and writes the counter's low byte to COM1 on
//! every step. Its console is therefore `01 02 03 …`; a restored copy must go on from the byte
//! after the last one its original wrote, with RAM and registers both carried over. At `limit`
//! it resets the VM through the i8042.

use super::{guest_elf, GUEST_BASE, SCRATCH};

/// Where the counter lives (guest-physical).
pub const COUNTER: u64 = SCRATCH;

const CODE: &[u8] = &[
    0x48, 0xbf, 0, 0, 0, 0, 0, 0, 0, 0, // 00: movabs rdi, COUNTER (patched)
    0x48, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, // 0a: movabs rcx, limit (patched)
    0x66, 0xba, 0xf8, 0x03, //             14: mov dx, 0x3f8
    0x31, 0xdb, //                         18: xor ebx, ebx
    0x48, 0x8b, 0x07, //                   1a: loop: mov rax, [rdi]
    0x48, 0xff, 0xc0, //                   1d: inc rax
    0x48, 0x89, 0x07, //                   20: mov [rdi], rax
    0x48, 0xff, 0xc3, //                   23: inc rbx
    0x48, 0x39, 0xd8, //                   26: cmp rax, rbx
    0x75, 0x0d, //                         29: jne fault (0x38)
    0xee, //                               2b: out dx, al
    0x48, 0x39, 0xc8, //                   2c: cmp rax, rcx
    0x72, 0xe9, //                         2f: jb loop (0x1a)
    0xb0, 0xfe, //                         31: mov al, 0xfe
    0xe6, 0x64, //                         33: out 0x64, al (i8042 reset)
    0xf4, //                               35: hlt
    0xeb, 0xfd, //                         36: jmp 0x35
    0x0f, 0x0b, //                         38: fault: ud2
];

/// The counting guest as an ELF "kernel": counts to `limit`, then resets.
pub fn counter_guest(limit: u64) -> Vec<u8> {
    let len = usize::try_from(COUNTER - GUEST_BASE).expect("small") + 8;
    let mut image = vec![0u8; len];
    image[..CODE.len()].copy_from_slice(CODE);
    image[2..10].copy_from_slice(&COUNTER.to_le_bytes());
    image[12..20].copy_from_slice(&limit.to_le_bytes());
    guest_elf(&image)
}

/// Checks that `bytes` are the counter's output from step `first` on (`first`, `first + 1`, …,
/// low bytes); returns the index of the first byte that is not, if any.
pub fn first_break(bytes: &[u8], first: u64) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, b)| u64::from(*b) != (first + i as u64) & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let target = |at: usize| {
            at.wrapping_add(2)
                .wrapping_add_signed(isize::from(CODE[at + 1].cast_signed()))
        };
        assert_eq!(target(0x29), 0x38);
        assert_eq!(target(0x2f), 0x1a);
        assert_eq!(target(0x36), 0x35);
        assert_eq!(CODE.len(), 0x3a);
        assert_eq!(first_break(&[5, 6, 7], 5), None);
        assert_eq!(first_break(&[0xff, 0, 2], 0xff), Some(2));
    }
}
