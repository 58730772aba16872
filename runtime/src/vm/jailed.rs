//! A [`VmConfig`] as a jailed VMM sees it (see [`crate::jail`]): what to bind into the jail, and
//! the same config with every path replaced by its place inside. Both backends use it.
//!
//! | host | jail |
//! |---|---|
//! | kernel, initramfs | `/vm/kernel`, `/vm/initrd` (read-only) |
//! | `<run_dir>/console.log` | `/run/console.log` (owned by the VMM's uid) |
//! | a vhost-user socket `<dir>/<name>` | `/run/<name>` (owned by the VMM's uid) |
//! | a disk image | `/vm/disk<n>` (read-only unless the disk is writable) |
//! | `/dev/kvm` (with KVM), `/dev/net/tun` (with a NIC) | device nodes owned by the VMM's uid |

use std::path::{Path, PathBuf};

use super::process::console_path;
use super::{Device, VmConfig, VmError};
use crate::jail::{JailConfig, JailTap};

/// Where the jail's root is mounted, inside the VM's run directory (empty on the host: the mount
/// lives in the jail's own mount namespace).
pub fn jail_root(run_dir: &Path) -> PathBuf {
    run_dir.join("jail")
}

/// The jail for `config`'s VMM and the config with jail paths. `kvm`: the VMM uses `/dev/kvm`.
pub fn jail(config: &VmConfig, kvm: bool) -> Result<(JailConfig, VmConfig), VmError> {
    let root = jail_root(&config.run_dir);
    std::fs::create_dir_all(&root).map_err(|e| VmError::Spawn(root.clone(), e))?;
    let mut jail = JailConfig::new(root, &config.run_dir);
    let mut view = config.clone();
    view.run_dir = "/run".into();
    view.images.kernel = "/vm/kernel".into();
    view.images.initramfs = "/vm/initrd".into();
    jail.bind(&config.images.kernel, &view.images.kernel, false);
    jail.bind(&config.images.initramfs, &view.images.initramfs, false);
    jail.bind(
        console_path(&config.run_dir),
        console_path(&view.run_dir),
        true,
    );
    if kvm {
        jail.devices.push("/dev/kvm".into());
    }
    for (index, device) in view.devices.iter_mut().enumerate() {
        match device {
            Device::VhostUserFs { socket, .. } | Device::VhostUserVsock { socket } => {
                let name = socket
                    .file_name()
                    .ok_or_else(|| VmError::DeviceMissing(socket.clone()))?;
                let inside = Path::new("/run").join(name);
                jail.hand_over(socket)?;
                jail.bind(socket.clone(), &inside, true);
                *socket = inside;
            }
            Device::Block { path, read_only } => {
                let inside = PathBuf::from(format!("/vm/disk{index}"));
                jail.bind(path.clone(), &inside, !*read_only);
                if !*read_only {
                    jail.hand_over(path)?;
                }
                *path = inside;
            }
            Device::Net { tap, .. } => {
                jail.devices.push("/dev/net/tun".into());
                jail.tap = Some(JailTap { name: tap.clone() });
            }
        }
    }
    Ok((jail, view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::GuestImages;
    use crate::vm::MacAddr;

    #[test]
    fn every_host_path_gets_a_place_in_the_jail() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"").unwrap();
            p
        };
        let config = VmConfig {
            images: GuestImages {
                kernel: file("vmlinuz"),
                initramfs: file("initramfs.img"),
            },
            cmdline: vec![],
            vcpus: 1,
            memory_mib: 128,
            devices: vec![
                Device::VhostUserVsock {
                    socket: file("vhost-vsock.sock"),
                },
                Device::VhostUserFs {
                    socket: file("virtiofs.sock"),
                    tag: "hull".into(),
                },
                Device::Block {
                    path: file("disk.img"),
                    read_only: true,
                },
                Device::Net {
                    tap: "tap0_hull".into(),
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    netns: "/proc/self/ns/net".into(),
                },
            ],
            run_dir: dir.path().to_owned(),
        };
        let (jail, view) = jail(&config, true).unwrap();
        assert_eq!(view.images.kernel, Path::new("/vm/kernel"));
        assert_eq!(view.run_dir, Path::new("/run"));
        assert_eq!(
            view.devices[0],
            Device::VhostUserVsock {
                socket: "/run/vhost-vsock.sock".into()
            }
        );
        assert!(
            matches!(&view.devices[2], Device::Block { path, read_only: true } if path == Path::new("/vm/disk2"))
        );
        let bound: Vec<_> = jail
            .binds
            .iter()
            .map(|b| (b.host.clone(), b.jail.clone(), b.writable))
            .collect();
        assert!(bound.contains(&(config.images.kernel.clone(), "/vm/kernel".into(), false)));
        assert!(bound.contains(&(
            dir.path().join("console.log"),
            "/run/console.log".into(),
            true
        )));
        assert!(bound.contains(&(
            dir.path().join("virtiofs.sock"),
            "/run/virtiofs.sock".into(),
            true
        )));
        assert!(jail.devices.contains(&PathBuf::from("/dev/kvm")));
        assert!(jail.devices.contains(&PathBuf::from("/dev/net/tun")));
        assert_eq!(jail.tap.as_ref().unwrap().name, "tap0_hull");
        // The sockets now belong to the VMM's uid.
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir.path().join("virtiofs.sock"))
            .unwrap()
            .uid();
        assert_eq!(owner, jail.uid);
        assert!(jail_root(dir.path()).is_dir());
    }
}
