//! Test guests, built by the tests themselves: a minimal ELF64 "kernel" wrapper, and a tiny
//! long-mode program that runs a list of commands (MMIO/RAM writes, polls, port writes, echoing
//! guest memory to the serial port). The commands are data, so one hand-assembled interpreter of
//! about 100 bytes serves every exit-path test (serial, i8042 reset, triple fault, unmapped MMIO,
//! the virtio-mmio handshake and vsock packets through real queues in guest memory).
//!
//! Public so the integration tests can use it; not part of the VMM's API. [`virtio`] has the
//! driver side of virtio-mmio for test guests; [`counter`] a guest that counts forever (snapshot
//! tests); [`hostile`] makes seeded guests that write garbage
//! into every virtio-mmio register and queue.

pub mod counter;
pub mod hostile;
pub mod virtio;

/// Where test guests are loaded and entered.
pub const GUEST_BASE: u64 = 0x20_0000;
/// Where the command list starts (inside the image).
pub const COMMANDS: u64 = GUEST_BASE + 0x1000;
/// Free scratch memory inside the image, for queues and buffers.
pub const SCRATCH: u64 = GUEST_BASE + 0x8000;

/// Wraps `image` (loaded at `base`, entered at `entry`) in an x86_64 ELF64 executable with one
/// `PT_LOAD` segment, as linux-loader's ELF loader accepts it.
pub fn elf64(base: u64, entry: u64, image: &[u8]) -> Vec<u8> {
    elf64_segments(entry, &[(base, image)])
}

/// An x86_64 ELF64 executable entered at `entry` with one `PT_LOAD` segment per `(address,
/// bytes)`: a test guest can have memory far from its code filled at load time.
pub fn elf64_segments(entry: u64, segments: &[(u64, &[u8])]) -> Vec<u8> {
    const EHDR: u16 = 64;
    const PHDR: u16 = 56;
    let phnum = u16::try_from(segments.len()).expect("few segments");
    let mut out = Vec::new();
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&u64::from(EHDR).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&EHDR.to_le_bytes());
    out.extend_from_slice(&PHDR.to_le_bytes());
    out.extend_from_slice(&phnum.to_le_bytes()); // e_phnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let mut offset = u64::from(EHDR) + u64::from(PHDR) * u64::from(phnum);
    for (base, image) in segments {
        out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out.extend_from_slice(&7u32.to_le_bytes()); // RWX
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes()); // p_vaddr
        out.extend_from_slice(&base.to_le_bytes()); // p_paddr
        out.extend_from_slice(&(image.len() as u64).to_le_bytes());
        out.extend_from_slice(&(image.len() as u64).to_le_bytes());
        out.extend_from_slice(&0x1000u64.to_le_bytes());
        offset += image.len() as u64;
    }
    for (_, image) in segments {
        out.extend_from_slice(image);
    }
    out
}

/// One command of the test guest's interpreter (32 bytes in guest memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// 32-bit write of `value` to `addr` (RAM or MMIO).
    Write32 {
        /// Guest-physical address.
        addr: u64,
        /// Value.
        value: u32,
    },
    /// Spin until `(read32(addr) & mask) == value`.
    Poll32 {
        /// Guest-physical address.
        addr: u64,
        /// Mask.
        mask: u32,
        /// Expected value.
        value: u32,
    },
    /// `out port, value` (one byte).
    Out8 {
        /// I/O port.
        port: u16,
        /// Byte.
        value: u8,
    },
    /// Write `len` bytes of guest memory at `addr` to I/O port `port`, one `out` each.
    Echo {
        /// Guest-physical address.
        addr: u64,
        /// Bytes.
        len: u32,
        /// I/O port.
        port: u16,
    },
    /// 32-bit read of `addr`, then its low byte to I/O port `port` (shows what an MMIO read got).
    ReadOut {
        /// Guest-physical address.
        addr: u64,
        /// I/O port.
        port: u16,
    },
    /// Load an empty IDT and execute `ud2`: a triple fault.
    TripleFault,
    /// 64-bit write of `value` to `addr`.
    Write64 {
        /// Guest-physical address.
        addr: u64,
        /// Value.
        value: u64,
    },
    /// 8-bit write of `value` to `addr`.
    Write8 {
        /// Guest-physical address.
        addr: u64,
        /// Value.
        value: u8,
    },
    /// 16-bit write of `value` to `addr`.
    Write16 {
        /// Guest-physical address.
        addr: u64,
        /// Value.
        value: u16,
    },
    /// Write 0xfe to the i8042 command port: a reset request.
    Reset,
}

