//! The snapshot files and their header. A snapshot directory holds two files:
//!
//! - `state`: the magic `HULLSNAP`, the format version (u32 LE), the header's length (u32 LE), the
//!   header ([`Header`], JSON: hull version, sizes and CRC-32s of the body and of the memory file),
//!   then the body (the VM's state, JSON, [`super::VmState`]);
//! - `memory`: guest RAM as the memfd holds it (the regions of [`crate::layout`] one after the
//!   other), sparse (a hole for each page of zeros, [`super::sparse`]), mapped `MAP_PRIVATE` on
//!   restore or copied into a memfd by its data extents.
//!
//! Format 2 (this one) has the sparse memory file and its page checksum; format 1 (a whole
//! memory file, a CRC-32 of every byte) is refused as another format: make the snapshot again.
//!
//! Everything is checked before anything is used: a wrong magic, another format or hull version,
//! a file shorter or longer than its header says, or a checksum that does not match is refused
//! with its own [`super::SnapshotError`]. The CRC-32 finds corruption and truncation; it is no
//! defence against someone who can write the snapshot directory (keep it root-owned).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// The first bytes of a `state` file.
pub const MAGIC: &[u8; 8] = b"HULLSNAP";
/// The format this hull-vmm writes and reads. Bump it when the body or header changes shape.
pub const FORMAT_VERSION: u32 = 2;
/// The hull version written into (and required from) a snapshot.
pub const HULL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest header accepted (it is a few hundred bytes).
const MAX_HEADER: u32 = 64 << 10;
/// Largest body accepted (a few KiB per vCPU and device).
const MAX_BODY: u64 = 64 << 20;

/// The `state` file's name in a snapshot directory.
pub const STATE_FILE: &str = "state";
/// The `memory` file's name in a snapshot directory.
pub const MEMORY_FILE: &str = "memory";

/// What the header records about the rest of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// hull's version that wrote it.
    pub hull_version: String,
    /// Length of the body that follows the header.
    pub state_len: u64,
    /// CRC-32 of the body.
    pub state_crc32: u32,
    /// Length of the memory file.
    pub memory_len: u64,
    /// The memory file's checksum: CRC-32 of its pages that are not all zeros, each preceded by
    /// its index ([`super::sparse::PageCrc`]).
    pub memory_crc32: u32,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io(path.to_path_buf(), e)
}

/// Encodes a `state` file: prefix, `header`, `body`.
pub fn encode_state(header: &Header, body: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("the header always serialises");
    let mut out = Vec::with_capacity(16 + h.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).expect("small header").to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out
}

