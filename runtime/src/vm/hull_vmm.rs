//! The hull-vmm backend: hull's own KVM VMM (`vmm/`), the fast path where the host has hardware
//! KVM. It runs as one `hull-vmm` process per pod, like QEMU, and looks the same from outside:
//! console in `<run_dir>/console.log`, its log in `<run_dir>/vmm.log`, vsock on the hybrid unix
//! socket `<run_dir>/vsock/vsock.sock` ([`vsock_socket`], served in process: no vhost-user
//! daemon; [`Vm::vsock_uds`] names it), a guest reboot or stop ends the process with status 0.
//! Like QEMU it runs in the VMM jail ([`HullVmm::jailed`], [`super::jailed`]); its socket
//! directory `<run_dir>/vsock/` is then the jail's `/run/vsock/`, so the host path is the same.
//!
//! Devices: `Vsock` is hull-vmm's in-process vsock (no backend process: hull-vmm serves it, so
//! `VhostUserVsock` is refused); `VhostUserFs` is attached through hull-vmm's vhost-user
//! frontend to the pod's virtiofsd socket (guest RAM is a shared memfd, as with QEMU); `Net`
//! becomes hull-vmm's virtio-net on the named tap, which hull-vmm creates (or attaches to) in
//! the pod's network namespace, where the process is started; block is not in hull-vmm yet and
//! is refused with that reason, as is a second vsock or fs device.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::accel::{self, HostProbe, ProbePaths};
use super::jailed::{self, JailSettings, Jailable};
use super::process::VmmProcess;
use super::{balloon, Device, Hypervisor, Vm, VmConfig, VmError};

/// The binary looked up next to the running executable, then on `PATH`, unless `HULL_VMM`
/// names another.
pub const DEFAULT_BINARY: &str = "hull-vmm";

/// Where a jailed hull-vmm's binary is bound (read-only), and run from.
pub const JAILED_BINARY: &str = "/vm/hull-vmm";

/// Kernel command-line words every hull guest gets from this backend (`reboot=k`: the guest's
/// reboot is an i8042 reset, which ends hull-vmm cleanly).
pub const BASE_CMDLINE: &[&str] = &["console=ttyS0", "reboot=k", "panic=-1", "quiet"];

/// The directory hull-vmm creates its vsock socket in: the VM's own (mode 0700; the VMM's uid
/// owns it when jailed), since hull-vmm makes its listener itself and, jailed, can write nowhere
/// else the host sees.
pub fn vsock_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("vsock")
}

/// The hybrid vsock socket of a VM run by hull-vmm (`<run_dir>/vsock/vsock.sock`). A guest's
/// connection to host port P goes to this path with `_P` appended.
pub fn vsock_socket(run_dir: &Path) -> PathBuf {
    vsock_dir(run_dir).join("vsock.sock")
}

/// Whether hull-vmm can run a production guest on this host: only with hardware KVM (a PVM
/// `/dev/kvm` runs hull-vmm's test guests, not an unmodified Linux). `Err` carries the reason.
pub fn usable() -> Result<String, String> {
    let choice = accel::choose(&HostProbe::read(&ProbePaths::default()));
    match choice.accel {
        accel::Accel::Kvm => Ok(choice.reason),
        accel::Accel::Tcg => Err(choice.reason),
    }
}

/// Starts VMs with hull-vmm.
#[derive(Debug, Clone)]
pub struct HullVmm {
    binary: PathBuf,
    extra_args: Vec<OsString>,
    jail: JailSettings,
}

