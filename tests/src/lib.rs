//! Shared helpers of hull's VM tests: where the guest images are, which backend to use, and the
//! rule for missing parts (skip loudly on a developer machine, fail under `CI=true`).

pub mod containerd;
pub mod core_pod;
pub mod cri;
pub mod cri_stream;
pub mod crio;
pub mod data;
pub mod docker;
pub mod engines;
pub mod faults;
pub mod host_tools;
pub mod netns;
pub mod pod;
pub mod podman;
pub mod probe_output;
pub mod rootfs;
pub mod spec;
pub mod stdio;
pub mod sweep;
pub mod tmux;

use std::path::{Path, PathBuf};

use hull_runtime::images::GuestImages;
use hull_runtime::vm::hull_vmm::{self, HullVmm};
use hull_runtime::vm::{accel, qemu::Qemu, Hypervisor, Jailable};

pub use hull_test_support::{skip_or_fail, under_ci};

/// The guest images to test: `HULL_KERNEL`/`HULL_INITRAMFS`, else the installed ones; `None`
/// (after [`skip_or_fail`]) when they are not there.
pub fn guest_images() -> Option<GuestImages> {
    let images = GuestImages::from_env();
    for path in [&images.kernel, &images.initramfs] {
        if !path.is_file() {
            skip_or_fail(&format!(
                "{} is missing; run scripts/test.sh (it builds the images) or the set-up",
                path.display()
            ));
            return None;
        }
    }
    Some(images)
}

/// The QEMU backend for this host (KVM when it can run Linux, else TCG); `None` (after
/// [`skip_or_fail`]) when QEMU is not installed.
pub fn qemu() -> Option<Qemu> {
    let choice = accel::detect().expect("HULL_ACCEL is valid");
    let qemu = Qemu::for_host(choice.accel);
    if let Err(e) = qemu.resolve_binary() {
        skip_or_fail(&format!("no VMM to run a guest: {e}"));
        return None;
    }
    // VMs run jailed, as the shim runs them.
    Some(qemu.jailed(built_jailer()?))
}

/// The built jailer ([`jailer_binary`]); `None` (after [`skip_or_fail`]) when it is not built.
pub fn built_jailer() -> Option<PathBuf> {
    let jailer = jailer_binary();
    if jailer.is_file() {
        return Some(jailer);
    }
    skip_or_fail(&format!(
        "no jailer at {} (run scripts/build.sh)",
        jailer.display()
    ));
    None
}

/// The backend the VM-level tests boot their pods on, and the `hypervisor` key of the test
/// containerd's hull configuration: `HULL_TEST_HYPERVISOR` = `qemu` (the default: KVM where it can
/// run Linux, else TCG), `hull-vmm` (needs hardware KVM: the nested-KVM tier,
/// `scripts/nested-kvm.sh`) or `auto` (hull-vmm where it can run, else QEMU, as the shim decides).
pub fn hypervisor_choice() -> &'static str {
    match std::env::var("HULL_TEST_HYPERVISOR").as_deref() {
        Err(_) | Ok("" | "qemu") => "qemu",
        Ok("hull-vmm") => "hull-vmm",
        Ok("auto") => "auto",
        Ok(other) => panic!("HULL_TEST_HYPERVISOR={other:?}: expected qemu, hull-vmm or auto"),
    }
}

/// The jailed backend [`hypervisor_choice`] names; `None` (after [`skip_or_fail`]) when this host
/// cannot run it.
pub fn hypervisor() -> Option<Box<dyn Hypervisor + Send + Sync>> {
    let vmm = match hypervisor_choice() {
        "hull-vmm" => true,
        "auto" => hull_vmm::usable().is_ok(),
        _ => false,
    };
    if !vmm {
        return qemu().map(|q| Box::new(q) as Box<dyn Hypervisor + Send + Sync>);
    }
    if let Err(reason) = hull_vmm::usable() {
        skip_or_fail(&format!("hull-vmm needs hardware KVM: {reason}"));
        return None;
    }
    let binary = vmm_binary();
    let jailer = jailer_binary();
    for (what, path) in [("hull-vmm", &binary), ("jailer", &jailer)] {
        if !path.is_file() {
            skip_or_fail(&format!(
                "no {what} at {} (run scripts/build.sh)",
                path.display()
            ));
            return None;
        }
    }
    Some(Box::new(HullVmm::new(binary).jailed(jailer)))
}

/// hull-vmm: `HULL_VMM`, else the one `scripts/build.sh` put in `target/hull/bin`.
pub fn vmm_binary() -> PathBuf {
    env_path("HULL_VMM").unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull-vmm")
    })
}

/// The jailer: `HULL_JAILER`, else the one `scripts/build.sh` put in `target/hull/bin`.
pub fn jailer_binary() -> PathBuf {
    env_path("HULL_JAILER").unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull-jailer")
    })
}

/// The hybrid vsock socket of the pod VM whose run directory is `pod_dir`, whichever backend runs
/// it: hull-vmm's own socket, or the vsock backend's (QEMU); `None` while neither exists.
pub fn pod_vsock_uds(pod_dir: &Path) -> Option<PathBuf> {
    [
        hull_runtime::vm::hull_vmm::vsock_socket(pod_dir),
        hull_runtime::vsock::uds_path(pod_dir),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// A path from an environment variable, if set.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// The directories of host cgroup `rel` (a path such as `hull-test/c1`) that exist, in every
/// hierarchy mounted under `/sys/fs/cgroup` (cgroup v1, hybrid or v2).
pub fn host_cgroup_dirs(rel: &std::path::Path) -> Vec<PathBuf> {
    let hierarchies = hull_runtime::host_cgroup::hierarchies().unwrap_or_default();
    hierarchies
        .iter()
        .map(|h| h.mount.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// Asserts that `release` (a container's `uname -r`) names a kernel, and not the host's: the
/// container ran in a VM.
pub fn assert_guest_kernel(release: &str) {
    let host = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("cannot run uname");
    assert!(
        !release.trim().is_empty() && release != host,
        "guest kernel {release:?}, host {host:?}"
    );
}
