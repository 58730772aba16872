//! Copied volumes in the guest: kubelet atomic-writer directories (ConfigMap, Secret, projected,
//! downward API) that the host sends instead of sharing them over virtio-fs, so that an update
//! on the host reaches the container as it would under runc, with inotify events and no stale
//! cache (see `hull_protocol::volume` and docs/cri.md).
//!
//! Each volume is a tmpfs of its own at `/run/hull/volumes/<container>/<volume>` (its size caps
//! what the host may make the guest hold); the container's bind mount points at it. Every write,
//! the first included, replays the kubelet's `AtomicWriter`: the payload goes into a new
//! `..<timestamp>` directory, `..data_tmp` is pointed at it and renamed over `..data`, the
//! top-level `<name> -> ..data/<name>` symlinks are added and the stale ones removed, and the old
//! payload directory goes last. A reader never sees a half-written payload, and a watcher sees
//! the same events as on a runc node.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hull_protocol::volume::{
    is_payload_dir_name, Meta, Payload, DATA_LINK, DATA_TMP_LINK, MAX_VOLUME_BYTES,
    MAX_VOLUME_ENTRIES,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A copied volume could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Its tmpfs could not be mounted or unmounted.
    #[error("cannot {op} the volume tmpfs at {path}")]
    Mount {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// A file system call failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// One volume's writes at a time (the host's watcher sends them one by one; this keeps a retried
/// request from racing its first attempt).
static WRITING: Mutex<()> = Mutex::new(());

/// The tmpfs options: room for two payloads at their caps (the old one is removed only after
/// the new one is published), each file taking at least a page, and their inodes.
fn tmpfs_options() -> String {
    let per_payload = MAX_VOLUME_BYTES + MAX_VOLUME_ENTRIES * 4096;
    format!(
        "size={},nr_inodes={},mode=0755",
        2 * per_payload,
        3 * MAX_VOLUME_ENTRIES + 16
    )
}

/// Writes volume `volume` of container `cid` under `base` (mounting its tmpfs first when
/// `mount_tmpfs` and not yet mounted), replaying the kubelet's update.
pub fn write(
    base: &Path,
    cid: &str,
    volume: u32,
    payload: &Payload,
    mount_tmpfs: bool,
) -> Result<(), VolumeError> {
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = base.join(cid).join(volume.to_string());
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    }
    if mount_tmpfs && !is_mount_point(&dir)? {
        let options = tmpfs_options();
        mount(
            Some("hull-volume"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|source| VolumeError::Mount {
            op: "mount",
            path: dir.clone(),
            source,
        })?;
    }
    set_meta(&dir, payload.root)?;
    replay(&dir, payload, SystemTime::now())
}

fn is_mount_point(dir: &Path) -> Result<bool, VolumeError> {
    let here = fs::metadata(dir).map_err(io("stat", dir))?;
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let up = fs::metadata(parent).map_err(io("stat", parent))?;
    Ok(here.dev() != up.dev())
}

/// Owner first: `chown` clears the setuid and setgid bits that the mode may set.
fn set_meta(path: &Path, meta: Meta) -> Result<(), VolumeError> {
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).map_err(io("chown", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode)).map_err(io("chmod", path))
}

/// The kubelet's `AtomicWriter` update of `dir` to `payload` (see the module doc). `now` names
/// the new payload directory as the kubelet would (`..2006_01_02_15_04_05.<nanos>`, UTC).
pub fn replay(dir: &Path, payload: &Payload, now: SystemTime) -> Result<(), VolumeError> {
    let new = new_payload_dir(dir, now)?;
    let new_path = dir.join(&new);
    for e in &payload.entries {
        let path = new_path.join(&e.path);
        match &e.data {
            None => fs::create_dir(&path).map_err(io("create", &path))?,
            Some(data) => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io("create", &path))?;
                f.write_all(data).map_err(io("write", &path))?;
            }
        }
        set_meta(&path, e.meta)?;
    }
    // Publish: `..data_tmp` then renamed over `..data`, atomically for every reader.
    let tmp = dir.join(DATA_TMP_LINK);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", &tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&new, &tmp).map_err(io("symlink", &tmp))?;
    let data = dir.join(DATA_LINK);
    fs::rename(&tmp, &data).map_err(io("rename over", &data))?;
    // The user-visible names: new ones appear, gone ones go, kept ones already point through
    // `..data`.
    let top = payload.top_level();
    for name in &top {
        let link = dir.join(name);
        if let Err(e) = fs::symlink_metadata(&link) {
            if e.kind() != ErrorKind::NotFound {
                return Err(io("stat", &link)(e));
            }
            std::os::unix::fs::symlink(format!("{DATA_LINK}/{name}"), &link)
                .map_err(io("symlink", &link))?;
        }
    }
    let listed: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(io("list", dir))?
        .collect::<Result<_, _>>()
        .map_err(io("list", dir))?;
    let (visible, layout): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .partition(|e| !e.file_name().to_string_lossy().starts_with(".."));
    for e in visible {
        let name = e.file_name();
        if !top.iter().any(|t| *t == name) {
            remove(&e.path())?;
        }
    }
    // The old payload directories last, as the kubelet does.
    for e in layout {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if is_payload_dir_name(&name) && name != new {
            remove(&e.path())?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), VolumeError> {
    let meta = fs::symlink_metadata(path).map_err(io("stat", path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(io("remove", path))
    } else {
        fs::remove_file(path).map_err(io("remove", path))
    }
}

/// Makes a fresh `..<UTC timestamp>.<nanos>` directory in `dir` (mode 0755, as the kubelet's)
/// and returns its name.
fn new_payload_dir(dir: &Path, now: SystemTime) -> Result<String, VolumeError> {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let stamp = utc_stamp(since.as_secs());
    for n in 0..1000u32 {
        let name = format!("..{stamp}.{:09}{n}", since.subsec_nanos());
        let path = dir.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io("chmod", &path))?;
                return Ok(name);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create", &path)(e)),
        }
    }
    Err(io("create a payload directory in", dir)(
        ErrorKind::AlreadyExists.into(),
    ))
}

