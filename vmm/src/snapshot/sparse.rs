//! The memory file, sparse: guest RAM is written page by page with a hole for every page that is
//! all zeros (a freshly booted template touched ~40 of its 256 MiB), and read back by its data
//! extents only (`SEEK_DATA`/`SEEK_HOLE`), so neither a restore's copy nor its check reads the
//! zeros.
//!
//! The memory checksum ([`PageCrc`]) does not depend on where the file has holes: it is the CRC-32
//! of every page that is not all zeros, in order, each preceded by its page index (u64 LE). A
//! hole and a page of zeros both read as zeros and count alike, so a copy of the file that is not
//! sparse checks out the same, and any byte changed anywhere (a hole filled included) changes it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// The page the file is written and checked by.
pub const PAGE: usize = 4096;

/// How much is read at a time.
const CHUNK: usize = 1 << 20;

/// The memory checksum: pages that are not all zeros, with their index.
#[derive(Debug, Default)]
pub struct PageCrc(crc32fast::Hasher);

impl PageCrc {
    /// Adds page number `index` (not all zeros; zero pages are not added).
    pub fn page(&mut self, index: u64, bytes: &[u8]) {
        self.0.update(&index.to_le_bytes());
        self.0.update(bytes);
    }

    /// The checksum.
    pub fn finish(self) -> u32 {
        self.0.finalize()
    }

    /// The checksum of `bytes` as a memory file (a test helper and reference).
    pub fn of(bytes: &[u8]) -> u32 {
        let mut c = Self::default();
        for (i, p) in bytes.chunks(PAGE).enumerate() {
            if !is_zero(p) {
                c.page(i as u64, p);
            }
        }
        c.finish()
    }
}

