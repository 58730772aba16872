//! `hull check`: can this host run hull pods, and with what? One [`Check`] per question, each
//! failure with the fix; the container engines' lines come from [`crate::engines`].

use std::path::{Path, PathBuf};

use hull_guest_image::kconfig;

use crate::shim::config::{HullConfig, HypervisorChoice};
use crate::vm::accel::{self, HostProbe, ProbePaths};
use crate::vm::hull_vmm;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// hull cannot run pods until this is fixed.
    Fail,
}

/// One line of `hull check`.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub what: &'static str,
    /// The outcome.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// How to fix it (failures and warnings).
    pub fix: Option<String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.what, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n     fix: {fix}")?;
        }
        Ok(())
    }
}

fn check(what: &'static str, outcome: Outcome, detail: String, fix: Option<&str>) -> Check {
    Check {
        what,
        outcome,
        detail,
        fix: fix.map(str::to_owned),
    }
}

/// Finds `name` on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The kernel: present, a bzImage or a PVH vmlinux, and (when its `kernel.config` is installed beside it) built
/// with every option hull needs.
fn kernel_check(path: &Path) -> Check {
    let fix_missing = "run scripts/setup.sh (or set `kernel` in the hull config)";
    if !path.is_file() {
        let detail = format!("{} is missing", path.display());
        return check("kernel", Outcome::Fail, detail, Some(fix_missing));
    }
    if let Err(e) = crate::images::KernelFormat::detect(path) {
        return check("kernel", Outcome::Fail, e.to_string(), Some(fix_missing));
    }
    let config = path.with_file_name("kernel.config");
    let Ok(text) = std::fs::read_to_string(&config) else {
        let detail = format!("{} (no kernel.config beside it to check)", path.display());
        return check("kernel", Outcome::Ok, detail, None);
    };
    let fragment = kconfig::parse(kconfig::FRAGMENT);
    let mismatches = kconfig::check(&fragment, &kconfig::parse(&text));
    if mismatches.is_empty() {
        let detail = format!("{} (config has hull's options)", path.display());
        return check("kernel", Outcome::Ok, detail, None);
    }
    let list: Vec<String> = mismatches
        .iter()
        .take(5)
        .map(|m| format!("{}={} (wants {})", m.option, m.got, m.wanted))
        .collect();
    let detail = format!(
        "{} does not match hull's kernel options: {}{}",
        config.display(),
        list.join(", "),
        if mismatches.len() > 5 { ", …" } else { "" }
    );
    check(
        "kernel",
        Outcome::Fail,
        detail,
        Some("rebuild with scripts/build.sh and reinstall with scripts/setup.sh"),
    )
}

/// The initramfs: present, a compressed cpio (LZ4 or gzip), with a static `/init` (hull-agent).
fn initramfs_check(path: &Path) -> Check {
    use std::io::Read;
    let fix = "rebuild with scripts/build.sh and reinstall with scripts/setup.sh";
    let Ok(file) = std::fs::File::open(path) else {
        let detail = format!("{} is missing", path.display());
        return check("initramfs", Outcome::Fail, detail, Some(fix));
    };
    let mut bytes = Vec::new();
    // An initramfs is a few MiB; read no more than 64 MiB of it.
    let read = file.take(64 << 20).read_to_end(&mut bytes);
    let entries = read
        .ok()
        .and_then(|_| hull_guest_image::initramfs::read(&bytes).ok());
    let Some(entries) = entries else {
        let detail = format!("{} is not a compressed cpio", path.display());
        return check("initramfs", Outcome::Fail, detail, Some(fix));
    };
    let init = entries
        .iter()
        .find(|e| e.path == "init" || e.path == "/init");
    match init {
        Some(e) if hull_guest_image::initramfs::is_static_elf(&e.data) => check(
            "initramfs",
            Outcome::Ok,
            format!("{} (static /init)", path.display()),
            None,
        ),
        _ => check(
            "initramfs",
            Outcome::Fail,
            format!("{} has no static /init (hull-agent)", path.display()),
            Some(fix),
        ),
    }
}