impl HullVmm {
    /// A backend using `binary` (a path, or a name looked up on `PATH`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            extra_args: Vec::new(),
            jail: JailSettings::default(),
        }
    }

    /// `HULL_VMM`, else `hull-vmm` next to the running executable, else on `PATH`.
    pub fn for_host() -> Self {
        if let Some(b) = std::env::var_os("HULL_VMM") {
            return Self::new(b);
        }
        let sibling = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join(DEFAULT_BINARY)))
            .filter(|p| p.is_file());
        Self::new(sibling.unwrap_or_else(|| DEFAULT_BINARY.into()))
    }

    /// Extra hull-vmm arguments for every VM (e.g. `--cpuid-clear cx16` for a test kernel).
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The binary, resolved on `PATH` when it is a bare name.
    pub fn resolve_binary(&self) -> Result<PathBuf, VmError> {
        let b = &self.binary;
        let found = if b.components().count() > 1 {
            b.is_file().then(|| b.clone())
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(b))
                    .find(|c| c.is_file())
            })
        };
        found.ok_or_else(|| VmError::VmmMissing(b.clone()))
    }

    /// The argument list (without the binary) for `config`.
    pub fn args(&self, config: &VmConfig) -> Result<Vec<OsString>, VmError> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_owned());
        push(&"--kernel");
        push(&config.images.kernel);
        push(&"--initrd");
        push(&config.images.initramfs);
        push(&"--vcpus");
        push(&config.vcpus.to_string());
        push(&"--mem-mib");
        push(&config.memory_mib.to_string());
        // No `--console`: hull-vmm writes the console to its stdout, which the runtime keeps in
        // a bounded log (see `super::output`).
        let mut words: Vec<String> = BASE_CMDLINE.iter().map(|w| (*w).to_owned()).collect();
        words.extend(config.cmdline.iter().cloned());
        push(&"--cmdline");
        push(&words.join(" "));
        let mut vsock = false;
        let mut fs = false;
        for device in &config.devices {
            let unsupported = |what: &str, path: &Path| {
                VmError::Spawn(
                    path.to_owned(),
                    std::io::Error::new(
                        std::io::ErrorKind::Unsupported,
                        format!("{what} is not supported by hull-vmm yet (use the QEMU backend)"),
                    ),
                )
            };
            match device {
                Device::Vsock if !vsock => {
                    vsock = true;
                    push(&"--vsock-uds");
                    push(&vsock_socket(&config.run_dir));
                }
                Device::Vsock => return Err(unsupported("a second vsock device", &config.run_dir)),
                Device::VhostUserVsock { socket } => {
                    return Err(VmError::InvalidDevice(format!(
                        "hull-vmm serves vsock itself (Device::Vsock): no vhost-user backend \
                         such as {}",
                        socket.display()
                    )))
                }
                Device::VhostUserFs { socket, tag } if !fs => {
                    fs = true;
                    push(&"--fs-socket");
                    push(socket);
                    push(&"--fs-tag");
                    push(tag);
                }
                Device::VhostUserFs { socket, .. } => {
                    return Err(unsupported("a second virtio-fs device", socket))
                }
                // One balloon per VM (validated); its target comes through the control socket
                // (`super::balloon`).
                Device::Balloon => {
                    push(&"--balloon");
                    push(&"--api-sock");
                    push(&balloon::api_socket(&config.run_dir));
                }
                // One NIC per VM (validated); the process runs in the tap's netns (see start).
                Device::Net { tap, mac, .. } => {
                    push(&"--net-tap");
                    push(tap);
                    push(&"--net-mac");
                    push(&mac.to_string());
                }
            }
        }
        args.extend(self.extra_args.iter().cloned());
        Ok(args)
    }
}

impl Hypervisor for HullVmm {
    fn name(&self) -> String {
        "hull-vmm".into()
    }

    fn serves_vsock(&self) -> bool {
        true
    }

    fn as_hull_vmm(&self) -> Option<&HullVmm> {
        Some(self)
    }

    fn start(&self, config: &VmConfig) -> Result<Box<dyn Vm>, VmError> {
        self.launch(config, None)
    }
}

/// The descriptors a jailed restore gets the snapshot's `state` and `memory` files at (opened
/// by the jailer as root: the template's files are root-only).
pub const JAILED_SNAPSHOT_FDS: [i32; 2] = [3, 4];

/// Where hull-vmm finds the snapshot it restores.
#[derive(Debug, Clone, Copy)]
pub enum SnapshotAt<'a> {
    /// In this directory (unjailed: it opens the files itself).
    Dir(&'a Path),
    /// At the descriptors [`JAILED_SNAPSHOT_FDS`] (jailed).
    Fds,
}

