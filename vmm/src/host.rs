//! What the host's `/dev/kvm` is: hardware virtualization (VT-x/AMD-V), PVM, or nothing usable.
//! hull-vmm runs a production Linux guest only on hardware KVM; on PVM it runs small test guests
//! and the test kernel variant (see `vmm/README.md`).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// The kind of KVM the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmKind {
    /// `kvm_intel` or `kvm_amd` on a CPU with vmx/svm.
    Hardware,
    /// `kvm_pvm`: VMs run, guest kernel mode is emulated (no production Linux guest).
    Pvm,
    /// No usable `/dev/kvm`.
    None,
}

/// The answer, with the reason in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKvm {
    /// The kind.
    pub kind: KvmKind,
    /// Why.
    pub reason: String,
}

/// Where [`check_at`] looks (tests point it at a fake tree).
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// `/dev/kvm`.
    pub kvm: PathBuf,
    /// `/sys/module`.
    pub sys_module: PathBuf,
    /// `/proc/cpuinfo`.
    pub cpuinfo: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            kvm: "/dev/kvm".into(),
            sys_module: "/sys/module".into(),
            cpuinfo: "/proc/cpuinfo".into(),
        }
    }
}

/// Checks the real host.
pub fn check() -> HostKvm {
    check_at(&HostPaths::default())
}

fn module(p: &Path, name: &str) -> bool {
    p.join(name).is_dir()
}

/// Checks the host described by `paths`.
pub fn check_at(paths: &HostPaths) -> HostKvm {
    let answer = |kind, reason: String| HostKvm { kind, reason };
    match OpenOptions::new().read(true).write(true).open(&paths.kvm) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return answer(
                KvmKind::None,
                format!("{} does not exist", paths.kvm.display()),
            );
        }
        Err(e) => {
            return answer(
                KvmKind::None,
                format!("{} cannot be opened read-write: {e}", paths.kvm.display()),
            );
        }
        Ok(_) => {}
    }
    let cpuinfo = std::fs::read_to_string(&paths.cpuinfo).unwrap_or_default();
    let virt = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .flat_map(str::split_ascii_whitespace)
        .any(|f| f == "vmx" || f == "svm");
    let hw = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| module(&paths.sys_module, m));
    match hw {
        Some(m) if virt => answer(
            KvmKind::Hardware,
            format!("/dev/kvm is hardware virtualization ({m}, CPU has vmx/svm)"),
        ),
        _ if module(&paths.sys_module, "kvm_pvm") => answer(
            KvmKind::Pvm,
            "/dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V): guest kernel mode is emulated, a \
             production Linux guest cannot boot"
                .into(),
        ),
        Some(m) => answer(
            KvmKind::None,
            format!("{m} is loaded but the CPU does not advertise vmx/svm"),
        ),
        None => answer(
            KvmKind::None,
            "/dev/kvm exists but no KVM module (kvm_intel, kvm_amd, kvm_pvm) is loaded".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(modules: &[&str], flags: &str, kvm: bool) -> (tempfile::TempDir, HostPaths) {
        let root = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            kvm: root.path().join("kvm"),
            sys_module: root.path().join("module"),
            cpuinfo: root.path().join("cpuinfo"),
        };
        std::fs::create_dir_all(&paths.sys_module).unwrap();
        for m in modules {
            std::fs::create_dir_all(paths.sys_module.join(m)).unwrap();
        }
        std::fs::write(&paths.cpuinfo, format!("flags\t: {flags}\n")).unwrap();
        if kvm {
            std::fs::write(&paths.kvm, b"").unwrap();
        }
        (root, paths)
    }

    #[test]
    fn tells_hardware_from_pvm_from_nothing() {
        let (_r, p) = tree(&["kvm_intel"], "fpu vmx", true);
        assert_eq!(check_at(&p).kind, KvmKind::Hardware);
        let (_r, p) = tree(&["kvm_pvm"], "fpu", true);
        let c = check_at(&p);
        assert_eq!(c.kind, KvmKind::Pvm);
        assert!(c.reason.contains("PVM"));
        let (_r, p) = tree(&["kvm_intel"], "fpu vmx", false);
        assert_eq!(check_at(&p).kind, KvmKind::None);
        let (_r, p) = tree(&[], "fpu vmx", true);
        assert_eq!(check_at(&p).kind, KvmKind::None);
    }
}
