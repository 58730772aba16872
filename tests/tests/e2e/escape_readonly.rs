//! Read-only means read-only on the host (issue 22, bug 8). A `--privileged` container mounts the
//! pod's raw virtio-fs share (tag `hull`: it gets the read-only volume's superblock, the issue's
//! reproducer) and also remounts its own read-only mounts read-write (the guest's flags are root's
//! to lift), then attacks the host files of its read-only volumes (a directory and a single file)
//! and of its read-only root (`ctr run --read-only`: containerd lends the image's layer itself)
//! every way a file changes: write, append, truncate, chmod, chown, utimes, rename, unlink, rmdir,
//! create, mkdir, symlink, hard links inside and out, a rename out, an extended attribute. The
//! same attacks on a read-write volume of the same container are the positive control: they reach
//! the host, so the probe would have seen an escape; that volume is mounted read-only a second time
//! too (as a pod's second container may have it), and that mount stays read-only. Against the old shim every attack reached the
//! host, the image's layer included (virtiofsd's copy of each mount was writable). See
//! docs/virtio-fs.md, "Read-only is enforced by the host".

use hull_tests::probe_output::{lines_after, text};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hull_tests::containerd::{build_busybox_image_with, Containerd, IMAGE, RUNTIME};

/// The probes, for a volume directory `$2` labelled `$1`, with a scratch directory `$3` on the
/// read-write volume for links and renames out of it.
const ATTACK: &str = r#"try() { P=$1; shift; if "$@" >/dev/null 2>&1; then echo "$P: ok"; else echo "$P: refused"; fi; }
attack() {
  L=$1; T=$2; OUT=$3
  try "$L write" sh -c "echo pwned > $T/w"
  try "$L append" sh -c "echo pwned >> $T/a"
  try "$L truncate" truncate -s 0 $T/t
  try "$L chmod" chmod 700 $T/c
  try "$L chown" chown 1234:1234 $T/o
  try "$L utimes" touch -d '2001-01-01 00:00:00' $T/m
  try "$L rename" mv $T/r $T/r2
  try "$L unlink" rm $T/u
  try "$L rmdir" rmdir $T/d
  try "$L create" sh -c "echo pwned > $T/n"
  try "$L mkdir" mkdir $T/newdir
  try "$L symlink" ln -s /etc/passwd $T/sl
  try "$L link" ln $T/x $T/x2
  try "$L link-out" ln $T/x $OUT/x-$L
  try "$L rename-out" mv $T/y $OUT/y-$L
  try "$L xattr" hull-fs-probe xattr-set $T/x user.pwned yes
}"#;

/// The files every attacked directory starts with (and a directory `d`).
const FILES: &[&str] = &["w", "a", "t", "c", "o", "m", "r", "u", "x", "y", "kind"];

/// The probe names, in the order the script prints them.
const PROBES: &[&str] = &[
    "write",
    "append",
    "truncate",
    "chmod",
    "chown",
    "utimes",
    "rename",
    "unlink",
    "rmdir",
    "create",
    "mkdir",
    "symlink",
    "link",
    "link-out",
    "rename-out",
    "xattr",
];

/// Probes on a single-file volume `$FILE` and on the root filesystem `$R`.
const FILE_AND_ROOT: &str = r#"try "file write" sh -c "echo pwned > $FILE"
try "file append" sh -c "echo pwned >> $FILE"
try "file truncate" truncate -s 0 $FILE
try "file chmod" chmod 700 $FILE
try "root append" sh -c "echo pwned >> $R/etc/passwd"
try "root create" sh -c "echo pwned > $R/pwned"
try "root mkdir" mkdir $R/pwned-dir
try "root unlink" rm $R/etc/group
try "root chmod" chmod 700 $R/etc/passwd
try "root rename" mv $R/etc/passwd $R/etc/passwd-"#;

/// A private containerd whose busybox image carries `hull-fs-probe` (extended attributes) and
/// the volumes' mount points: a root lent read-only gets none made (as with runc).
fn containerd() -> Option<Containerd> {
    let c = Containerd::start()?;
    let probe = hull_tests::rootfs::fs_probe_binary();
    assert!(
        probe.is_file(),
        "{} is missing (scripts/build.sh builds it)",
        probe.display()
    );
    let empty = c.dir().join("empty");
    std::fs::write(&empty, "").unwrap();
    let image = c.dir().join("busybox-probe.tar");
    let extra = [
        (probe.as_path(), "bin/hull-fs-probe"),
        (empty.as_path(), "ro/.mount-point"),
        (empty.as_path(), "rw/.mount-point"),
        (empty.as_path(), "rw-ro/.mount-point"),
        (empty.as_path(), "ro-file"),
    ];
    build_busybox_image_with(&image, IMAGE, &extra).expect("busybox image with the probe");
    c.import(&image).expect("import the probe image");
    Some(c)
}