impl HullVmm {
    /// The extra arguments every VM gets (they shape the VM: part of a template's key).
    pub fn extra_args(&self) -> Vec<String> {
        self.extra_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Boots `config` unjailed with its control socket (to snapshot it: templates, whose guest
    /// runs nothing but hull's own kernel and agent); returns the VM and the socket's path. The
    /// socket is the one a balloon gets ([`balloon::api_socket`]): with a `Balloon` device it is
    /// already there.
    pub fn start_with_api(&self, config: &VmConfig) -> Result<(Box<dyn Vm>, PathBuf), VmError> {
        let mut hv = self.clone();
        hv.jail = JailSettings::default();
        let api = balloon::api_socket(&config.run_dir);
        if !config.devices.contains(&Device::Balloon) {
            jailed::private_dir(&balloon::control_dir(&config.run_dir))?;
            hv.extra_args.push("--api-sock".into());
            hv.extra_args.push(api.as_os_str().to_owned());
        }
        Ok((hv.start(config)?, api))
    }

    /// The arguments restoring the snapshot `at` with `config`'s host-side ends (its sizing and
    /// images are the snapshot's; devices must match it); `memory_checked` when that memory
    /// file's checksum is known to match (`crate::template::verified`).
    pub fn restore_args(
        &self,
        at: SnapshotAt<'_>,
        memory_checked: bool,
        config: &VmConfig,
    ) -> Result<Vec<OsString>, VmError> {
        let mut args: Vec<OsString> = match at {
            SnapshotAt::Dir(dir) => vec!["--restore".into(), dir.into()],
            SnapshotAt::Fds => {
                let [state, memory] = JAILED_SNAPSHOT_FDS;
                vec!["--restore-fds".into(), format!("{state},{memory}").into()]
            }
        };
        if memory_checked {
            args.push("--memory-checked".into());
        }
        for device in &config.devices {
            match device {
                Device::Vsock => {
                    args.push("--vsock-uds".into());
                    args.push(vsock_socket(&config.run_dir).into());
                }
                Device::VhostUserFs { socket, .. } => {
                    args.push("--fs-socket".into());
                    args.push(socket.into());
                }
                Device::Net { tap, .. } => {
                    args.push("--net-tap".into());
                    args.push(tap.into());
                }
                // The balloon is the snapshot's; its control socket is this VM's.
                Device::Balloon => {
                    args.push("--api-sock".into());
                    args.push(balloon::api_socket(&config.run_dir).into());
                }
                Device::VhostUserVsock { .. } => {
                    return Err(VmError::InvalidDevice(format!(
                        "{device:?} cannot be restored from a snapshot"
                    )))
                }
            }
        }
        Ok(args)
    }

    /// Starts hull-vmm restoring the snapshot in `snapshot` (a template) with `config`'s
    /// host-side ends, jailed like [`Hypervisor::start`]; a jailed one gets the snapshot's two
    /// files as descriptors the jailer opens as root ([`JAILED_SNAPSHOT_FDS`]), so they may be
    /// root-only. `memory_checked`: see [`HullVmm::restore_args`].
    pub fn restore(
        &self,
        snapshot: &Path,
        memory_checked: bool,
        config: &VmConfig,
    ) -> Result<Box<dyn Vm>, VmError> {
        self.launch(config, Some((snapshot, memory_checked)))
    }

    /// Spawns hull-vmm for `config`, booting it or (with `snapshot`) restoring that snapshot;
    /// jailed when a jailer is configured, with the snapshot's two files passed as descriptors.
    fn launch(
        &self,
        config: &VmConfig,
        snapshot: Option<(&Path, bool)>,
    ) -> Result<Box<dyn Vm>, VmError> {
        config.validate()?;
        let binary = self.resolve_binary()?;
        let vsock = config.devices.contains(&Device::Vsock);
        // The arguments for `config` as the VMM sees it, with the snapshot `at`.
        let args = |config: &VmConfig, at: SnapshotAt<'_>| match snapshot {
            None => self.args(config),
            Some((_, checked)) => self.restore_args(at, checked, config),
        };
        let process = match &self.jail.jailer {
            None => {
                let args = args(
                    config,
                    SnapshotAt::Dir(snapshot.map_or(Path::new(""), |s| s.0)),
                )?;
                if vsock {
                    jailed::private_dir(&vsock_dir(&config.run_dir))?;
                }
                if config.devices.contains(&Device::Balloon) {
                    jailed::private_dir(&balloon::control_dir(&config.run_dir))?;
                }
                VmmProcess::spawn(&binary, args, &config.run_dir, config.netns(), "hull-vmm")?
            }
            Some(jailer) => {
                let (mut jail, view) = self.jail(config, &binary)?;
                if let Some((snapshot, _)) = snapshot {
                    let names = [crate::template::STATE_FILE, crate::template::MEMORY_FILE];
                    for (name, fd) in names.into_iter().zip(JAILED_SNAPSHOT_FDS) {
                        jail.files.push(crate::jail::JailFile {
                            host: snapshot.join(name),
                            fd,
                        });
                    }
                }
                VmmProcess::spawn_jailed(
                    Path::new(JAILED_BINARY),
                    args(&view, SnapshotAt::Fds)?,
                    &config.run_dir,
                    config.netns(),
                    Some((jailer, &jail)),
                    "hull-vmm",
                )?
            }
        };
        Ok(Box::new(if vsock {
            process.with_vsock_uds(vsock_socket(&config.run_dir))
        } else {
            process
        }))
    }

    /// The jail for `config`'s VMM and the config as the jail shows it: [`jailed::jail`] with
    /// `/dev/kvm`, this backend's cgroups, and `binary` at [`JAILED_BINARY`] (unlike QEMU,
    /// hull-vmm is often not under `/usr`: beside the shim, in a target directory). With vsock,
    /// the socket directory is bound as `/run/vsock`, so [`vsock_socket`] of the jail's `/run` is
    /// the socket inside.
    pub fn jail(
        &self,
        config: &VmConfig,
        binary: &Path,
    ) -> Result<(crate::jail::JailConfig, VmConfig), VmError> {
        let (mut jail, view) = jailed::jail(config, true)?;
        jail.cgroups.clone_from(&self.jail.cgroups);
        jail.bind(binary, JAILED_BINARY, false);
        if config.devices.contains(&Device::Vsock) {
            let inside = jailed::socket_dir(&mut jail, &vsock_dir(&config.run_dir))?;
            debug_assert_eq!(inside, vsock_dir(&view.run_dir));
        }
        if config.devices.contains(&Device::Balloon) {
            let inside = jailed::socket_dir(&mut jail, &balloon::control_dir(&config.run_dir))?;
            debug_assert_eq!(inside, balloon::control_dir(&view.run_dir));
        }
        Ok((jail, view))
    }
}

impl Jailable for HullVmm {
    fn jail_settings(&mut self) -> &mut JailSettings {
        &mut self.jail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::GuestImages;

    fn config(devices: Vec<Device>) -> VmConfig {
        VmConfig {
            images: GuestImages::in_dir(Path::new("/img")),
            cmdline: vec!["hull.selftest=1".into()],
            vcpus: 2,
            memory_mib: 256,
            devices,
            run_dir: "/run/hull/p1".into(),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn arguments_carry_images_sizing_console_and_cmdline() {
        let args = strings(HullVmm::new("hull-vmm").args(&config(vec![])).unwrap());
        assert_eq!(
            args.join(" "),
            "--kernel /img/vmlinuz --initrd /img/initramfs.img --vcpus 2 --mem-mib 256 \
             --cmdline console=ttyS0 reboot=k panic=-1 quiet \
             hull.selftest=1"
        );
    }

    #[test]
    fn vsock_is_served_in_process_on_the_run_dir_socket() {
        let hv = HullVmm::new("hull-vmm").with_args(["--cpuid-clear", "cx16"]);
        let args = strings(hv.args(&config(vec![Device::Vsock])).unwrap());
        let joined = args.join(" ");
        assert!(
            joined.contains("--vsock-uds /run/hull/p1/vsock/vsock.sock"),
            "{joined}"
        );
        assert!(joined.ends_with("--cpuid-clear cx16"), "{joined}");
    }

    #[test]
    fn the_balloon_is_a_flag_with_a_control_socket() {
        let args = strings(
            HullVmm::new("hull-vmm")
                .args(&config(vec![Device::Balloon]))
                .unwrap(),
        );
        assert!(
            args.join(" ")
                .ends_with("--balloon --api-sock /run/hull/p1/control/api.sock"),
            "{args:?}"
        );
    }

    #[test]
    fn virtio_fs_goes_to_the_pods_virtiofsd_socket() {
        let fs = Device::VhostUserFs {
            socket: "/run/hull/p1/virtiofs.sock".into(),
            tag: "hull".into(),
        };
        let args = strings(HullVmm::new("hull-vmm").args(&config(vec![fs])).unwrap());
        let joined = args.join(" ");
        assert!(
            joined.ends_with("--fs-socket /run/hull/p1/virtiofs.sock --fs-tag hull"),
            "{joined}"
        );
    }

    #[test]
    fn a_nic_is_the_named_tap_with_the_pods_mac() {
        let nic = Device::Net {
            tap: "hull0".into(),
            mac: "02:42:0a:58:00:05".parse().unwrap(),
            netns: "/var/run/netns/cni-1".into(),
        };
        let args = strings(HullVmm::new("hull-vmm").args(&config(vec![nic])).unwrap());
        let joined = args.join(" ");
        assert!(
            joined.ends_with("--net-tap hull0 --net-mac 02:42:0a:58:00:05"),
            "{joined}"
        );
    }

    /// A restore names only the host ends: the pod's tap (the MAC is the snapshot's; the agent
    /// gives the guest the pod's) and the balloon's control socket (issue 19).
    #[test]
    fn a_restore_takes_the_pods_tap_and_the_balloons_socket() {
        let nic = Device::Net {
            tap: "tap0_hull".into(),
            mac: "02:42:0a:58:00:05".parse().unwrap(),
            netns: "/var/run/netns/cni-1".into(),
        };
        let c = config(vec![Device::Vsock, nic, Device::Balloon]);
        let args = strings(
            HullVmm::new("hull-vmm")
                .restore_args(SnapshotAt::Dir(Path::new("/t/k")), false, &c)
                .unwrap(),
        );
        assert_eq!(
            args.join(" "),
            "--restore /t/k --vsock-uds /run/hull/p1/vsock/vsock.sock --net-tap tap0_hull \
             --api-sock /run/hull/p1/control/api.sock"
        );
        let vhost = config(vec![Device::VhostUserVsock {
            socket: "/v".into(),
        }]);
        assert!(HullVmm::new("hull-vmm")
            .restore_args(SnapshotAt::Fds, true, &vhost)
            .is_err());
    }

    #[test]
    fn devices_hull_vmm_lacks_are_refused_with_the_reason() {
        let fs = Device::VhostUserFs {
            socket: "/s".into(),
            tag: "hull".into(),
        };
        {
            let devices = vec![fs.clone(), fs];
            let err = HullVmm::new("hull-vmm").args(&config(devices)).unwrap_err();
            let text = format!("{err} {}", std::error::Error::source(&err).unwrap());
            assert!(text.contains("not supported by hull-vmm"), "{text}");
        }
        let vhost = Device::VhostUserVsock {
            socket: "/run/hull/p1/vhost-vsock.sock".into(),
        };
        let err = HullVmm::new("hull-vmm")
            .args(&config(vec![vhost]))
            .unwrap_err();
        assert!(err.to_string().contains("serves vsock itself"), "{err}");
        let err = HullVmm::new("hull-vmm")
            .args(&config(vec![Device::Vsock, Device::Vsock]))
            .unwrap_err();
        let text = format!("{err} {}", std::error::Error::source(&err).unwrap());
        assert!(text.contains("a second vsock device"), "{text}");
    }

    #[test]
    fn jailed_it_sees_its_files_and_sockets_at_jail_paths() {
        use std::os::unix::fs::MetadataExt;
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
                Device::Vsock,
                Device::VhostUserFs {
                    socket: file("virtiofs.sock"),
                    tag: "hull".into(),
                },
            ],
            run_dir: dir.path().to_owned(),
        };
        let hv = HullVmm::new("hull-vmm")
            .jailed("/usr/local/bin/hull-jailer")
            .in_cgroups(vec!["/sys/fs/cgroup/pod/vmm".into()]);
        let (jail, view) = hv.jail(&config, Path::new("/opt/hull/hull-vmm")).unwrap();
        let args = strings(hv.args(&view).unwrap()).join(" ");
        assert!(
            args.starts_with(
                "--kernel /vm/kernel --initrd /vm/initrd --vcpus 1 --mem-mib 128 \
                 --cmdline "
            ),
            "{args}"
        );
        assert!(
            args.contains("--vsock-uds /run/vsock/vsock.sock --fs-socket /run/virtiofs.sock"),
            "{args}"
        );
        assert_eq!(jail.cgroups, [PathBuf::from("/sys/fs/cgroup/pod/vmm")]);
        assert!(jail.devices.contains(&PathBuf::from("/dev/kvm")));
        let bound: Vec<_> = jail
            .binds
            .iter()
            .map(|b| (b.host.clone(), b.jail.clone(), b.writable))
            .collect();
        assert!(bound.contains(&(vsock_dir(dir.path()), "/run/vsock".into(), true)));
        assert!(bound.contains(&("/opt/hull/hull-vmm".into(), JAILED_BINARY.into(), false)));
        let meta = std::fs::metadata(vsock_dir(dir.path())).unwrap();
        assert_eq!(meta.uid(), jail.uid);
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(
            vsock_socket(dir.path()),
            dir.path().join("vsock/vsock.sock"),
            "the host's path, jailed or not"
        );
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = HullVmm::new("/nonexistent/hull-vmm")
            .resolve_binary()
            .unwrap_err();
        assert!(matches!(err, VmError::VmmMissing(_)));
    }
}