/// `YYYY_MM_DD_HH_MM_SS` of a Unix time, UTC (civil date from days, Howard Hinnant's method).
fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unmounts and removes every copied volume of container `cid` under `base`. Nothing there is
/// not an error.
pub fn remove_all(base: &Path, cid: &str) -> Result<(), VolumeError> {
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = base.join(cid);
    let listed = match fs::read_dir(&dir) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("list", &dir)(e)),
    };
    for e in listed.flatten() {
        let path = e.path();
        match umount2(&path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => {}
            Err(source) => {
                return Err(VolumeError::Mount {
                    op: "unmount",
                    path,
                    source,
                })
            }
        }
    }
    fs::remove_dir_all(&dir).map_err(io("remove", &dir))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hull_protocol::volume::Entry;

    use super::*;

    fn me() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    fn payload(files: &[(&str, &str)]) -> Payload {
        let (uid, gid) = me();
        let meta = |mode| Meta { mode, uid, gid };
        let mut entries: Vec<Entry> = Vec::new();
        for (path, data) in files {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !entries.iter().any(|e| e.path == parent) {
                    entries.push(Entry {
                        path: parent.into(),
                        meta: meta(0o755),
                        data: None,
                    });
                }
            }
            entries.push(Entry {
                path: (*path).into(),
                meta: meta(0o640),
                data: Some(data.as_bytes().to_vec()),
            });
        }
        Payload {
            root: meta(0o755),
            entries,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn the_kubelets_layout_and_swap_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_796_545_200); // 2026-12-06 08:20:00 UTC
        replay(dir, &payload(&[("key", "v1"), ("sub/deep", "d1")]), t0).unwrap();
        assert_eq!(fs::read_to_string(dir.join("key")).unwrap(), "v1");
        assert_eq!(fs::read_to_string(dir.join("sub/deep")).unwrap(), "d1");
        assert_eq!(
            fs::read_link(dir.join("key")).unwrap(),
            Path::new("..data/key")
        );
        let first = fs::read_link(dir.join(DATA_LINK)).unwrap();
        let first = first.to_string_lossy().into_owned();
        assert!(first.starts_with("..2026_12_06_08_20_00."), "{first}");
        assert_eq!(
            fs::metadata(dir.join("key")).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        // An update: `key` changes, `sub` goes, `new` comes.
        replay(
            dir,
            &payload(&[("key", "v2"), ("new", "n")]),
            t0 + Duration::from_secs(61),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(dir.join("key")).unwrap(), "v2");
        assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "n");
        let second = fs::read_link(dir.join(DATA_LINK)).unwrap();
        let second = second.to_string_lossy().into_owned();
        assert!(second.starts_with("..2026_12_06_08_21_01."), "{second}");
        assert_eq!(names(dir), [second.as_str(), "..data", "key", "new"]);
        // The same second twice: a distinct directory still.
        replay(
            dir,
            &payload(&[("key", "v3")]),
            t0 + Duration::from_secs(61),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(dir.join("key")).unwrap(), "v3");
        assert_eq!(names(dir).len(), 3, "{:?}", names(dir));
    }

    #[test]
    fn leftovers_of_an_interrupted_update_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        fs::create_dir(dir.join("..2020_01_01_00_00_00.1")).unwrap();
        std::os::unix::fs::symlink("..2020_01_01_00_00_00.1", dir.join(DATA_TMP_LINK)).unwrap();
        fs::write(dir.join("stray"), "x").unwrap();
        replay(dir, &payload(&[("key", "v")]), SystemTime::now()).unwrap();
        let left = names(dir);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.contains(&"key".to_owned()) && left.contains(&"..data".to_owned()));
    }

    #[test]
    fn a_containers_volumes_go_with_it() {
        let base = tempfile::tempdir().unwrap();
        let base = base.path();
        for volume in [2, 5] {
            write(base, "c1", volume, &payload(&[("key", "v")]), false).unwrap();
        }
        write(base, "c2", 0, &payload(&[("key", "v")]), false).unwrap();
        assert_eq!(
            fs::read_to_string(base.join("c1/5/key")).unwrap(),
            "v",
            "written where the container's mount points"
        );
        remove_all(base, "c1").unwrap();
        assert_eq!(names(base), ["c2"]);
        remove_all(base, "c1").unwrap();
        remove_all(base, "never").unwrap();
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_stamp(951_782_400), "2000_02_29_00_00_00");
        assert_eq!(utc_stamp(1_796_545_200 + 3_599), "2026_12_06_09_19_59");
    }
}
