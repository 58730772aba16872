//! hull compiles its seccomp filters at build time: a crate's build script builds each
//! `seccompiler` filter, compiles it to BPF and writes it with [`encode`] into `OUT_DIR`; the
//! crate embeds the file (`include_bytes!`) and turns it back into a program with [`decode`].
//! Used by hull-vmm (per-thread filters) and the shim (`hull_runtime::seccomp`).
//!
//! The format is the BPF instructions one after the other, 8 bytes each: `code` (u16), `jt` (u8),
//! `jf` (u8), `k` (u32), little endian.
#![warn(missing_docs)]

use std::path::Path;

use seccompiler::{sock_filter, BackendError, BpfProgram, SeccompFilter};

/// Bytes that are not a program.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the built-in {0} seccomp program is malformed")]
pub struct Malformed(pub &'static str);

/// A build script could not produce a program.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The filter's rules are wrong.
    #[error("the {0} seccomp filter")]
    Filter(String, #[source] BackendError),
    /// The program could not be written.
    #[error("writing the {0} seccomp program")]
    Write(String, #[source] std::io::Error),
}

/// For build scripts: compiles `filter` and writes it as `<out>/<name>.bpf`.
pub fn write_program(
    out: &Path,
    name: &str,
    filter: Result<SeccompFilter, BackendError>,
) -> Result<(), BuildError> {
    let wrong = |e| BuildError::Filter(name.to_owned(), e);
    let program = BpfProgram::try_from(filter.map_err(wrong)?).map_err(wrong)?;
    std::fs::write(out.join(format!("{name}.bpf")), encode(&program))
        .map_err(|e| BuildError::Write(name.to_owned(), e))
}

/// Size of one instruction.
const INSN: usize = 8;

/// The program as bytes.
pub fn encode(program: &BpfProgram) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(program.len() * INSN);
    for insn in program {
        bytes.extend_from_slice(&insn.code.to_le_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_le_bytes());
    }
    bytes
}

/// The program `name` from its bytes; empty or ragged bytes are [`Malformed`].
pub fn decode(name: &'static str, bytes: &[u8]) -> Result<BpfProgram, Malformed> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(INSN) {
        return Err(Malformed(name));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_survives_the_round_trip() {
        let program = vec![
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4,
            },
            sock_filter {
                code: 0x15,
                jt: 1,
                jf: 2,
                k: 0xc000_003e,
            },
            sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            },
        ];
        let bytes = encode(&program);
        assert_eq!(bytes.len(), 24);
        let back = decode("t", &bytes).unwrap();
        assert_eq!(back.len(), 3);
        for (a, b) in program.iter().zip(&back) {
            assert_eq!((a.code, a.jt, a.jf, a.k), (b.code, b.jt, b.jf, b.k));
        }
        assert_eq!(decode("t", &bytes[..23]), Err(Malformed("t")));
        assert_eq!(decode("t", &[]), Err(Malformed("t")));
    }
}
