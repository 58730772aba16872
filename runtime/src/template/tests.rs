//! Keying, staleness and refusal of damaged templates, without a VM.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn inputs() -> TemplateInputs {
    TemplateInputs {
        hull_version: HULL_VERSION.into(),
        kernel_sha256: "aa".repeat(32),
        initramfs_sha256: "bb".repeat(32),
        vcpus: 1,
        memory_mib: 256,
        cmdline: "console=ttyS0 reboot=k panic=-1 quiet".into(),
        devices: vec!["vsock".into(), "fs:hull".into()],
    }
}

/// A template directory for `inputs` under a fresh root, as `create::install` leaves it.
fn made(inputs: &TemplateInputs) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    ensure_root(root.path()).unwrap();
    let dir = dir_for(root.path(), inputs);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join(STATE_FILE), b"state!").unwrap();
    std::fs::write(dir.join(MEMORY_FILE), vec![0u8; 4096]).unwrap();
    let record = Record {
        key: inputs.key(),
        inputs: inputs.clone(),
        created: 1,
        state_bytes: 6,
        memory_bytes: 4096,
    };
    std::fs::write(dir.join(RECORD), serde_json::to_vec(&record).unwrap()).unwrap();
    (root, dir)
}

#[test]
fn every_input_changes_the_key() {
    let base = inputs();
    assert_eq!(base.key(), inputs().key(), "the key is stable");
    assert_eq!(base.key().len(), 32);
    let changes: [fn(&mut TemplateInputs); 7] = [
        |i| i.hull_version.push('+'),
        |i| i.kernel_sha256 = "cc".repeat(32),
        |i| i.initramfs_sha256 = "cc".repeat(32),
        |i| i.vcpus = 2,
        |i| i.memory_mib = 512,
        |i| i.cmdline.push_str(" hull.hostname=x"),
        |i| i.devices.truncate(1),
    ];
    for change in changes {
        let mut other = inputs();
        change(&mut other);
        assert_ne!(other.key(), base.key(), "{other:?}");
        assert!(!other.differences(&base).is_empty());
    }
}

#[test]
fn a_valid_template_is_found_and_a_missing_one_is_missing() {
    let i = inputs();
    let (root, dir) = made(&i);
    match lookup(root.path(), &i).unwrap() {
        Lookup::Ready(t) => assert_eq!(t.dir, dir),
        Lookup::Missing => panic!("not found"),
    }
    let mut other = inputs();
    other.vcpus = 4;
    assert!(matches!(
        lookup(root.path(), &other).unwrap(),
        Lookup::Missing
    ));
}

