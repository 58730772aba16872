//! The initramfs of a hull guest: the static `hull-agent` as `/init`, the directories it mounts
//! on, and `/dev/console` so that PID 1 starts with a console. Nothing else: the agent is
//! self-contained, and container root filesystems come from the host later.

use std::path::Path;

use crate::cpio::{self, Entry};
use crate::{elf, lz4_legacy};

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
    /// A tree to pack could not be read.
    #[error("cannot read {0}")]
    ReadTree(String, #[source] std::io::Error),
    /// Writing the archive failed.
    #[error("cannot write the archive")]
    Archive(#[from] cpio::CpioError),
    /// The image is neither an LZ4 legacy nor a gzip stream, or does not unpack.
    #[error("cannot unpack the image: {0}")]
    Unpack(String),
}

/// The members of the image, agent included, in archive order.
pub fn entries(agent: Vec<u8>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = BASE_DIRS.iter().map(|d| Entry::dir(d, 0o755)).collect();
    entries.push(Entry::char_device("dev/console", 0o600, 5, 1));
    entries.push(Entry::file("init", 0o755, agent));
    entries
}

/// Builds the LZ4-compressed ([`lz4_legacy`]) initramfs around the agent at `agent_path`.
pub fn build(agent_path: &Path) -> Result<Vec<u8>, InitramfsError> {
    build_with_trees(agent_path, &[])
}

/// Like [`build`], and also packs each host directory `tree.1` at guest path `tree.0` (used by
/// tests to carry a container root filesystem). Regular files, directories and symlinks only.
pub fn build_with_trees(
    agent_path: &Path,
    trees: &[(&str, &Path)],
) -> Result<Vec<u8>, InitramfsError> {
    let shown = agent_path.display().to_string();
    let agent =
        std::fs::read(agent_path).map_err(|e| InitramfsError::ReadAgent(shown.clone(), e))?;
    if !is_static_elf(&agent) {
        return Err(InitramfsError::NotStatic(shown));
    }
    let mut members = entries(agent);
    for (guest, host) in trees {
        let guest = guest.trim_matches('/');
        let parts: Vec<&str> = guest.split('/').collect();
        for depth in 1..parts.len() {
            let parent = parts[..depth].join("/");
            if !members.iter().any(|m| m.path == parent) {
                members.push(Entry::dir(&parent, 0o755));
            }
        }
        add_tree(&mut members, guest, host)?;
    }
    let mut archive = Vec::new();
    cpio::write(&mut archive, &members)?;
    Ok(lz4_legacy::compress(&archive))
}

fn add_tree(members: &mut Vec<Entry>, guest: &str, host: &Path) -> Result<(), InitramfsError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |e| InitramfsError::ReadTree(host.display().to_string(), e);
    let meta = std::fs::symlink_metadata(host).map_err(err)?;
    let perm = meta.permissions().mode() & 0o7777;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(host).map_err(err)?;
        members.push(Entry::symlink(guest, &target.to_string_lossy()));
    } else if meta.is_dir() {
        members.push(Entry::dir(guest, perm));
        let mut children: Vec<_> = std::fs::read_dir(host)
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        children.sort_by_key(std::fs::DirEntry::file_name);
        for child in children {
            let name = child.file_name();
            add_tree(
                members,
                &format!("{guest}/{}", name.to_string_lossy()),
                &child.path(),
            )?;
        }
    } else if meta.is_file() {
        members.push(Entry::file(guest, perm, std::fs::read(host).map_err(err)?));
    }
    Ok(())
}

/// Whether `bytes` is an x86-64 ELF executable with no `PT_INTERP` (no dynamic loader needed).
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let Some(header) = elf::Header::parse(bytes) else {
        return false;
    };
    // ET_EXEC or ET_DYN (static-pie)
    if !(header.e_type == 2 || header.e_type == 3) {
        return false;
    }
    let Ok(phoff) = usize::try_from(header.phoff) else {
        return false;
    };
    let (phentsize, phnum) = (usize::from(header.phentsize), usize::from(header.phnum));
    (0..phnum).all(|i| {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        match bytes.get(at..at + 4) {
            Some(p) => elf::u32_at(p, 0) != PT_INTERP,
            None => false,
        }
    })
}

/// Most bytes an image may unpack to when read back (an initramfs is a few MiB).
pub const MAX_UNPACKED: usize = 256 << 20;

/// Decompresses and reads back an image built by [`build`] (LZ4), or an older gzip one (for
/// checks and tests), unpacking at most [`MAX_UNPACKED`] bytes.
pub fn read(image: &[u8]) -> Result<Vec<Entry>, InitramfsError> {
    use std::io::Read;
    let raw = if lz4_legacy::is_lz4(image) {
        lz4_legacy::decompress(image, MAX_UNPACKED)
            .map_err(|e| InitramfsError::Unpack(e.to_string()))?
    } else if image.starts_with(&[0x1f, 0x8b]) {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(image)
            .take(MAX_UNPACKED as u64)
            .read_to_end(&mut raw)
            .map_err(|e| InitramfsError::Unpack(format!("gzip: {e}")))?;
        raw
    } else {
        return Err(InitramfsError::Unpack(
            "neither an LZ4 legacy nor a gzip stream".into(),
        ));
    };
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
        assert!(lz4_legacy::is_lz4(&image), "LZ4 legacy magic");
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
    fn trees_are_packed_with_links_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("hull-agent");
        std::fs::write(&agent, fake_static_elf()).unwrap();
        let tree = dir.path().join("root");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::write(tree.join("bin/busybox"), b"bb").unwrap();
        std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).unwrap();
        let image = build_with_trees(&agent, &[("/test/root", &tree)]).unwrap();
        let members = read(&image).unwrap();
        let find = |p: &str| {
            members
                .iter()
                .find(|m| m.path == p)
                .unwrap_or_else(|| panic!("{p}"))
        };
        assert_eq!(find("test").mode & cpio::S_IFDIR, cpio::S_IFDIR);
        assert_eq!(find("test/root/bin/busybox").data, b"bb");
        let link = find("test/root/bin/sh");
        assert_eq!(
            (link.mode & cpio::S_IFLNK, link.data.as_slice()),
            (cpio::S_IFLNK, &b"busybox"[..])
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
