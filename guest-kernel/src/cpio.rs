//! The SVR4 "newc" cpio format, which is what the Linux kernel unpacks as an initramfs.
//!
//! Only what an initramfs needs: directories, regular files and device nodes, written with fixed
//! ownership (root) and a fixed mtime so that the same input gives the same bytes.

use std::io::{self, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub path: String,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Device major/minor for device nodes, `(0, 0)` otherwise.
    pub rdev: (u32, u32),
    /// File contents (empty for directories and nodes).
    pub data: Vec<u8>,
}

impl Entry {
    /// A directory.
    pub fn dir(path: &str, perm: u32) -> Self {
        Self::new(path, S_IFDIR | perm, (0, 0), Vec::new())
    }

    /// A regular file.
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Self {
        Self::new(path, S_IFREG | perm, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, S_IFLNK | 0o777, (0, 0), target.as_bytes().to_vec())
    }

    /// A character device node.
    pub fn char_device(path: &str, perm: u32, major: u32, minor: u32) -> Self {
        Self::new(path, S_IFCHR | perm, (major, minor), Vec::new())
    }

    fn new(path: &str, mode: u32, rdev: (u32, u32), data: Vec<u8>) -> Self {
        Self {
            path: path.trim_start_matches('/').to_owned(),
            mode,
            rdev,
            data,
        }
    }
}

/// A malformed archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing failed.
    #[error("cannot write the archive")]
    Write(#[source] io::Error),
    /// A member does not fit the format's 32-bit fields.
    #[error("member {0} is too large for cpio")]
    TooLarge(String),
    /// The bytes end before a header or member does.
    #[error("archive is truncated at offset {0}")]
    Truncated(usize),
    /// A header does not start with the newc magic or holds a non-hex field.
    #[error("bad header at offset {0}")]
    BadHeader(usize),
    /// The archive has no trailer.
    #[error("archive has no trailer")]
    NoTrailer,
}

/// Writes `entries` followed by the trailer.
pub fn write<W: Write>(mut out: W, entries: &[Entry]) -> Result<(), CpioError> {
    let mut offset = 0usize;
    for (ino, entry) in (1u32..).zip(entries) {
        offset = write_member(&mut out, offset, ino, entry)?;
    }
    write_member(
        &mut out,
        offset,
        0,
        &Entry::new(TRAILER, 0, (0, 0), Vec::new()),
    )?;
    Ok(())
}

fn write_member<W: Write>(
    out: &mut W,
    mut offset: usize,
    ino: u32,
    entry: &Entry,
) -> Result<usize, CpioError> {
    let too_large = || CpioError::TooLarge(entry.path.clone());
    let size = u32::try_from(entry.data.len()).map_err(|_| too_large())?;
    let name_len = u32::try_from(entry.path.len() + 1).map_err(|_| too_large())?;
    let nlink = if entry.mode & S_IFDIR != 0 { 2 } else { 1 };
    let fields = [
        ino,
        entry.mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: fixed, for reproducible images
        size,
        0, // dev major
        0, // dev minor
        entry.rdev.0,
        entry.rdev.1,
        name_len,
        0, // check
    ];
    let mut header = Vec::with_capacity(HEADER_LEN + entry.path.len() + 4);
    header.extend_from_slice(MAGIC);
    for field in fields {
        header.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    header.extend_from_slice(entry.path.as_bytes());
    header.push(0);
    pad4(&mut header, offset);
    offset += header.len();
    out.write_all(&header).map_err(CpioError::Write)?;
    out.write_all(&entry.data).map_err(CpioError::Write)?;
    offset += entry.data.len();
    let padding = (4 - offset % 4) % 4;
    out.write_all(&[0u8; 3][..padding])
        .map_err(CpioError::Write)?;
    Ok(offset + padding)
}

fn pad4(buf: &mut Vec<u8>, start: usize) {
    while !(start + buf.len()).is_multiple_of(4) {
        buf.push(0);
    }
}

/// Reads every member of an uncompressed newc archive, up to the trailer.
pub fn read(bytes: &[u8]) -> Result<Vec<Entry>, CpioError> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let header = bytes
            .get(pos..pos + HEADER_LEN)
            .ok_or(CpioError::Truncated(pos))?;
        if &header[..6] != MAGIC {
            return Err(CpioError::BadHeader(pos));
        }
        let field = |i: usize| -> Result<usize, CpioError> {
            let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .map_err(|_| CpioError::BadHeader(pos))?;
            usize::from_str_radix(text, 16).map_err(|_| CpioError::BadHeader(pos))
        };
        let header_at = pos;
        let as_u32 = |v: usize| u32::try_from(v).map_err(|_| CpioError::BadHeader(header_at));
        let (mode, size, rmaj, rmin, name_len) =
            (field(1)?, field(6)?, field(9)?, field(10)?, field(11)?);
        let name_start = pos + HEADER_LEN;
        let name = bytes
            .get(name_start..name_start + name_len.saturating_sub(1))
            .ok_or(CpioError::Truncated(name_start))?;
        let path = String::from_utf8_lossy(name).into_owned();
        let data_start = align4(name_start + name_len);
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or(CpioError::Truncated(data_start))?;
        pos = align4(data_start + size);
        if path == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            path,
            mode: as_u32(mode)?,
            rdev: (as_u32(rmaj)?, as_u32(rmin)?),
            data: data.to_vec(),
        });
        if pos >= bytes.len() {
            return Err(CpioError::NoTrailer);
        }
    }
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::dir("dev", 0o755),
            Entry::char_device("/dev/console", 0o600, 5, 1),
            Entry::file("init", 0o755, b"#!/bin/sh\necho hi\n".to_vec()),
            Entry::file("odd", 0o644, vec![7; 5]),
            Entry::symlink("bin/sh", "busybox"),
        ]
    }

    #[test]
    fn round_trip_keeps_every_member() {
        let mut bytes = Vec::new();
        write(&mut bytes, &sample()).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(read(&bytes).unwrap(), sample());
    }

    #[test]
    fn same_input_gives_same_bytes() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&mut a, &sample()).unwrap();
        write(&mut b, &sample()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn header_fields_are_newc() {
        let mut bytes = Vec::new();
        write(&mut bytes, &[Entry::file("a", 0o644, b"xyz".to_vec())]).unwrap();
        assert_eq!(&bytes[..6], b"070701");
        // c_mode is the second field
        assert_eq!(&bytes[14..22], b"000081a4");
        // name "a\0" then padding to 4: header 110 + 2 = 112, data at 112
        assert_eq!(&bytes[112..115], b"xyz");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let mut bytes = Vec::new();
        write(&mut bytes, &sample()).unwrap();
        assert!(matches!(read(&bytes[..50]), Err(CpioError::Truncated(0))));
        assert!(matches!(read(&bytes[..200]), Err(CpioError::Truncated(_))));
        let mut bad = bytes.clone();
        bad[0] = b'1';
        assert!(matches!(read(&bad), Err(CpioError::BadHeader(0))));
        let mut bad = bytes.clone();
        bad[20] = b'z';
        assert!(matches!(read(&bad), Err(CpioError::BadHeader(0))));
        // a huge size field must not panic or allocate
        let mut bad = bytes;
        bad[6 + 8 * 6..6 + 8 * 7].copy_from_slice(b"ffffffff");
        assert!(read(&bad).is_err());
    }
}