#[test]
fn damaged_templates_are_refused_with_what_is_wrong() {
    let i = inputs();
    let refused = |setup: &dyn Fn(&Path)| {
        let (root, dir) = made(&i);
        setup(&dir);
        let err = lookup(root.path(), &i).unwrap_err();
        err.to_string()
    };
    let e = refused(&|d| std::fs::write(d.join(MEMORY_FILE), b"short").unwrap());
    assert!(
        e.contains("corrupt") && e.contains("memory is 5 bytes"),
        "{e}"
    );
    let e = refused(&|d| std::fs::remove_file(d.join(STATE_FILE)).unwrap());
    assert!(e.contains("corrupt") && e.contains("state"), "{e}");
    let e = refused(&|d| std::fs::write(d.join(RECORD), b"{not json").unwrap());
    assert!(e.contains("does not parse"), "{e}");
    let e = refused(&|d| std::fs::remove_file(d.join(RECORD)).unwrap());
    assert!(e.contains("no readable template.json"), "{e}");
    let e = refused(&|d| {
        let mut r: Record =
            serde_json::from_slice(&std::fs::read(d.join(RECORD)).unwrap()).unwrap();
        r.inputs.kernel_sha256 = "dd".repeat(32);
        std::fs::write(d.join(RECORD), serde_json::to_vec(&r).unwrap()).unwrap();
    });
    assert!(e.contains("stale") && e.contains("kernel"), "{e}");
    let e = refused(&|d| {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    assert!(e.contains("not root-only"), "{e}");
}

#[test]
fn superseded_templates_are_pruned_and_others_kept() {
    let i = inputs();
    let (root, old_dir) = made(&i);
    let mut other_shape = inputs();
    other_shape.vcpus = 2;
    let kept = dir_for(root.path(), &other_shape);
    let (_r2, d2) = made(&other_shape);
    std::fs::rename(&d2, &kept).unwrap();
    let mut current = inputs();
    current.initramfs_sha256 = "ee".repeat(32);
    // Both were made from the old initramfs: both superseded.
    let mut pruned = prune(root.path(), &current);
    pruned.sort();
    assert_eq!(pruned.len(), 2, "{pruned:?}");
    assert!(!old_dir.exists() && !kept.exists());
    let (root, dir) = made(&i);
    assert!(prune(root.path(), &i).is_empty());
    assert!(dir.exists());
    assert!(matches!(
        remove(root.path(), "../etc"),
        Err(TemplateError::NotAKey(k)) if k == "../etc"
    ));
    remove(root.path(), &i.key()).unwrap();
    assert!(!dir.exists());
    assert!(list(root.path()).unwrap().is_empty());
}

#[test]
fn image_hashes_are_cached_by_stat_and_redone_when_a_file_changes() {
    let root = tempfile::tempdir().unwrap();
    let image = root.path().join("kernel");
    std::fs::write(&image, b"one").unwrap();
    let first = hashes::image_hashes(root.path(), &[&image]).unwrap();
    assert_eq!(
        first[0],
        "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    );
    assert!(root.path().join(hashes::CACHE_FILE).is_file());
    // Replaced (a new inode, as an install does): hashed again.
    let new = root.path().join("kernel.new");
    std::fs::write(&new, b"two").unwrap();
    std::fs::rename(&new, &image).unwrap();
    let second = hashes::image_hashes(root.path(), &[&image]).unwrap();
    assert_ne!(first, second);
}

/// NIC or no NIC is part of the device layout, so of the key: the two templates of one shape
/// are two (issue 19). Both have the balloon, and the command line a booted pod gets (the page
/// reporting order included).
#[test]
fn a_nic_template_has_its_own_key_and_both_have_the_balloon() {
    use create::{TemplateSpec, TEMPLATE_MAC};
    let root = tempfile::tempdir().unwrap();
    let images = crate::images::GuestImages::in_dir(root.path());
    std::fs::write(&images.kernel, b"kernel").unwrap();
    std::fs::write(&images.initramfs, b"initramfs").unwrap();
    let hv = crate::vm::hull_vmm::HullVmm::new("hull-vmm");
    let spec = |nic| TemplateSpec::for_pods(images.clone(), (1, 256), &["x=1".into()], true, nic);
    let without = spec(false).inputs(&hv, root.path()).unwrap();
    let with = spec(true).inputs(&hv, root.path()).unwrap();
    assert_eq!(without.devices, ["vsock", "fs:hull", "balloon"]);
    assert_eq!(
        with.devices,
        ["vsock", "fs:hull", "net:02:68:75:6c:6c:00", "balloon"]
    );
    assert_ne!(with.key(), without.key());
    assert_eq!(with.cmdline, without.cmdline);
    assert!(
        with.cmdline
            .starts_with("console=ttyS0 reboot=k panic=-1 quiet x=1"),
        "{}",
        with.cmdline
    );
    assert!(
        with.cmdline.ends_with(crate::sandbox::PAGE_REPORTING_ARG),
        "{}",
        with.cmdline
    );
    // A MAC no pod's guest keeps: locally administered, unicast.
    assert_eq!(TEMPLATE_MAC[0] & 0b11, 0b10);
}
