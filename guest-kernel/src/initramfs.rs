//! The initramfs of a hull guest: the static `hull-agent` as `/init`, the directories it mounts
//! on, and `/dev/console` so that PID 1 starts with a console. Nothing else: the agent is
//! self-contained, and container root filesystems come from the host later.

use std::io::Write;
use std::path::Path;

use flate2::{write::GzEncoder, Compression};

use crate::cpio::{self, Entry};

/// The directories present before the agent mounts anything.
pub const BASE_DIRS: [&str; 6] = ["dev", "proc", "sys", "tmp", "run", "run/hull"];

/// Building the initramfs failed.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// The agent binary could not be read.
    #[error("cannot read the agent binary {0}")]
    ReadAgent(String, #[source] std::io::Error),
    /// The agent binary is not a static ELF executable.
    #[error("{0} is not a static ELF executable (build it with +crt-static)")]
    NotStatic(String),
    /// Writing the archive failed.
    #[error("cannot write the archive")]
    Archive(#[from] cpio::CpioError),
    /// Compressing failed.
    #[error("cannot compress the archive")]
    Compress(#[source] std::io::Error),
}

/// The members of the image, agent included, in archive order.
pub fn entries(agent: Vec<u8>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = BASE_DIRS.iter().map(|d| Entry::dir(d, 0o755)).collect();
    entries.push(Entry::char_device("dev/console", 0o600, 5, 1));
    entries.push(Entry::file("init", 0o755, agent));
    entries
}

/// Builds the gzip-compressed initramfs around the agent at `agent_path`.
pub fn build(agent_path: &Path) -> Result<Vec<u8>, InitramfsError> {
    let shown = agent_path.display().to_string();
    let agent =
        std::fs::read(agent_path).map_err(|e| InitramfsError::ReadAgent(shown.clone(), e))?;
    if !is_static_elf(&agent) {
        return Err(InitramfsError::NotStatic(shown));
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    cpio::write(&mut encoder, &entries(agent))?;
    encoder.flush().map_err(InitramfsError::Compress)?;
    encoder.finish().map_err(InitramfsError::Compress)
}

/// Whether `bytes` is an x86-64 ELF executable with no `PT_INTERP` (no dynamic loader needed).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let (e_type, e_machine) = (u16_at(16), u16_at(18));
    // ET_EXEC or ET_DYN (static-pie), x86-64
    if !(e_type == 2 || e_type == 3) || e_machine != 62 {
        return false;
    }
    let Ok(phoff) = usize::try_from(u64::from_le_bytes(
        bytes[32..40].try_into().unwrap_or([0; 8]),
    )) else {
        return false;
    };
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    (0..phnum).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        match bytes.get(at..at + 4) {
            Some(p) => u32::from_le_bytes([p[0], p[1], p[2], p[3]]) != PT_INTERP,
            None => false,
        }
    })
}

/// Decompresses and reads back an image built by [`build`] (for checks and tests).
pub fn read(image: &[u8]) -> Result<Vec<Entry>, InitramfsError> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(image)
        .read_to_end(&mut raw)
        .map_err(InitramfsError::Compress)?;
    Ok(cpio::read(&raw)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_static_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[16] = 3; // ET_DYN (static-pie)
        elf[18] = 62; // x86-64
        elf[32] = 64; // e_phoff
        elf[54] = 56; // e_phentsize
        elf[56] = 1; // e_phnum
        elf[64] = 1; // PT_LOAD
        elf
    }

    #[test]
    fn image_holds_agent_as_init_and_only_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("hull-agent");
        std::fs::write(&agent, fake_static_elf()).unwrap();
        let image = build(&agent).unwrap();
        assert_eq!(&image[..2], &[0x1f, 0x8b], "gzip magic");
        let members = read(&image).unwrap();
        let paths: Vec<_> = members.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "proc",
                "sys",
                "tmp",
                "run",
                "run/hull",
                "dev/console",
                "init"
            ]
        );
        let init = members.iter().find(|e| e.path == "init").unwrap();
        assert_eq!(init.mode, cpio::S_IFREG | 0o755);
        assert_eq!(init.data, fake_static_elf());
        let console = members.iter().find(|e| e.path == "dev/console").unwrap();
        assert_eq!(
            (console.mode & cpio::S_IFCHR, console.rdev),
            (cpio::S_IFCHR, (5, 1))
        );
    }

    #[test]
    fn dynamic_or_foreign_binaries_are_refused() {
        let mut dynamic = fake_static_elf();
        dynamic[64] = 3; // PT_INTERP
        assert!(!is_static_elf(&dynamic));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let mut arm = fake_static_elf();
        arm[18] = 183;
        assert!(!is_static_elf(&arm));
        let mut truncated = fake_static_elf();
        truncated[56] = 9; // more headers than bytes
        assert!(!is_static_elf(&truncated));
    }

    #[test]
    fn a_missing_or_dynamic_agent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = build(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("cannot read the agent binary"));
        let script = dir.path().join("sh");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        let err = build(&script).unwrap_err();
        assert!(err.to_string().contains("+crt-static"), "{err}");
    }
}