/// A directory to attack, labelled `kind` (its `kind` file says so, for the script to find it).
fn attacked_dir(path: &Path, kind: &str) {
    std::fs::create_dir_all(path.join("d")).unwrap();
    for f in FILES {
        std::fs::write(path.join(f), format!("original {f}\n")).unwrap();
        std::fs::set_permissions(path.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(path.join("kind"), kind).unwrap();
    std::fs::create_dir_all(path.join("scratch")).unwrap();
}

/// `user.pwned` of `path`, if set.
fn xattr(path: &Path) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: a live C string, a live name, and a buffer writable for its length; checked.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"user.pwned".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

/// Everything about the tree at `dir` that an attack could change: per path, its type, mode,
/// owner, size, mtime, link count, content or link target, and `user.pwned`.
fn state(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let what = if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            "dir".to_owned()
        } else if md.file_type().is_symlink() {
            format!("link {:?}", std::fs::read_link(&p).unwrap())
        } else {
            format!("{:?}", std::fs::read(&p).unwrap())
        };
        out.insert(
            p.strip_prefix(dir).unwrap().to_owned(),
            format!(
                "{what} mode {:o} owner {}:{} size {} mtime {} links {} xattr {:?}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.mtime(),
                md.nlink(),
                xattr(&p)
            ),
        );
    }
    out
}

