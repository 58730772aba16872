//! The QEMU backend: `qemu-system-x86_64 -M microvm` from the distribution, with KVM where the
//! host's KVM can run a Linux guest and TCG everywhere else.

pub mod cmdline;

use std::path::{Path, PathBuf};

use super::accel::{self, Accel};
use super::jailed::{self, JailSettings, Jailable};
use super::process::VmmProcess;
use super::{balloon, Device, Hypervisor, Vm, VmConfig, VmError};
pub use cmdline::HostShape;

/// The binary looked up on `PATH` unless `HULL_QEMU` names another.
pub const DEFAULT_BINARY: &str = "qemu-system-x86_64";

/// Starts VMs with QEMU.
#[derive(Debug, Clone)]
pub struct Qemu {
    binary: PathBuf,
    host: HostShape,
    jail: JailSettings,
}

impl Qemu {
    /// A backend using `binary` (a path, or a name looked up on `PATH`) on a host shaped as `host`.
    pub fn new(binary: impl Into<PathBuf>, host: HostShape) -> Self {
        Self {
            binary: binary.into(),
            host,
            jail: JailSettings::default(),
        }
    }

    /// A backend for this host with the given accelerator: `HULL_QEMU` or [`DEFAULT_BINARY`],
    /// the host's CPU count and TSC frequency.
    pub fn for_host(accel: Accel) -> Self {
        let binary = std::env::var_os("HULL_QEMU").map_or(DEFAULT_BINARY.into(), PathBuf::from);
        let host_cpus = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        let tsc_khz = accel::host_tsc_khz(Path::new("/proc/cpuinfo"));
        Self::new(
            binary,
            HostShape {
                accel,
                host_cpus,
                tsc_khz,
            },
        )
    }

    /// The accelerator this backend uses.
    pub fn accel(&self) -> Accel {
        self.host.accel
    }

    /// The binary, resolved on `PATH` when it is a bare name.
    pub fn resolve_binary(&self) -> Result<PathBuf, VmError> {
        resolve(&self.binary).ok_or_else(|| VmError::VmmMissing(self.binary.clone()))
    }
}

fn resolve(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

impl Hypervisor for Qemu {
    fn name(&self) -> String {
        format!("qemu-{}", self.host.accel)
    }

    fn start(&self, config: &VmConfig) -> Result<Box<dyn Vm>, VmError> {
        config.validate()?;
        if config.devices.contains(&Device::Vsock) {
            return Err(VmError::InvalidDevice(
                "QEMU serves vsock only through a vhost-user backend (VhostUserVsock)".into(),
            ));
        }
        let binary = self.resolve_binary()?;
        let balloon = config.devices.contains(&Device::Balloon);
        let control = balloon::control_dir(&config.run_dir);
        let process = match &self.jail.jailer {
            None if balloon => {
                jailed::private_dir(&control)?;
                VmmProcess::spawn(
                    &binary,
                    cmdline::build(config, self.host),
                    &config.run_dir,
                    config.netns(),
                    &self.name(),
                )?
            }
            None => VmmProcess::spawn(
                &binary,
                cmdline::build(config, self.host),
                &config.run_dir,
                config.netns(),
                &self.name(),
            )?,
            Some(jailer) => {
                let (mut jail, view) = jailed::jail(config, self.host.accel == Accel::Kvm)?;
                jail.cgroups.clone_from(&self.jail.cgroups);
                if balloon {
                    // QEMU creates its QMP socket in the jail's /run/control.
                    jailed::socket_dir(&mut jail, &control)?;
                }
                VmmProcess::spawn_jailed(
                    &binary,
                    cmdline::build(&view, self.host),
                    &config.run_dir,
                    config.netns(),
                    Some((jailer, &jail)),
                    &self.name(),
                )?
            }
        };
        Ok(Box::new(process))
    }
}

impl Jailable for Qemu {
    fn jail_settings(&mut self) -> &mut JailSettings {
        &mut self.jail
    }
}
