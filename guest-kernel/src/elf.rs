//! The ELF64 file header, as far as hull reads it: x86-64, little-endian, and where the program
//! headers are. One parser for the two places that look inside an ELF: the static-agent check
//! ([`crate::initramfs::is_static_elf`]) and the runtime's PVH-kernel check.

/// Length of the ELF64 file header.
pub const HEADER_LEN: usize = 64;
/// `e_machine` of x86-64.
const EM_X86_64: u16 = 62;

/// The fields of an x86-64 little-endian ELF64 file header that hull uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `e_type` (2 executable, 3 shared object or static-pie).
    pub e_type: u16,
    /// File offset of the program-header table.
    pub phoff: u64,
    /// Size of one program header.
    pub phentsize: u16,
    /// Number of program headers.
    pub phnum: u16,
}

impl Header {
    /// The header at the start of `bytes`; `None` unless it is an x86-64 little-endian ELF64.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        const ELFCLASS64: u8 = 2;
        const ELFDATA2LSB: u8 = 1;
        if bytes.len() < HEADER_LEN
            || bytes[..4] != *b"\x7fELF"
            || bytes[4] != ELFCLASS64
            || bytes[5] != ELFDATA2LSB
            || u16_at(bytes, 18) != EM_X86_64
        {
            return None;
        }
        Some(Self {
            e_type: u16_at(bytes, 16),
            phoff: u64_at(bytes, 32),
            phentsize: u16_at(bytes, 54),
            phnum: u16_at(bytes, 56),
        })
    }
}

/// The little-endian `u16` at `at` (in bounds).
pub fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// The little-endian `u32` at `at` (in bounds).
pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The little-endian `u64` at `at` (in bounds).
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_x86_64_little_endian_elf64_headers_parse() {
        let mut h = vec![0u8; HEADER_LEN];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[16] = 3;
        h[18] = 62;
        h[32] = 64;
        h[54] = 56;
        h[56] = 2;
        let parsed = Header::parse(&h).unwrap();
        assert_eq!(
            parsed,
            Header {
                e_type: 3,
                phoff: 64,
                phentsize: 56,
                phnum: 2
            }
        );
        for (at, value) in [(0, 0x7e), (4, 1), (5, 2), (18, 183)] {
            let mut bad = h.clone();
            bad[at] = value;
            assert_eq!(Header::parse(&bad), None, "byte {at} = {value}");
        }
        assert_eq!(Header::parse(&h[..HEADER_LEN - 1]), None);
    }
}
