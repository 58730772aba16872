//! Content hashes of the guest images for template keys. Hashing a kernel and an initramfs
//! (tens of MiB) at every pod start would cost more than a restore saves, so the hash of each
//! image is kept in `<root>/.image-hashes` (root-only) beside what `stat` says of the file (size,
//! mtime, inode, device); a file whose `stat` still matches is not read again. Replacing an image
//! (install, rebuild) changes its mtime or inode, and so its hash is computed anew.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::TemplateError;

/// The cache file's name under the templates root.
pub const CACHE_FILE: &str = ".image-hashes";

/// What `stat` says of a file, and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    dev: u64,
    sha256: String,
}

fn stat_of(meta: &std::fs::Metadata) -> (u64, i128, u64, u64) {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    (meta.len(), mtime_ns, meta.ino(), meta.dev())
}

/// SHA-256 of `path`'s content, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, TemplateError> {
    let what = || format!("cannot read {}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| TemplateError::Io(what(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| TemplateError::Io(what(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The SHA-256 of each of `paths`, from the cache under `root` where `stat` still matches;
/// the cache is rewritten when something was hashed (best effort: a root that cannot be
/// written only costs the next caller a hash).
pub fn image_hashes(root: &Path, paths: &[&Path]) -> Result<Vec<String>, TemplateError> {
    let cache_path = root.join(CACHE_FILE);
    let mut cache: BTreeMap<String, Entry> = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut changed = false;
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| TemplateError::Io(format!("cannot stat {}", path.display()), e))?;
        let (size, mtime_ns, ino, dev) = stat_of(&meta);
        let name = path.to_string_lossy().into_owned();
        let cached = cache
            .get(&name)
            .filter(|e| e.size == size && e.mtime_ns == mtime_ns && e.ino == ino && e.dev == dev);
        let hash = match cached {
            Some(e) => e.sha256.clone(),
            None => {
                let sha256 = sha256_file(path)?;
                cache.insert(
                    name,
                    Entry {
                        size,
                        mtime_ns,
                        ino,
                        dev,
                        sha256: sha256.clone(),
                    },
                );
                changed = true;
                sha256
            }
        };
        out.push(hash);
    }
    if changed && root.is_dir() {
        let written =
            super::replace_private(&cache_path, &serde_json::to_vec(&cache).unwrap_or_default());
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot update the image hash cache");
        }
    }
    Ok(out)
}