/// Whether `page` is all zeros, eight bytes at a time.
pub fn is_zero(page: &[u8]) -> bool {
    let mut words = page.chunks_exact(8);
    words
        .by_ref()
        .all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

/// Writes `parts` (guest RAM regions, one after the other) into `file` (empty, freshly created)
/// with a hole for every all-zero page; returns the length and the memory checksum.
pub fn write(file: &File, parts: &[&[u8]]) -> std::io::Result<(u64, u32)> {
    let mut crc = PageCrc::default();
    let mut at = 0u64;
    for part in parts {
        // Runs of data pages go out in one write each.
        let mut run: Option<(u64, usize, usize)> = None;
        for (i, page) in part.chunks(PAGE).enumerate() {
            let offset = at + (i * PAGE) as u64;
            if is_zero(page) {
                if let Some((o, s, e)) = run.take() {
                    file.write_all_at(&part[s..e], o)?;
                }
                continue;
            }
            crc.page(offset / PAGE as u64, page);
            let (s, e) = (i * PAGE, i * PAGE + page.len());
            run = Some(match run {
                Some((o, s0, _)) => (o, s0, e),
                None => (offset, s, e),
            });
        }
        if let Some((o, s, e)) = run {
            file.write_all_at(&part[s..e], o)?;
        }
        at += part.len() as u64;
    }
    // The holes at the end are the file's length.
    file.set_len(at)?;
    Ok((at, crc.finish()))
}

/// The data extents of the first `len` bytes of `file` (start, end), page-aligned, in order.
/// A file system without `SEEK_DATA` reports all of it as data.
pub fn data_extents(file: &File, len: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let seek = |offset: u64, whence: libc::c_int| -> std::io::Result<Option<u64>> {
        let offset = libc::off_t::try_from(offset).map_err(std::io::Error::other)?;
        // SAFETY: lseek on a descriptor `file` owns; the offset is checked by the kernel.
        let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
        if r >= 0 {
            return Ok(u64::try_from(r).ok());
        }
        match std::io::Error::last_os_error() {
            // No data from `offset` to the end.
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    };
    let page = PAGE as u64;
    let mut extents: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    while at < len {
        let Some(start) = seek(at, libc::SEEK_DATA)? else {
            break;
        };
        if start >= len {
            break;
        }
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        let (s, e) = (start / page * page, end.div_ceil(page) * page);
        let e = e.min(len.max(s));
        match extents.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            _ => extents.push((s, e)),
        }
        // Never stand still, whatever the file system answers.
        at = end.max(start + 1);
    }
    Ok(extents)
}

/// Reads the data extents of the first `len` bytes of `file` and calls `page(offset, bytes)` for
/// each page that is not all zeros (a last partial page included); returns the memory checksum.
/// A file shorter than `len` is an error (`UnexpectedEof`).
pub fn scan(
    file: &File,
    len: u64,
    mut page: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<u32> {
    let mut crc = PageCrc::default();
    let mut buf = vec![0u8; CHUNK];
    for (start, end) in data_extents(file, len)? {
        let mut at = start;
        while at < end {
            let n = usize::try_from((end - at).min(CHUNK as u64)).expect("at most CHUNK");
            file.read_exact_at(&mut buf[..n], at)?;
            for (i, p) in buf[..n].chunks(PAGE).enumerate() {
                if is_zero(p) {
                    continue;
                }
                let offset = at + (i * PAGE) as u64;
                crc.page(offset / PAGE as u64, p);
                page(offset, p)?;
            }
            at += n as u64;
        }
    }
    Ok(crc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// 8 MiB with data in three places: a page, a run of pages, and a last page.
    fn sample() -> Vec<u8> {
        let mut m = vec![0u8; 8 << 20];
        m[0x1000] = 1;
        m[(2 << 20)..(2 << 20) + 3 * PAGE].fill(0xab);
        let last = m.len() - 1;
        m[last] = 9;
        m
    }

    #[test]
    fn a_sparse_write_reads_back_with_holes_and_the_same_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let m = sample();
        let f = File::create(&path).unwrap();
        let (len, crc) = write(&f, &[&m[..4 << 20], &m[4 << 20..]]).unwrap();
        assert_eq!((len, crc), (m.len() as u64, PageCrc::of(&m)));
        assert_eq!(std::fs::read(&path).unwrap(), m);
        let f = File::open(&path).unwrap();
        // tmpfs and ext4 keep holes: five pages hold data.
        let allocated = f.metadata().unwrap().blocks() * 512;
        assert!(allocated <= 64 << 10, "{allocated} bytes allocated");
        let mut seen = Vec::new();
        let found = scan(&f, len, |o, p| {
            seen.push((o, p.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(found, crc);
        let pages: Vec<u64> = seen.iter().map(|(o, _)| o / PAGE as u64).collect();
        assert_eq!(pages, [1, 512, 513, 514, 2047]);
    }

    #[test]
    fn the_checksum_ignores_where_the_holes_are_but_sees_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        // Not sparse at all: the same checksum.
        let full = dir.path().join("full");
        std::fs::write(&full, &m).unwrap();
        let f = File::open(&full).unwrap();
        assert_eq!(
            scan(&f, m.len() as u64, |_, _| Ok(())).unwrap(),
            PageCrc::of(&m)
        );
        // A byte set inside a hole of a sparse file, and a data byte cleared: both differ.
        let sparse = dir.path().join("sparse");
        let (_, crc) = write(&File::create(&sparse).unwrap(), &[&m]).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(&sparse)
            .unwrap();
        f.write_all_at(&[1], 5 << 20).unwrap();
        assert_ne!(scan(&f, m.len() as u64, |_, _| Ok(())).unwrap(), crc);
        f.write_all_at(&[0], 5 << 20).unwrap();
        assert_eq!(scan(&f, m.len() as u64, |_, _| Ok(())).unwrap(), crc);
        f.write_all_at(&[0], 0x1000).unwrap();
        assert_ne!(scan(&f, m.len() as u64, |_, _| Ok(())).unwrap(), crc);
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let m = sample();
        write(&File::create(&path).unwrap(), &[&m]).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(&path)
            .unwrap();
        f.write_all_at(&[7], m.len() as u64 - 200).unwrap();
        f.set_len(m.len() as u64 - 100).unwrap();
        // The extents end at the file's end; reading the last partial page past it fails.
        let e = scan(&f, m.len() as u64, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
}
