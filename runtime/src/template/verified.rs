//! The "memory checked" mark of a template: hull-vmm checks a snapshot's memory checksum before
//! it restores, which reads every data page of the memory file (tens of MiB for a template). A
//! template's files never change once installed, so that check is needed once per file, not once
//! per pod: after a restore whose hull-vmm checked the memory (it listens only once the check
//! passed), the shim writes [`MARK`] into the template's directory with the memory file's
//! identity — device, inode, size, mtime and ctime. A later restore whose memory file still has
//! that identity tells hull-vmm `--memory-checked` (it still checks the length and the state
//! file). Any write to the file (a flipped byte, a rewrite, a replacement) changes its ctime or
//! its inode, and the next restore checks it again. Like the checksum itself, this guards
//! against damage, not against someone who can write the root-only directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::MEMORY_FILE;

/// The mark's file name in a template's directory.
pub const MARK: &str = "memory-checked";

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    /// The identity of `path` as it is now (not following a symlink).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The identity of the template's memory file in `dir`, and whether a mark there says that very
/// file was checked. `None` when the file cannot be read (hull-vmm then says why).
pub fn memory_state(dir: &Path) -> Option<(Identity, bool)> {
    let now = Identity::of(&dir.join(MEMORY_FILE)).ok()?;
    let marked = std::fs::read(dir.join(MARK))
        .ok()
        .and_then(|b| serde_json::from_slice::<Identity>(&b).ok());
    Some((now, marked == Some(now)))
}

/// Marks the memory file in `dir` as checked, if it still has identity `checked` (the one it had
/// when the check began). Written through a temporary file renamed into place.
pub fn mark(dir: &Path, checked: &Identity) -> std::io::Result<()> {
    if Identity::of(&dir.join(MEMORY_FILE))? != *checked {
        return Err(std::io::Error::other(
            "the memory file changed while it was checked",
        ));
    }
    let json = serde_json::to_vec(checked).map_err(std::io::Error::other)?;
    super::replace_private(&dir.join(MARK), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_mark_holds_until_the_file_is_written_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join(MEMORY_FILE);
        assert!(memory_state(dir.path()).is_none(), "no file, no state");
        std::fs::write(&memory, vec![7u8; 8192]).unwrap();
        let (id, marked) = memory_state(dir.path()).unwrap();
        assert!(!marked, "not marked yet");
        mark(dir.path(), &id).unwrap();
        assert_eq!(memory_state(dir.path()), Some((id, true)));
        let mode = std::fs::metadata(dir.path().join(MARK)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // One byte written in place (same size, same inode): its ctime moves on.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&memory)
            .unwrap();
        f.write_all_at(&[8], 100).unwrap();
        drop(f);
        let (now, marked) = memory_state(dir.path()).unwrap();
        assert!(!marked, "a written file is checked again");
        // A mark for an identity the file no longer has is not written.
        assert!(mark(dir.path(), &id).is_err());
        mark(dir.path(), &now).unwrap();
        assert!(memory_state(dir.path()).unwrap().1);

        // Replaced by another file with the same bytes: another inode.
        let other = dir.path().join("other");
        std::fs::copy(&memory, &other).unwrap();
        std::fs::rename(&other, &memory).unwrap();
        assert!(!memory_state(dir.path()).unwrap().1);

        // A damaged mark is no mark.
        std::fs::write(dir.path().join(MARK), b"{").unwrap();
        assert!(!memory_state(dir.path()).unwrap().1);
    }
}