/// containerd's overlayfs snapshot of the probe image's layer (the first image's layer, without
/// the probe, may still be collected while the test runs).
fn snapshot_dirs(c: &Containerd) -> Vec<PathBuf> {
    let dir = c
        .dir()
        .join("root/io.containerd.snapshotter.v1.overlayfs/snapshots");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("fs"))
                .filter(|fs| fs.join("bin/hull-fs-probe").is_file())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn privileged_container_cannot_change_read_only_volumes_or_root_through_the_raw_share() {
    let Some(c) = containerd() else { return };
    let id = "esc-readonly";
    let (ro, rw, file) = (
        c.dir().join("vol-ro"),
        c.dir().join("vol-rw"),
        c.dir().join("ro-file"),
    );
    attacked_dir(&ro, "ro");
    attacked_dir(&rw, "rw");
    std::fs::write(&file, "rofile").unwrap();
    let ro_before = state(&ro);
    let file_before = state(&file);
    let layers = snapshot_dirs(&c);
    assert!(!layers.is_empty(), "no image layer on the host");
    let layers_before: Vec<_> = layers.iter().map(|d| state(d)).collect();

    // The read-only volume is mounted last: mounting the `hull` tag again gives the guest the
    // newest virtio-fs superblock (docs/jail.md), that volume's, which is the issue's reproducer.
    // The guest's own read-only flags are the attacker's to lift: each read-only mount of the
    // container is remounted read-write (which the guest kernel allows root) and attacked too.
    let script = format!(
        r#"S=/run/raw-share
mkdir -p $S && mount -t virtiofs hull $S; echo "raw share=$? $(cat $S/kind 2>&1)"
echo "mounts: $(grep -E ' /r[ow]' /proc/mounts | cut -d' ' -f2,4 | tr '\n' ' ')"
echo "own view: $(touch /ro/own 2>&1 >/dev/null | grep -c 'Read-only') $(touch /own 2>&1 >/dev/null | grep -c 'Read-only')"
for m in /ro /ro-file / /rw-ro; do mount -o remount,bind,rw $m; echo "remount $m=$?"; done
{ATTACK}
attack raw $S /rw/scratch
attack remount /ro /rw/scratch
cat /rw-ro/w /rw-ro/a >/dev/null
try "rw-ro write" sh -c "echo pwned > /rw-ro/w"
attack rw /rw /rw/scratch
try "rw-ro append" sh -c "echo pwned >> /rw-ro/a"
FILE=/ro-file
R=
{FILE_AND_ROOT}
echo END"#
    );
    let mounts = [
        format!("type=bind,src={},dst=/rw,options=rbind:rw", rw.display()),
        format!(
            "type=bind,src={},dst=/ro-file,options=bind:ro",
            file.display()
        ),
        format!("type=bind,src={},dst=/rw-ro,options=rbind:ro", rw.display()),
        format!("type=bind,src={},dst=/ro,options=rbind:ro", ro.display()),
    ];
    let mut args = vec![
        "run",
        "--rm",
        "--privileged",
        "--read-only",
        "--runtime",
        RUNTIME,
    ];
    for m in &mounts {
        args.extend(["--mount", m.as_str()]);
    }
    args.extend([IMAGE, id, "sh", "-c", &script]);
    let out = c.ctr(&args);
    let all = text(&out);
    // Shown with --nocapture (and kept by the harness when the test fails).
    println!("{all}");
    assert_eq!(out.status.code(), Some(0), "{}", c.explain(&out));
    assert!(all.contains("\nEND"), "the attack did not finish:\n{all}");
    // It really was privileged: it mounted the raw share (the read-only volume's superblock) and
    // lifted the guest's read-only flags; before that the container's own view was read-only.
    assert_eq!(lines_after(&all, "raw share="), ["0 ro"], "{all}");
    assert_eq!(lines_after(&all, "own view: "), ["1 1"], "{all}");
    for m in ["/ro", "/ro-file", "/", "/rw-ro"] {
        assert_eq!(lines_after(&all, &format!("remount {m}=")), ["0"], "{all}");
    }

    // Positive control: every attack on the read-write volume went through and reached the host,
    // also where the same files were looked up through a read-only mount of the same source first
    // (`/rw-ro`, a second container's read-only view of a pod's volume), which stayed read-only
    // before and after (virtiofsd keys its inodes by mount too).
    for p in ["write", "append"] {
        assert_eq!(
            lines_after(&all, &format!("rw-ro {p}: ")),
            ["refused"],
            "{all}"
        );
    }
    for p in PROBES {
        assert_eq!(lines_after(&all, &format!("rw {p}: ")), ["ok"], "{all}");
    }
    let read = |name: &str| std::fs::read_to_string(rw.join(name)).unwrap_or_default();
    let md = |name: &str| std::fs::symlink_metadata(rw.join(name)).unwrap();
    assert_eq!(read("w"), "pwned\n");
    assert_eq!(read("a"), "original a\npwned\n");
    assert_eq!(md("t").len(), 0);
    assert_eq!(md("c").mode() & 0o777, 0o700);
    assert_eq!((md("o").uid(), md("o").gid()), (1234, 1234));
    assert_eq!(md("m").mtime(), 978_307_200, "2001-01-01 00:00:00 UTC");
    assert!(rw.join("r2").exists() && !rw.join("r").exists());
    assert!(!rw.join("u").exists() && !rw.join("d").exists());
    assert_eq!(read("n"), "pwned\n");
    assert!(rw.join("newdir").is_dir());
    assert!(md("sl").file_type().is_symlink());
    assert_eq!(md("x").nlink(), 3, "x, x2 and scratch/x-rw");
    assert!(rw.join("scratch/y-rw").exists() && !rw.join("y").exists());
    assert_eq!(xattr(&rw.join("x")).as_deref(), Some(&b"yes"[..]));

    // The read-only volume, the file and the image's layer did not change at all.
    for p in PROBES {
        for how in ["raw", "remount"] {
            assert_eq!(
                lines_after(&all, &format!("{how} {p}: ")),
                ["refused"],
                "{all}"
            );
        }
    }
    for p in ["write", "append", "truncate", "chmod"] {
        assert_eq!(
            lines_after(&all, &format!("file {p}: ")),
            ["refused"],
            "{all}"
        );
    }
    for p in ["append", "create", "mkdir", "unlink", "chmod", "rename"] {
        assert_eq!(
            lines_after(&all, &format!("root {p}: ")),
            ["refused"],
            "{all}"
        );
    }
    assert_eq!(
        state(&ro),
        ro_before,
        "the read-only volume changed:\n{all}"
    );
    assert_eq!(
        state(&file),
        file_before,
        "the read-only file changed:\n{all}"
    );
    let layers_after: Vec<_> = layers.iter().map(|d| state(d)).collect();
    assert_eq!(
        layers_after, layers_before,
        "the image's layer changed:\n{all}"
    );
    assert!(!rw.join("scratch/x-raw").exists() && !rw.join("scratch/x-remount").exists());
    c.assert_clean(id, std::time::Duration::from_secs(20));
}