/// The VMM jail: on (the default) needs `hull-jailer`.
fn jail_check(on: bool, jailer: Option<PathBuf>) -> Check {
    if !on {
        return check(
            "jail",
            Outcome::Warn,
            "jail = false: VMMs run unconfined".into(),
            Some("remove `jail = false` from the hull configuration (debugging only)"),
        );
    }
    let jailer = jailer.unwrap_or_else(crate::jail::default_jailer);
    if jailer.is_file() {
        check("jail", Outcome::Ok, jailer.display().to_string(), None)
    } else {
        check(
            "jail",
            Outcome::Fail,
            format!(
                "the VMM jailer {} is missing: no pod can start",
                jailer.display()
            ),
            Some("run scripts/setup.sh (installs hull-jailer beside the shim), or set `jailer`"),
        )
    }
}

/// Host memory `hull check` leaves to the host and to a pod's own host side (VMM, TCG cache,
/// shim, virtiofsd) when it says how large a pod's guest RAM can be, MiB.
pub const HOST_RESERVE_MIB: u64 = 1024;

/// `MemTotal` of a `/proc/meminfo` text, MiB.
fn mem_total_mib(meminfo: &str) -> Option<u64> {
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// `CONFIG_NR_CPUS` of a kernel `.config` text.
fn nr_cpus(kernel_config: &str) -> Option<u32> {
    kernel_config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_NR_CPUS="))?
        .trim()
        .parse()
        .ok()
}

/// The largest pod this host runs: the configured maxima, bounded by the host's memory (less
/// [`HOST_RESERVE_MIB`]), the guest kernel's `NR_CPUS` (from `kernel.config` beside the kernel,
/// when there) and what a VM takes ([`crate::vm::MAX_VCPUS`]).
fn sizes_check(config: &HullConfig, meminfo: &str, kernel_config: Option<&str>) -> Check {
    let host_mib = mem_total_mib(meminfo);
    let backed = host_mib.map(|m| m.saturating_sub(HOST_RESERVE_MIB));
    let memory = backed.map_or(u64::from(config.max_memory_mib), |b| {
        b.min(u64::from(config.max_memory_mib))
    });
    let kernel_cpus = kernel_config.and_then(nr_cpus);
    let vcpus = config
        .max_vcpus
        .min(crate::vm::MAX_VCPUS)
        .min(kernel_cpus.unwrap_or(u32::MAX));
    let host = host_mib.map_or_else(
        || "host memory unknown".to_owned(),
        |m| format!("host {m} MiB"),
    );
    let mut bounds = vec![
        format!("max_vcpus {}", config.max_vcpus),
        format!("max_memory_mib {}", config.max_memory_mib),
        host,
    ];
    if let Some(n) = kernel_cpus {
        bounds.push(format!("guest kernel NR_CPUS {n}"));
    }
    let detail = format!(
        "largest pod {vcpus} vCPUs, {memory} MiB ({}); smallest {} MiB",
        bounds.join(", "),
        crate::vm::MIN_MEMORY_MIB
    );
    if vcpus < config.max_vcpus {
        return check(
            "sizes",
            Outcome::Warn,
            format!(
                "{detail}: max_vcpus {} is more than the guest kernel takes",
                config.max_vcpus
            ),
            Some(&format!(
                "lower max_vcpus to {vcpus} in the hull configuration"
            )),
        );
    }
    if memory < u64::from(config.max_memory_mib) {
        return check(
            "sizes",
            Outcome::Warn,
            format!(
                "{detail}: max_memory_mib {} is more than this host can back (a larger pod boots, \
                 but the host runs out of memory once its guest uses it)",
                config.max_memory_mib
            ),
            Some(&format!(
                "lower max_memory_mib to {memory} in the hull configuration"
            )),
        );
    }
    check("sizes", Outcome::Ok, detail, None)
}

/// Whether the accelerator QEMU would get can run a Linux guest: `HULL_ACCEL=kvm` on a host
/// whose `/dev/kvm` cannot (PVM, no hardware module) boots nothing (QEMU stops the guest with
/// `KVM internal error`), so it fails the check.
fn accel_check(forced: &accel::AccelChoice, probe: &HostProbe) -> Option<Check> {
    let found = accel::choose(probe);
    (forced.accel == crate::vm::Accel::Kvm && found.accel != crate::vm::Accel::Kvm).then(|| {
        check(
            "accelerator",
            Outcome::Fail,
            format!(
                "KVM is forced ({}) but {}: QEMU cannot boot a guest with it (it stops the guest \
                 with \"KVM internal error\")",
                forced.reason, found.reason
            ),
            Some(
                "unset HULL_ACCEL (hull then uses TCG on this host), or use a host with VT-x/AMD-V",
            ),
        )
    })
}

/// Runs every check. `containerd_config` is containerd's configuration file.
pub fn run(config_path: &Path, containerd_config: &Path) -> Vec<Check> {
    let (config, loaded) = config_check(config_path);
    let probe = HostProbe::read(&ProbePaths::default());
    let mut out = vec![loaded, kvm_check(&probe)];
    out.extend(backend_checks(&config, &probe));
    out.push(kernel_check(&config.kernel));
    out.push(initramfs_check(&config.initramfs));
    let kernel_config = std::fs::read_to_string(config.kernel.with_file_name("kernel.config")).ok();
    out.push(sizes_check(
        &config,
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        kernel_config.as_deref(),
    ));
    let virtiofsd = config
        .virtiofsd
        .clone()
        .or_else(|| std::env::var_os("HULL_VIRTIOFSD").map(PathBuf::from))
        .or_else(|| on_path(crate::share::virtiofsd::DEFAULT_BINARY));
    out.push(binary_check(
        "virtiofsd",
        virtiofsd,
        |v| v.display().to_string(),
        "not found (container root filesystems reach the guest through it)".into(),
        "scripts/install-tools.sh (cargo install virtiofsd --locked)",
    ));
    out.push(binary_check(
        "shim",
        on_path("containerd-shim-hull-v2"),
        |p| p.display().to_string(),
        "containerd-shim-hull-v2 is not on PATH (containerd looks it up there)".into(),
        "run scripts/setup.sh (installs it in /usr/local/bin)",
    ));
    out.push(jail_check(config.jail, config.jailer.clone()));
    out.push(start_check(&config));
    if !config.seccomp {
        out.push(check(
            "seccomp",
            Outcome::Warn,
            "seccomp = false: shims are not confined once their pod VM runs".into(),
            Some("remove `seccomp = false` from the hull configuration (debugging only)"),
        ));
    }
    // The engines: which are installed, and whether each runs hull.
    out.extend(crate::engines::checks(&crate::engines::EngineProbe::host(
        containerd_config,
    )));
    out
}

/// The start mode pods get (`snapshot` or `boot`) and why; in snapshot mode, the state of the
/// default shape's template.
fn start_check(config: &HullConfig) -> Check {
    use crate::shim::start_mode::{self, StartMode};
    use crate::template::{self, Lookup};
    let decision = start_mode::decide(config);
    let mut detail = format!("{}: {}", decision.mode, decision.why);
    if decision.mode == StartMode::Boot {
        return check("start", Outcome::Ok, detail, None);
    }
    let hv = start_mode::hull_vmm_backend(config);
    let mut refused = None;
    for (nic, what) in [(false, "no NIC"), (true, "NIC")] {
        let found = start_mode::default_spec(config, nic)
            .inputs(&hv, &config.template_dir)
            .and_then(|inputs| template::lookup(&config.template_dir, &inputs));
        match found {
            Ok(Lookup::Ready(t)) => {
                detail.push_str(&format!("; template {} ({what}) ready", t.record.key));
            }
            Ok(Lookup::Missing) => {
                detail.push_str(&format!("; the {what} template is not made yet"));
            }
            Err(e) => {
                detail.push_str(&format!(
                    "; the {what} template is refused, its pods boot: {e}"
                ));
                refused = Some(());
            }
        }
    }
    match refused {
        None => check("start", Outcome::Ok, detail, None),
        Some(()) => check(
            "start",
            Outcome::Warn,
            detail,
            Some("hull template create (as root) makes them again"),
        ),
    }
}

/// The hull configuration at `path`, or the defaults when it is bad, and the check saying which.
fn config_check(path: &Path) -> (HullConfig, Check) {
    match HullConfig::load_from(path) {
        Ok(c) => {
            let detail = if path.is_file() {
                format!("{} is valid", path.display())
            } else {
                format!("{} absent: compiled-in defaults", path.display())
            };
            (c, check("config", Outcome::Ok, detail, None))
        }
        Err(e) => {
            let failed = check(
                "config",
                Outcome::Fail,
                crate::agent::client::error_chain(&e),
                Some(&e.fix()),
            );
            (HullConfig::default(), failed)
        }
    }
}

/// What KVM this host has, and whether guests get it.
fn kvm_check(probe: &HostProbe) -> Check {
    let modules = probe.kvm_modules.join(",");
    let has = |m: &str| probe.kvm_modules.iter().any(|x| x == m);
    if !probe.kvm_device {
        check(
            "kvm",
            Outcome::Warn,
            "none (/dev/kvm missing or not accessible): guests run under TCG, slowly".into(),
            Some("enable VT-x/AMD-V (or nested virtualization) and load kvm_intel/kvm_amd"),
        )
    } else if (has("kvm_intel") || has("kvm_amd")) && probe.cpu_virt_flag {
        check("kvm", Outcome::Ok, format!("hardware ({modules})"), None)
    } else if has("kvm_pvm") {
        check(
            "kvm",
            Outcome::Warn,
            "PVM (kvm_pvm): cannot run an unmodified Linux guest; guests run under TCG".into(),
            Some("use a host with hardware virtualization for KVM speed"),
        )
    } else {
        check(
            "kvm",
            Outcome::Warn,
            format!("/dev/kvm without a hardware KVM module ({modules}): guests run under TCG"),
            Some("load kvm_intel or kvm_amd"),
        )
    }
}

/// The VMM the configuration picks on this host, and what it needs: hull-vmm alone, or QEMU
/// (with a usable accelerator) and vhost-device-vsock.
fn backend_checks(config: &HullConfig, probe: &HostProbe) -> Vec<Check> {
    let use_hull_vmm = match config.hypervisor {
        HypervisorChoice::HullVmm => true,
        HypervisorChoice::Qemu => false,
        HypervisorChoice::Auto => hull_vmm::usable().is_ok(),
    };
    if use_hull_vmm {
        let binary = config
            .hull_vmm
            .clone()
            .or_else(|| on_path(hull_vmm::DEFAULT_BINARY));
        return vec![binary_check(
            "backend",
            binary,
            |b| format!("hull-vmm ({})", b.display()),
            "hull-vmm not found".into(),
            "run scripts/setup.sh (installs hull-vmm in /usr/local/bin)",
        )];
    }
    let detected = accel::detect();
    let mut out: Vec<Check> = detected
        .as_ref()
        .ok()
        .and_then(|c| accel_check(c, probe))
        .into_iter()
        .collect();
    let choice = detected.map_or_else(
        |e| format!("HULL_ACCEL: {e}"),
        |c| format!("qemu-{} ({})", c.accel, c.reason),
    );
    let qemu = config
        .qemu
        .clone()
        .or_else(|| on_path(crate::vm::qemu::DEFAULT_BINARY));
    out.push(binary_check(
        "backend",
        qemu,
        |q| format!("{choice}, {}", q.display()),
        format!("{choice}, but qemu-system-x86_64 is not installed"),
        "apt-get install qemu-system-x86",
    ));
    let vsock = std::env::var_os("HULL_VSOCK_BACKEND")
        .map(PathBuf::from)
        .or_else(|| on_path("vhost-device-vsock"));
    out.push(binary_check(
        "vsock",
        vsock,
        |v| v.display().to_string(),
        "vhost-device-vsock not found".into(),
        "scripts/install-tools.sh (cargo install vhost-device-vsock --locked)",
    ));
    out
}

/// `what` is fine when `binary` is a file (`found` says what it is), a failure saying `missing`
/// with `fix` otherwise.
fn binary_check(
    what: &'static str,
    binary: Option<PathBuf>,
    found: impl FnOnce(&Path) -> String,
    missing: String,
    fix: &str,
) -> Check {
    match binary.filter(|b| b.is_file()) {
        Some(b) => check(what, Outcome::Ok, found(&b), None),
        None => check(what, Outcome::Fail, missing, Some(fix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_images_fail_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "kernel = \"{0}/nope\"\ninitramfs = \"{0}/config.toml\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let checks = run(&cfg, &dir.path().join("containerd.toml"));
        let kernel = checks.iter().find(|c| c.what == "kernel").unwrap();
        assert_eq!(kernel.outcome, Outcome::Fail);
        assert!(kernel.to_string().contains("fix: "));
        let initramfs = checks.iter().find(|c| c.what == "initramfs").unwrap();
        assert!(
            initramfs.detail.contains("not a compressed cpio"),
            "{initramfs}"
        );
        let containerd = checks.iter().find(|c| c.what == "containerd").unwrap();
        assert_eq!(containerd.outcome, Outcome::Warn);
    }

    #[test]
    fn the_jail_needs_its_jailer_and_opt_outs_are_warned() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("hull-jailer");
        let c = jail_check(true, Some(missing.clone()));
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(c.detail.contains("missing"), "{c}");
        std::fs::write(&missing, b"").unwrap();
        assert_eq!(jail_check(true, Some(missing)).outcome, Outcome::Ok);
        assert_eq!(jail_check(false, None).outcome, Outcome::Warn);
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "seccomp = false\n").unwrap();
        let checks = run(&cfg, Path::new("/nonexistent"));
        let seccomp = checks.iter().find(|c| c.what == "seccomp").unwrap();
        assert_eq!(seccomp.outcome, Outcome::Warn);
    }

    #[test]
    fn the_largest_pod_is_the_configured_one_bounded_by_the_host() {
        let config = HullConfig::default();
        let big = "MemTotal:       24000000 kB\n";
        let c = sizes_check(&config, big, Some("CONFIG_NR_CPUS=64\n"));
        assert_eq!(c.outcome, Outcome::Ok, "{c}");
        assert!(c.detail.starts_with("largest pod 8 vCPUs, 8192 MiB"), "{c}");
        let small = "MemTotal:        4194304 kB\n";
        let c = sizes_check(&config, small, None);
        assert_eq!(c.outcome, Outcome::Warn, "{c}");
        assert!(c.detail.starts_with("largest pod 8 vCPUs, 3072 MiB"), "{c}");
        assert!(c.fix.unwrap().contains("max_memory_mib to 3072"));
        let c = sizes_check(&config, big, Some("CONFIG_NR_CPUS=4\n"));
        assert_eq!(c.outcome, Outcome::Warn, "{c}");
        assert!(c.detail.starts_with("largest pod 4 vCPUs"), "{c}");
    }

    #[test]
    fn forced_kvm_on_a_host_that_cannot_run_linux_fails() {
        let forced = accel::AccelChoice {
            accel: crate::vm::Accel::Kvm,
            reason: "forced by HULL_ACCEL".into(),
        };
        let pvm = HostProbe {
            kvm_device: true,
            kvm_modules: vec!["kvm_pvm".into()],
            cpu_virt_flag: false,
        };
        let c = accel_check(&forced, &pvm).expect("a failed check");
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(
            c.detail.contains("PVM") && c.detail.contains("HULL_ACCEL"),
            "{c}"
        );
        let hardware = HostProbe {
            kvm_device: true,
            kvm_modules: vec!["kvm_intel".into()],
            cpu_virt_flag: true,
        };
        assert!(accel_check(&forced, &hardware).is_none());
        let tcg = accel::AccelChoice {
            accel: crate::vm::Accel::Tcg,
            reason: "forced".into(),
        };
        assert!(accel_check(&tcg, &pvm).is_none());
    }

    #[test]
    fn bad_config_fails_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "max_vcpus = -1\n").unwrap();
        let checks = run(&cfg, Path::new("/nonexistent"));
        assert_eq!(checks[0].outcome, Outcome::Fail);
        assert!(checks[0].detail.contains("max_vcpus"), "{}", checks[0]);
    }
}
