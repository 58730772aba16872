//! Which accelerator a VM gets: hardware KVM when the host's KVM can run a Linux guest, otherwise
//! QEMU's TCG (software emulation: slow, but every feature works).
//!
//! `/dev/kvm` alone does not answer the question. On PVM hosts (nested "Pagetable-based Virtual
//! Machine", module `kvm_pvm`) `/dev/kvm` creates VMs and vCPUs, but guest kernel mode is emulated
//! instruction by instruction and an unmodified Linux kernel stops early with an emulation
//! failure. Hardware KVM shows as the `kvm_intel` or `kvm_amd` module with the CPU's `vmx` or `svm`
//! flag.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An accelerator for the QEMU backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulator.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// An accelerator name that is neither `kvm` nor `tcg`.
#[derive(Debug, thiserror::Error)]
#[error("unknown accelerator {0:?} (expected kvm, tcg or auto)")]
pub struct UnknownAccel(String);

impl FromStr for Accel {
    type Err = UnknownAccel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(UnknownAccel(other.to_owned())),
        }
    }
}

/// The accelerator chosen, and why, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The choice.
    pub accel: Accel,
    /// Why.
    pub reason: String,
}

/// What the host offers, as read from `/dev/kvm`, `/sys/module` and `/proc/cpuinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostProbe {
    /// `/dev/kvm` exists and opens read-write.
    pub kvm_device: bool,
    /// Loaded KVM modules (`kvm_intel`, `kvm_amd`, `kvm_pvm`).
    pub kvm_modules: Vec<String>,
    /// The CPU advertises `vmx` or `svm`.
    pub cpu_virt_flag: bool,
}

/// Where [`HostProbe::read`] looks; tests point it at a fake tree.
#[derive(Debug, Clone)]
pub struct ProbePaths {
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// `/sys/module`.
    pub sys_module: PathBuf,
    /// `/proc/cpuinfo`.
    pub cpuinfo: PathBuf,
}

impl Default for ProbePaths {
    fn default() -> Self {
        Self {
            kvm_device: "/dev/kvm".into(),
            sys_module: "/sys/module".into(),
            cpuinfo: "/proc/cpuinfo".into(),
        }
    }
}

const KVM_MODULES: [&str; 3] = ["kvm_intel", "kvm_amd", "kvm_pvm"];

impl HostProbe {
    /// Reads the host. Missing files read as "not there".
    pub fn read(paths: &ProbePaths) -> Self {
        let kvm_device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths.kvm_device)
            .is_ok();
        let kvm_modules = KVM_MODULES
            .iter()
            .filter(|m| paths.sys_module.join(m).is_dir())
            .map(|m| (*m).to_owned())
            .collect();
        let cpuinfo = std::fs::read_to_string(&paths.cpuinfo).unwrap_or_default();
        Self {
            kvm_device,
            kvm_modules,
            cpu_virt_flag: cpu_has_virt_flag(&cpuinfo),
        }
    }
}

fn cpu_has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(|l| l.split_ascii_whitespace())
        .any(|f| f == "vmx" || f == "svm")
}

/// Picks the accelerator for `probe`.
pub fn choose(probe: &HostProbe) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    if !probe.kvm_device {
        return tcg("/dev/kvm is missing or not accessible".into());
    }
    let has = |m: &str| probe.kvm_modules.iter().any(|x| x == m);
    if has("kvm_pvm") && !has("kvm_intel") && !has("kvm_amd") {
        return tcg(
            "/dev/kvm is PVM (module kvm_pvm, no VT-x/AMD-V): it cannot run an unmodified Linux guest"
                .into(),
        );
    }
    let hardware = ["kvm_intel", "kvm_amd"].into_iter().find(|m| has(m));
    match hardware {
        Some(module) if probe.cpu_virt_flag => AccelChoice {
            accel: Accel::Kvm,
            reason: format!("/dev/kvm is hardware virtualization ({module}, CPU has vmx/svm)"),
        },
        Some(module) => tcg(format!(
            "{module} is loaded but the CPU does not advertise vmx/svm"
        )),
        None => {
            tcg("/dev/kvm exists but no hardware KVM module (kvm_intel, kvm_amd) is loaded".into())
        }
    }
}

/// The accelerator for this host: `HULL_ACCEL=kvm|tcg` forces one, otherwise [`choose`] decides.
pub fn detect() -> Result<AccelChoice, UnknownAccel> {
    match std::env::var("HULL_ACCEL").ok().as_deref() {
        None | Some("" | "auto") => Ok(choose(&HostProbe::read(&ProbePaths::default()))),
        Some(forced) => Ok(AccelChoice {
            accel: forced.parse()?,
            reason: "forced by HULL_ACCEL".into(),
        }),
    }
}

/// The host's TSC frequency in kHz, from `/proc/cpuinfo` (`cpu MHz`), if it says.
pub fn host_tsc_khz(cpuinfo: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(cpuinfo).ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let khz = (mhz * 1000.0).round() as u64;
    (khz > 0).then_some(khz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(kvm_device: bool, modules: &[&str], virt: bool) -> HostProbe {
        HostProbe {
            kvm_device,
            kvm_modules: modules.iter().map(|m| (*m).to_owned()).collect(),
            cpu_virt_flag: virt,
        }
    }

    #[test]
    fn hardware_kvm_is_chosen_when_vtx_or_amdv_is_there() {
        assert_eq!(choose(&probe(true, &["kvm_intel"], true)).accel, Accel::Kvm);
        assert_eq!(choose(&probe(true, &["kvm_amd"], true)).accel, Accel::Kvm);
    }

    #[test]
    fn pvm_falls_back_to_tcg_and_says_why() {
        let c = choose(&probe(true, &["kvm_pvm"], false));
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("PVM"), "{}", c.reason);
    }

    #[test]
    fn no_device_or_no_hardware_module_means_tcg() {
        assert_eq!(
            choose(&probe(false, &["kvm_intel"], true)).accel,
            Accel::Tcg
        );
        assert_eq!(choose(&probe(true, &[], true)).accel, Accel::Tcg);
        assert_eq!(
            choose(&probe(true, &["kvm_intel"], false)).accel,
            Accel::Tcg
        );
    }

    #[test]
    fn probe_reads_a_fake_host_tree() {
        let root = tempfile::tempdir().unwrap();
        let paths = ProbePaths {
            kvm_device: root.path().join("kvm"),
            sys_module: root.path().join("module"),
            cpuinfo: root.path().join("cpuinfo"),
        };
        std::fs::create_dir_all(paths.sys_module.join("kvm_pvm")).unwrap();
        std::fs::write(&paths.kvm_device, b"").unwrap();
        std::fs::write(
            &paths.cpuinfo,
            "processor\t: 0\ncpu MHz\t\t: 2596.128\nflags\t\t: fpu sse2 hypervisor\n",
        )
        .unwrap();
        let p = HostProbe::read(&paths);
        assert_eq!(p, probe(true, &["kvm_pvm"], false));
        assert_eq!(choose(&p).accel, Accel::Tcg);
        assert_eq!(host_tsc_khz(&paths.cpuinfo), Some(2_596_128));

        std::fs::create_dir_all(paths.sys_module.join("kvm_intel")).unwrap();
        std::fs::write(&paths.cpuinfo, "flags\t\t: fpu vmx sse2\n").unwrap();
        let p = HostProbe::read(&paths);
        assert_eq!(choose(&p).accel, Accel::Kvm);
        assert_eq!(host_tsc_khz(&paths.cpuinfo), None);
    }

    #[test]
    fn accel_names_parse() {
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("xen".parse::<Accel>().is_err());
    }
}