impl Cmd {
    fn encode(self) -> [u8; 32] {
        let (op, a, b, c): (u64, u64, u64, u64) = match self {
            Cmd::Write32 { addr, value } => (1, addr, value.into(), 0),
            Cmd::Poll32 { addr, mask, value } => (2, addr, value.into(), mask.into()),
            Cmd::Out8 { port, value } => (3, port.into(), value.into(), 0),
            Cmd::Echo { addr, len, port } => (4, addr, port.into(), len.into()),
            Cmd::ReadOut { addr, port } => (5, addr, port.into(), 0),
            Cmd::TripleFault => (6, 0, 0, 0),
            Cmd::Write64 { addr, value } => (7, addr, value, 0),
            Cmd::Write8 { addr, value } => (8, addr, value.into(), 0),
            Cmd::Write16 { addr, value } => (9, addr, value.into(), 0),
            Cmd::Reset => (0, 0, 0, 0),
        };
        let mut out = [0u8; 32];
        for (i, v) in [op, a, b, c].iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// The interpreter (x86_64, long mode, entered at [`GUEST_BASE`]). Registers per command:
/// rax = op, rdi = arg a, rdx = arg b, rcx = arg c. Offsets on the left; the unit test checks
/// every jump lands on its label.
const INTERPRETER: &[u8] = &[
    0x48, 0xbe, 0, 0, 0, 0, 0, 0, 0, 0, // 00: movabs rsi, COMMANDS (patched)
    0x48, 0x8b, 0x06, //             0a: loop: mov rax, [rsi]
    0x48, 0x8b, 0x7e, 0x08, //       0d: mov rdi, [rsi+8]
    0x48, 0x8b, 0x56, 0x10, //       11: mov rdx, [rsi+16]
    0x48, 0x8b, 0x4e, 0x18, //       15: mov rcx, [rsi+24]
    0x48, 0x83, 0xc6, 0x20, //       19: add rsi, 32
    0x48, 0x83, 0xf8, 0x01, //       1d: cmp rax, 1
    0x74, 0x20, //                   21: je write32
    0x48, 0x83, 0xf8, 0x02, //       23: cmp rax, 2
    0x74, 0x1e, //                   27: je poll
    0x48, 0x83, 0xf8, 0x03, //       29: cmp rax, 3
    0x74, 0x22, //                   2d: je out8
    0x48, 0x83, 0xf8, 0x04, //       2f: cmp rax, 4
    0x74, 0x23, //                   33: je echo
    0x48, 0x83, 0xf8, 0x05, //       35: cmp rax, 5
    0x74, 0x2a, //                   39: je readout
    0x48, 0x83, 0xf8, 0x06, //       3b: cmp rax, 6
    0x74, 0x29, //                   3f: je triple
    0xeb, 0x3d, //                   41: jmp more
    0x89, 0x17, //                   43: write32: mov [rdi], edx
    0xeb, 0xc3, //                   45: jmp loop
    0x8b, 0x07, //                   47: poll: mov eax, [rdi]
    0x21, 0xc8, //                   49: and eax, ecx
    0x39, 0xd0, //                   4b: cmp eax, edx
    0x75, 0xf8, //                   4d: jne poll
    0xeb, 0xb9, //                   4f: jmp loop
    0x89, 0xd0, //                   51: out8: mov eax, edx
    0x89, 0xfa, //                   53: mov edx, edi
    0xee, //                         55: out dx, al
    0xeb, 0xb2, //                   56: jmp loop
    0xe3, 0xb0, //                   58: echo: jrcxz loop
    0x8a, 0x07, //                   5a: mov al, [rdi]
    0xee, //                         5c: out dx, al
    0x48, 0xff, 0xc7, //             5d: inc rdi
    0x48, 0xff, 0xc9, //             60: dec rcx
    0xeb, 0xf3, //                   63: jmp echo
    0x8b, 0x07, //                   65: readout: mov eax, [rdi]
    0xee, //                         67: out dx, al
    0xeb, 0xa0, //                   68: jmp loop
    0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, // 6a: triple: movabs rax, IDT descriptor (patched)
    0x0f, 0x01, 0x18, //             74: lidt [rax]
    0x0f, 0x0b, //                   77: ud2
    0xb0, 0xfe, //                   79: reset: mov al, 0xfe
    0xe6, 0x64, //                   7b: out 0x64, al
    0xf4, //                         7d: hlt
    0xeb, 0xfd, //                   7e: jmp hlt
    0x48, 0x83, 0xf8, 0x07, //       80: more: cmp rax, 7
    0x74, 0x0e, //                   84: je write64
    0x48, 0x83, 0xf8, 0x08, //       86: cmp rax, 8
    0x74, 0x0d, //                   8a: je write8
    0x48, 0x83, 0xf8, 0x09, //       8c: cmp rax, 9
    0x74, 0x0b, //                   90: je write16
    0xeb, 0xe5, //                   92: jmp reset
    0x48, 0x89, 0x17, //             94: write64: mov [rdi], rdx
    0xeb, 0xac, //                   97: jmp 45 (jmp loop)
    0x88, 0x17, //                   99: write8: mov [rdi], dl
    0xeb, 0xa8, //                   9b: jmp 45
    0x66, 0x89, 0x17, //             9d: write16: mov [rdi], dx
    0xeb, 0xa3, //                   a0: jmp 45
];
const IDT_DESC: u64 = GUEST_BASE + 0x800;

/// Assembles a test guest that runs `cmds`, then resets the VM through the i8042.
pub fn guest(cmds: &[Cmd]) -> Vec<u8> {
    let end = usize::try_from(SCRATCH - GUEST_BASE).expect("small");
    let used = usize::try_from(COMMANDS - GUEST_BASE).expect("small") + (cmds.len() + 1) * 32;
    assert!(used <= end, "too many commands");
    assemble(cmds, COMMANDS, end + 0x8000)
}

/// Where [`long_guest`] keeps its commands: after the scratch area, with no limit on their number.
pub const LONG_COMMANDS: u64 = GUEST_BASE + 0x1_0000;

/// Like [`guest`], for command lists of any length: they start at [`LONG_COMMANDS`], the image
/// ends right after them ([`SCRATCH`] is still free scratch memory).
pub fn long_guest(cmds: &[Cmd]) -> Vec<u8> {
    let off = usize::try_from(LONG_COMMANDS - GUEST_BASE).expect("small");
    assemble(cmds, LONG_COMMANDS, off + (cmds.len() + 1) * 32)
}

fn assemble(cmds: &[Cmd], commands: u64, len: usize) -> Vec<u8> {
    let mut image = vec![0u8; len];
    image[..INTERPRETER.len()].copy_from_slice(INTERPRETER);
    image[2..10].copy_from_slice(&commands.to_le_bytes());
    image[0x6c..0x74].copy_from_slice(&IDT_DESC.to_le_bytes());
    // The empty IDT descriptor (limit 0, base 0) at IDT_DESC: zeros already.
    let mut at = usize::try_from(commands - GUEST_BASE).expect("small");
    for cmd in cmds.iter().copied().chain(std::iter::once(Cmd::Reset)) {
        image[at..at + 32].copy_from_slice(&cmd.encode());
        at += 32;
    }
    image
}

/// Places `bytes` in a guest image built by [`guest`], at guest address `addr`.
pub fn poke(image: &mut [u8], addr: u64, bytes: &[u8]) {
    let off = usize::try_from(addr - GUEST_BASE).expect("address inside the image");
    image[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A test guest as an ELF "kernel" file content.
pub fn guest_elf(image: &[u8]) -> Vec<u8> {
    elf64(GUEST_BASE, GUEST_BASE, image)
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let size = u32::try_from(data.len()).expect("small file");
    let namesize = u32::try_from(name.len() + 1).expect("short name");
    let fields = [ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// An uncompressed newc initramfs whose `/init` is a tiny static program calling `exit(0)`:
/// enough for a kernel to reach "Run /init as init process".
pub fn tiny_initramfs() -> Vec<u8> {
    let code = [
        0xb8, 60, 0, 0, 0, // mov eax, 60 (exit)
        0x31, 0xff, //       xor edi, edi
        0x0f, 0x05, //       syscall
        0xeb, 0xfe, //       jmp $
    ];
    let init = elf64(0x40_0000, 0x40_0000, &code);
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, "init", 0o100_755, &init);
    cpio_entry(&mut out, 2, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let code = guest(&[]);
        let target = |at: usize| {
            at.wrapping_add(2)
                .wrapping_add_signed(isize::from(code[at + 1].cast_signed()))
        };
        let jumps = [
            (0x21, 0x43),
            (0x27, 0x47),
            (0x2d, 0x51),
            (0x33, 0x58),
            (0x39, 0x65),
            (0x3f, 0x6a),
            (0x41, 0x80),
            (0x45, 0x0a),
            (0x4d, 0x47),
            (0x4f, 0x0a),
            (0x56, 0x0a),
            (0x58, 0x0a),
            (0x63, 0x58),
            (0x68, 0x0a),
            (0x7e, 0x7d),
            (0x84, 0x94),
            (0x8a, 0x99),
            (0x90, 0x9d),
            (0x92, 0x79),
            (0x97, 0x45),
            (0x9b, 0x45),
            (0xa0, 0x45),
        ];
        for (at, label) in jumps {
            assert_eq!(target(at), label, "jump at {at:#x}");
        }
        assert_eq!(INTERPRETER.len(), 0xa2);
        assert_eq!(&code[0x6c..0x74], &IDT_DESC.to_le_bytes());
    }

    #[test]
    fn initramfs_is_newc_with_init_and_trailer() {
        let c = tiny_initramfs();
        assert_eq!(&c[..6], b"070701");
        assert!(c.len().is_multiple_of(4));
        let text = String::from_utf8_lossy(&c);
        assert!(text.contains("init\0") && text.contains("TRAILER!!!"));
    }

    #[test]
    fn elf_header_is_what_the_loader_expects() {
        let elf = guest_elf(&guest(&[]));
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(
            u64::from_le_bytes(elf[24..32].try_into().unwrap()),
            GUEST_BASE
        );
    }
}