/// Decodes and checks a `state` file's bytes: returns the header and the body (whose checksum
/// matched). The memory file is checked separately ([`SnapshotFiles::check_memory`]).
pub fn decode_state(bytes: &[u8]) -> Result<(Header, &[u8]), SnapshotError> {
    let truncated = |expected: u64| SnapshotError::Truncated {
        what: "state",
        expected,
        found: bytes.len() as u64,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A prefix of the magic is a truncated snapshot; anything else is not one.
        return Err(if MAGIC.starts_with(bytes) {
            truncated(16)
        } else {
            SnapshotError::NotASnapshot
        });
    }
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| truncated(16))
    };
    let version = word(8)?;
    if version != FORMAT_VERSION {
        return Err(SnapshotError::FormatVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let hlen = word(12)?;
    if hlen > MAX_HEADER {
        return Err(SnapshotError::Header(format!(
            "header of {hlen} bytes (at most {MAX_HEADER})"
        )));
    }
    let body_at = 16 + hlen as usize;
    let h = bytes
        .get(16..body_at)
        .ok_or_else(|| truncated(body_at as u64))?;
    let header: Header =
        serde_json::from_slice(h).map_err(|e| SnapshotError::Header(e.to_string()))?;
    if header.hull_version != HULL_VERSION {
        return Err(SnapshotError::HullVersion {
            found: header.hull_version,
            this: HULL_VERSION,
        });
    }
    if header.state_len > MAX_BODY {
        return Err(SnapshotError::Header(format!(
            "body of {} bytes (at most {MAX_BODY})",
            header.state_len
        )));
    }
    let body = &bytes[body_at..];
    let expected = body_at as u64 + header.state_len;
    if (body.len() as u64) < header.state_len {
        return Err(truncated(expected));
    }
    if body.len() as u64 > header.state_len {
        return Err(SnapshotError::TrailingBytes {
            what: "state",
            expected,
            found: bytes.len() as u64,
        });
    }
    let crc = crc32fast::hash(body);
    if crc != header.state_crc32 {
        return Err(SnapshotError::Checksum {
            what: "state",
            expected: header.state_crc32,
            found: crc,
        });
    }
    Ok((header, body))
}

/// A snapshot's two files, open: from its directory, or handed over as descriptors by whoever
/// could open them (hull's jailer opens a root-only template as root and passes them to the
/// jailed VMM, `--restore-fds`).
#[derive(Debug)]
pub struct SnapshotFiles {
    /// What the files are called in messages (the directory, or the descriptors).
    pub name: PathBuf,
    /// The `state` file.
    pub state: File,
    /// The `memory` file.
    pub memory: File,
}

impl SnapshotFiles {
    /// Opens `dir/state` and `dir/memory` (read-only).
    pub fn open(dir: &Path) -> Result<Self, SnapshotError> {
        let open = |name: &str| {
            let path = dir.join(name);
            File::open(&path).map_err(io(&path))
        };
        Ok(Self {
            name: dir.to_path_buf(),
            state: open(STATE_FILE)?,
            memory: open(MEMORY_FILE)?,
        })
    }

    /// Takes over the open descriptors `state` and `memory` (inherited, read-only), checking
    /// that they are open regular files.
    pub fn from_fds(state: i32, memory: i32) -> Result<Self, SnapshotError> {
        let take = |fd: i32, what: &str| -> Result<File, SnapshotError> {
            let name = PathBuf::from(format!("descriptor {fd} ({what})"));
            if fd < 3 || state == memory {
                return Err(SnapshotError::Io(
                    name,
                    std::io::Error::other("not a descriptor of its own above 2"),
                ));
            }
            // SAFETY: F_GETFD only asks whether `fd` is open.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(SnapshotError::Io(name, std::io::Error::last_os_error()));
            }
            // SAFETY: `fd` is open (checked above), was handed to this process to own, and is
            // taken over exactly once (the two differ).
            let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            // Not passed on to anything this process starts.
            // SAFETY: F_SETFD on a descriptor this process owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            match file.metadata() {
                Ok(m) if m.is_file() => Ok(file),
                Ok(_) => Err(SnapshotError::Io(
                    name,
                    std::io::Error::other("not a regular file"),
                )),
                Err(e) => Err(SnapshotError::Io(name, e)),
            }
        };
        Ok(Self {
            name: PathBuf::from(format!("descriptors {state},{memory}")),
            state: take(state, STATE_FILE)?,
            memory: take(memory, MEMORY_FILE)?,
        })
    }

    /// Reads the state file and checks it ([`decode_state`]); returns the header and the body.
    pub fn read_state(&self) -> Result<(Header, Vec<u8>), SnapshotError> {
        let path = self.name.join(STATE_FILE);
        let mut bytes = Vec::new();
        (&self.state)
            .take(MAX_BODY + u64::from(MAX_HEADER) + 16 + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        let (header, body) = decode_state(&bytes)?;
        Ok((header, body.to_vec()))
    }

    /// Checks that the memory file has the length the header says.
    pub fn check_memory_len(&self, header: &Header) -> Result<(), SnapshotError> {
        let path = self.name.join(MEMORY_FILE);
        let len = self.memory.metadata().map_err(io(&path))?.len();
        memory_len_fits(len, header)
    }

    /// Checks the memory file against the header: its length, then its checksum (its data
    /// extents read once, 1 MiB at a time).
    pub fn check_memory(&self, header: &Header) -> Result<(), SnapshotError> {
        self.check_memory_len(header)?;
        let crc = super::sparse::scan(&self.memory, header.memory_len, |_, _| Ok(()))
            .map_err(io(&self.name.join(MEMORY_FILE)))?;
        check_memory_crc(header, crc)
    }
}

/// Reads `dir/state` and checks it ([`decode_state`]); returns the header and the body.
pub fn read_state(dir: &Path) -> Result<(Header, Vec<u8>), SnapshotError> {
    SnapshotFiles::open(dir)?.read_state()
}

/// A memory file of `len` bytes against the length the header promises.
fn memory_len_fits(len: u64, header: &Header) -> Result<(), SnapshotError> {
    if len < header.memory_len {
        return Err(SnapshotError::Truncated {
            what: "memory",
            expected: header.memory_len,
            found: len,
        });
    }
    if len > header.memory_len {
        return Err(SnapshotError::TrailingBytes {
            what: "memory",
            expected: header.memory_len,
            found: len,
        });
    }
    Ok(())
}

