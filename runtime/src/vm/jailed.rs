//! A [`VmConfig`] as a jailed VMM sees it (see [`crate::jail`]): what to bind into the jail, and
//! the same config with every path replaced by its place inside. Both backends use it.
//!
//! | host | jail |
//! |---|---|
//! | kernel, initramfs | `/vm/kernel`, `/vm/initrd` (read-only) |
//! | the hull-vmm binary | `/vm/hull-vmm` (read-only; QEMU runs from the bound `/usr`) |
//! | a vhost-user socket `<dir>/<name>` | `/run/<name>` (owned by the VMM's uid) |
//! | `/dev/kvm` (with KVM), `/dev/net/tun` (with a NIC) | device nodes owned by the VMM's uid |
//! | hull-vmm's socket directory `<run_dir>/vsock/` | `/run/vsock/` (owned by the VMM's uid, 0700) |
//!
//! hull-vmm serves vsock itself and creates its listener, so it gets a writable directory (see
//! [`socket_dir`]): it listens on `/run/vsock/vsock.sock`, which the host reaches as
//! `<run_dir>/vsock/vsock.sock` ([`super::hull_vmm::vsock_socket`], the same path unjailed), and
//! connects a guest's connection to host port P to `/run/vsock/vsock.sock_P`, i.e.
//! `<run_dir>/vsock/vsock.sock_P`: a host listener there must let the VMM's uid connect (hand its
//! socket file over, as [`JailConfig::hand_over`] does).

use std::path::{Path, PathBuf};

use super::{Device, VmConfig, VmError};
use crate::jail::{JailConfig, JailTap};

/// How a backend runs its VMMs: jailed through a jailer binary, in given cgroups, or (no jailer)
/// as a plain child. Both backends carry one and get their `jailed`/`in_cgroups` builders from
/// [`Jailable`].
#[derive(Debug, Clone, Default)]
pub struct JailSettings {
    /// The jailer binary; `None`: the VMM runs unjailed.
    pub jailer: Option<PathBuf>,
    /// Cgroup directories (one per hierarchy) the jailer joins before it starts the VMM.
    pub cgroups: Vec<PathBuf>,
}

/// A backend whose VMMs can run jailed: the builders every such backend shares.
pub trait Jailable: Sized {
    /// The backend's jail settings.
    fn jail_settings(&mut self) -> &mut JailSettings;

    /// Runs each VMM in a jail (see [`crate::jail`]) through the jailer binary `jailer`.
    #[must_use]
    fn jailed(mut self, jailer: impl Into<PathBuf>) -> Self {
        self.jail_settings().jailer = Some(jailer.into());
        self
    }

    /// Has each jailed VMM run in these cgroup directories (one per hierarchy): its jailer joins
    /// them before it starts the VMM. Without a jail the VMM stays in its parent's cgroup.
    #[must_use]
    fn in_cgroups(mut self, dirs: Vec<PathBuf>) -> Self {
        self.jail_settings().cgroups = dirs;
        self
    }
}

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
    if kvm {
        jail.devices.push("/dev/kvm".into());
    }
    for device in &mut view.devices {
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
            Device::Net { tap, .. } => {
                jail.devices.push("/dev/net/tun".into());
                jail.tap = Some(JailTap { name: tap.clone() });
            }
            // The VMM's own socket: the backend gives it a directory (see `socket_dir`).
            Device::Vsock => {}
            // In-process in hull-vmm and QEMU: nothing to bind.
            Device::Balloon => {}
        }
    }
    Ok((jail, view))
}

/// Gives the jailed VMM a directory of its own to create sockets in: `host_dir` (created if
/// needed, mode 0700, owned by the VMM's uid) bound read-write at `/run/<name>`, which is
/// returned.
pub fn socket_dir(jail: &mut JailConfig, host_dir: &Path) -> Result<PathBuf, VmError> {
    let name = host_dir
        .file_name()
        .ok_or_else(|| VmError::DeviceMissing(host_dir.to_owned()))?;
    private_dir(host_dir)?;
    jail.hand_over(host_dir)?;
    let inside = Path::new("/run").join(name);
    jail.bind(host_dir, &inside, true);
    Ok(inside)
}

/// Creates `dir` (if needed) with mode 0700.
pub fn private_dir(dir: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let spawn = |e| VmError::Spawn(dir.to_owned(), e);
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(spawn)
        }
        Err(e) => Err(spawn(e)),
    }
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
        let bound: Vec<_> = jail
            .binds
            .iter()
            .map(|b| (b.host.clone(), b.jail.clone(), b.writable))
            .collect();
        assert!(bound.contains(&(config.images.kernel.clone(), "/vm/kernel".into(), false)));
        assert!(
            !bound
                .iter()
                .any(|(_, jail, _)| jail.ends_with("console.log")),
            "the console is the VMM's stdout, not a file it writes"
        );
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

    #[test]
    fn a_socket_dir_is_private_to_the_vmm_and_bound_writable() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let mut jail = JailConfig::new(jail_root(dir.path()), dir.path());
        let host = dir.path().join("vsock");
        std::fs::create_dir(&host).unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
        let inside = socket_dir(&mut jail, &host).unwrap();
        assert_eq!(inside, Path::new("/run/vsock"));
        let last = jail.binds.last().unwrap();
        assert_eq!(
            (&last.host, &last.jail, last.writable),
            (&host, &inside, true)
        );
        let meta = std::fs::metadata(&host).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (jail.uid, jail.gid));
        assert_eq!(meta.mode() & 0o777, 0o700, "tightened when it existed");
    }
}