/// `found` against the memory checksum the header promises.
pub fn check_memory_crc(header: &Header, found: u32) -> Result<(), SnapshotError> {
    if found == header.memory_crc32 {
        Ok(())
    } else {
        Err(SnapshotError::Checksum {
            what: "memory",
            expected: header.memory_crc32,
            found,
        })
    }
}

/// Checks `dir/memory` against the header: its length, then its checksum
/// ([`SnapshotFiles::check_memory`]).
pub fn check_memory(dir: &Path, header: &Header) -> Result<(), SnapshotError> {
    SnapshotFiles::open(dir)?.check_memory(header)
}

/// Writes `dir/state` (through a temporary file renamed into place, after `fsync`).
pub fn write_state(dir: &Path, header: &Header, body: &[u8]) -> Result<(), SnapshotError> {
    let tmp = dir.join(".state.tmp");
    let path = dir.join(STATE_FILE);
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&encode_state(header, body)).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &[u8]) -> Vec<u8> {
        let header = Header {
            hull_version: HULL_VERSION.to_string(),
            state_len: body.len() as u64,
            state_crc32: crc32fast::hash(body),
            memory_len: 4096,
            memory_crc32: 7,
        };
        encode_state(&header, body)
    }

    #[test]
    fn a_state_file_round_trips() {
        let bytes = sample(b"{\"a\":1}");
        let (h, body) = decode_state(&bytes).unwrap();
        assert_eq!(body, b"{\"a\":1}");
        assert_eq!(h.memory_len, 4096);
        assert_eq!(&bytes[..8], MAGIC);
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let bytes = sample(b"{\"some\":\"state\"}");
        for len in 1..bytes.len() {
            let e = decode_state(&bytes[..len]).unwrap_err();
            let ok = matches!(e, SnapshotError::Truncated { what: "state", .. })
                // Cut inside the header: its JSON is incomplete.
                || (len > 16 && len < bytes.len() - 16 && matches!(e, SnapshotError::Header(_)));
            assert!(ok, "cut at {len}: {e}");
        }
    }

    #[test]
    fn a_changed_body_byte_fails_the_checksum() {
        let bytes = sample(b"{\"some\":\"state\"}");
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x01;
        assert!(matches!(
            decode_state(&bad).unwrap_err(),
            SnapshotError::Checksum { what: "state", .. }
        ));
    }

    #[test]
    fn wrong_magic_version_and_trailing_bytes_are_refused() {
        let bytes = sample(b"{}");
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode_state(&bad).unwrap_err(),
            SnapshotError::NotASnapshot
        ));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = decode_state(&bad).unwrap_err();
        assert!(
            matches!(e, SnapshotError::FormatVersion { found, .. } if found == FORMAT_VERSION + 1)
        );
        assert!(e.to_string().contains("format version"), "{e}");
        let mut bad = bytes.clone();
        bad.push(b' ');
        assert!(matches!(
            decode_state(&bad).unwrap_err(),
            SnapshotError::TrailingBytes { .. }
        ));
    }

    #[test]
    fn another_hull_version_is_refused() {
        let body = b"{}";
        let header = Header {
            hull_version: "0.0.0-other".into(),
            state_len: 2,
            state_crc32: crc32fast::hash(body),
            memory_len: 0,
            memory_crc32: 0,
        };
        let e = decode_state(&encode_state(&header, body)).unwrap_err();
        assert!(matches!(e, SnapshotError::HullVersion { .. }), "{e}");
    }

    #[test]
    fn the_memory_file_is_checked_for_length_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = vec![0x5au8; 3 << 20];
        mem[4096..8192].fill(0);
        std::fs::write(dir.path().join(MEMORY_FILE), &mem).unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"").unwrap();
        let mut header = Header {
            hull_version: HULL_VERSION.into(),
            state_len: 0,
            state_crc32: 0,
            memory_len: mem.len() as u64,
            memory_crc32: super::super::sparse::PageCrc::of(&mem),
        };
        check_memory(dir.path(), &header).unwrap();
        header.memory_crc32 ^= 1;
        assert!(matches!(
            check_memory(dir.path(), &header).unwrap_err(),
            SnapshotError::Checksum { what: "memory", .. }
        ));
        header.memory_len += 4096;
        assert!(matches!(
            check_memory(dir.path(), &header).unwrap_err(),
            SnapshotError::Truncated { what: "memory", .. }
        ));
    }
}
