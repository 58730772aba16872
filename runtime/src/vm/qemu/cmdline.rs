//! The QEMU command line for a hull VM: `-M microvm` without ACPI (QEMU then passes the
//! virtio-mmio devices on the kernel command line, which is how our kernel finds them), guest RAM
//! on a shared memfd, no default devices, the console on QEMU's stdout (the runtime keeps it in a
//! bounded log, see [`crate::vm::output`]), and `-no-reboot` so a guest reboot ends the VMM.

use std::ffi::OsString;
use std::path::Path;

use super::super::{balloon, Accel, Device, VmConfig};

/// Kernel command-line words every hull guest gets from this backend. `no_timer_check`: under TCG
/// on a busy host the kernel's check that the PIT timer reaches the IO-APIC can miss its window,
/// and the guest then panics with "IO-APIC + timer doesn't work" (seen at load 12 on 2 cores).
/// `noreplace-smp`: a one-vCPU guest otherwise rewrites every SMP lock prefix to its UP form at
/// boot, ~100 ms of emulated patching under TCG (spawn → ready 1036 → 930 ms median, 10 rounds
/// interleaved, issue 18); an SMP guest never patches, so it changes nothing there.
pub const BASE_CMDLINE: &[&str] = &[
    "console=ttyS0",
    "reboot=t",
    "panic=-1",
    "quiet",
    "no_timer_check",
    "noreplace-smp",
];

/// Size of QEMU's TCG translation cache, MiB. An idle pod's cache is full whatever its size
/// (a pod at 32 MiB held all 32 of it, issue 18's density run), so the size is what each pod
/// pays. 16 against 32, interleaved in one run (3 rounds, hull's guest without devices): TCG
/// cache 26.0 → 16.0 MiB, spawn → agent ready median 1196 → 1101 ms, idle CPU over 20 s 30 →
/// 32 ticks: the flushes it costs are not measurable at boot or idle. (Earlier, 32 against
/// QEMU's 128: boot 2472 vs 2492 ms.) A guest running much more code than hull's agent pays
/// retranslation after each flush: that trade is the configuration's to make later.
pub const TCG_CACHE_MIB: u32 = 16;

/// The clock of QEMU's emulated local APIC timer, kHz: QEMU counts it in nanoseconds of its
/// virtual clock (1 GHz) before the guest's divider. Under TCG the guest CPU has neither a
/// TSC-deadline timer nor a frequency leaf, so without this the kernel measures the timer against
/// the PIT: two 100 ms loops, ~220 ms of a 660 ms boot to the agent. Our guest kernel takes the
/// figure as `lapic_timer_khz=` (guest-kernel/patches/0002) and skips the measurement; a kernel
/// without the patch passes the word to init as an environment variable, harmless.
pub const TCG_APIC_TIMER_KHZ: u32 = 1_000_000;

/// Host facts that shape the command line besides the VM's own config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostShape {
    /// The accelerator.
    pub accel: Accel,
    /// Host CPUs available (TCG uses one thread per vCPU only when there are enough).
    pub host_cpus: u32,
    /// Host TSC frequency; under TCG the guest reads the host's TSC, and telling it the frequency
    /// spares it a jiffies clock.
    pub tsc_khz: Option<u64>,
}

pub use super::super::process::console_path;

/// Builds the argument list (without the binary) for `config` on a host shaped as `host`.
pub fn build(config: &VmConfig, host: HostShape) -> Vec<OsString> {
    let mut args = Args::default();
    let mem = format!("{}M", config.memory_mib);
    args.push_all(&[
        "-name",
        "hull",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
    ]);
    args.push_all(&["-no-reboot", "-monitor", "none"]);
    // QEMU's own seccomp filter: no obsolete calls, no setuid, no fork/exec, no scheduler tricks.
    args.push_all(&[
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]);
    args.push("-M");
    args.push("microvm,acpi=off,memory-backend=mem");
    args.push("-object");
    args.push(format!("memory-backend-memfd,id=mem,size={mem},share=on"));
    args.push("-m");
    args.push(mem);
    args.push("-smp");
    args.push(config.vcpus.to_string());
    match host.accel {
        Accel::Kvm => args.push_all(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => {
            // Multi-threaded TCG only pays when every vCPU thread gets a host CPU of its own;
            // otherwise it is the slowest and least stable choice.
            let thread = if host.host_cpus > config.vcpus {
                "multi"
            } else {
                "single"
            };
            // The translation cache grows with the code the guest runs: cap it (QEMU's default
            // is 1 GiB) so a pod's host memory is bounded.
            args.push("-accel");
            args.push(format!("tcg,thread={thread},tb-size={TCG_CACHE_MIB}"));
            args.push_all(&["-cpu", "max"]);
        }
    }
    // stdin is /dev/null: the console only writes. `signal=off`: no Ctrl-C handling.
    args.push_all(&[
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
    ]);
    for (i, device) in config.devices.iter().enumerate() {
        push_device(&mut args, i, device, &config.run_dir);
    }
    args.push("-kernel");
    args.push(&config.images.kernel);
    args.push("-initrd");
    args.push(&config.images.initramfs);
    args.push("-append");
    args.push(kernel_cmdline(config, host));
    args.0
}

/// The kernel command line: the backend's base words, the TCG clock hints, then the caller's.
pub fn kernel_cmdline(config: &VmConfig, host: HostShape) -> String {
    let mut words: Vec<String> = BASE_CMDLINE.iter().map(|w| (*w).to_owned()).collect();
    if let (Accel::Tcg, Some(khz)) = (host.accel, host.tsc_khz) {
        words.push(format!("tsc_early_khz={khz}"));
        words.push("tsc=reliable".to_owned());
    }
    if host.accel == Accel::Tcg {
        words.push(format!("lapic_timer_khz={TCG_APIC_TIMER_KHZ}"));
    }
    words.extend(config.cmdline.iter().cloned());
    words.join(" ")
}

fn push_device(args: &mut Args, index: usize, device: &Device, run_dir: &Path) {
    match device {
        Device::VhostUserFs { socket, tag } => {
            args.push("-chardev");
            args.push(socket_chardev(&format!("fs{index}"), socket));
            args.push("-device");
            args.push(format!("vhost-user-fs-device,chardev=fs{index},tag={tag}"));
        }
        Device::VhostUserVsock { socket } => {
            args.push("-chardev");
            args.push(socket_chardev(&format!("vsock{index}"), socket));
            args.push("-device");
            args.push(format!("vhost-user-vsock-device,chardev=vsock{index}"));
        }
        // Refused by `Qemu::start`: QEMU serves vsock only through a vhost-user backend.
        Device::Vsock => {}
        Device::Net { tap, mac, .. } => {
            // The tap is created by name in the VMM's network namespace; hull wires it up with tc.
            args.push("-netdev");
            args.push(format!(
                "tap,id=net{index},ifname={tap},script=no,downscript=no"
            ));
            args.push("-device");
            args.push(format!("virtio-net-device,netdev=net{index},mac={mac}"));
        }
        // QEMU discards reported ranges (punching holes in the memfd) and inflated pages. The
        // host sets a target through QMP (`crate::vm::balloon`): a monitor on a socket in the
        // VM's control directory, which QEMU creates and listens on without waiting.
        Device::Balloon => {
            args.push("-device");
            args.push(BALLOON_DEVICE);
            args.push("-chardev");
            let mut qmp = socket_chardev("qmp", &balloon::qmp_socket(run_dir));
            qmp.push(",server=on,wait=off");
            args.push(qmp);
            args.push_all(&["-mon", "chardev=qmp,mode=control"]);
        }
    }
}

/// QEMU's balloon: free page reporting gives the host back what the guest frees; deflate-on-OOM
/// lets the guest take balloon pages back before its OOM killer runs.
pub const BALLOON_DEVICE: &str =
    "virtio-balloon-device,id=balloon0,free-page-reporting=on,deflate-on-oom=on";

fn socket_chardev(id: &str, socket: &Path) -> OsString {
    let mut s = OsString::from(format!("socket,id={id},path="));
    s.push(escape_commas(socket));
    s
}

/// QEMU option values separate keys with commas; a literal comma is written twice.
fn escape_commas(path: &Path) -> OsString {
    let text = path.as_os_str().to_string_lossy();
    if text.contains(',') {
        OsString::from(text.replace(',', ",,"))
    } else {
        path.as_os_str().to_owned()
    }
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) {
        self.0.push(arg.into());
    }
    fn push_all(&mut self, list: &[&str]) {
        self.0.extend(list.iter().map(OsString::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::GuestImages;

    fn config(vcpus: u32, memory_mib: u32, devices: Vec<Device>) -> VmConfig {
        VmConfig {
            images: GuestImages::in_dir(Path::new("/img")),
            cmdline: vec!["hull.selftest=1".into()],
            vcpus,
            memory_mib,
            devices,
            run_dir: "/run/hull/p1".into(),
        }
    }

    fn tcg(host_cpus: u32) -> HostShape {
        HostShape {
            accel: Accel::Tcg,
            host_cpus,
            tsc_khz: Some(2_596_128),
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    /// The value following `flag`, for flags that appear once.
    fn value<'a>(args: &'a [String], flag: &str) -> &'a str {
        let at = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing"));
        &args[at + 1]
    }

    #[test]
    fn tcg_microvm_with_shared_memfd_and_console_on_stdout() {
        let args = strings(build(&config(2, 512, vec![]), tcg(2)));
        assert_eq!(value(&args, "-M"), "microvm,acpi=off,memory-backend=mem");
        assert_eq!(
            value(&args, "-object"),
            "memory-backend-memfd,id=mem,size=512M,share=on"
        );
        assert_eq!(value(&args, "-m"), "512M");
        assert_eq!(value(&args, "-smp"), "2");
        assert_eq!(value(&args, "-accel"), "tcg,thread=single,tb-size=16");
        assert_eq!(value(&args, "-cpu"), "max");
        assert_eq!(value(&args, "-chardev"), "stdio,id=console,signal=off");
        assert_eq!(value(&args, "-serial"), "chardev:console");
        assert_eq!(value(&args, "-kernel"), "/img/vmlinuz");
        assert_eq!(value(&args, "-initrd"), "/img/initramfs.img");
        assert_eq!(
            value(&args, "-append"),
            "console=ttyS0 reboot=t panic=-1 quiet no_timer_check noreplace-smp tsc_early_khz=2596128 tsc=reliable lapic_timer_khz=1000000 hull.selftest=1"
        );
        for flag in ["-nodefaults", "-no-user-config", "-no-reboot"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
    }

    #[test]
    fn tcg_uses_one_thread_per_vcpu_only_with_spare_host_cpus() {
        let args = strings(build(&config(2, 256, vec![]), tcg(8)));
        assert_eq!(value(&args, "-accel"), "tcg,thread=multi,tb-size=16");
        let args = strings(build(&config(1, 256, vec![]), tcg(1)));
        assert_eq!(value(&args, "-accel"), "tcg,thread=single,tb-size=16");
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_clock_hint() {
        let host = HostShape {
            accel: Accel::Kvm,
            host_cpus: 2,
            tsc_khz: Some(1),
        };
        let args = strings(build(&config(1, 128, vec![]), host));
        assert_eq!(value(&args, "-accel"), "kvm");
        assert_eq!(value(&args, "-cpu"), "host");
        assert_eq!(
            value(&args, "-append"),
            "console=ttyS0 reboot=t panic=-1 quiet no_timer_check noreplace-smp hull.selftest=1"
        );
    }

    #[test]
    fn devices_become_vhost_user_and_virtio_mmio_devices() {
        let devices = vec![
            Device::VhostUserFs {
                socket: "/run/hull/p1/fs.sock".into(),
                tag: "hull".into(),
            },
            Device::VhostUserVsock {
                socket: "/run/hull/p1/vsock,odd.sock".into(),
            },
        ];
        let args = strings(build(&config(1, 256, devices), tcg(2)));
        let joined = args.join(" ");
        assert!(joined.contains(
            "-chardev socket,id=fs0,path=/run/hull/p1/fs.sock -device vhost-user-fs-device,chardev=fs0,tag=hull"
        ));
        assert!(joined.contains(
            "-chardev socket,id=vsock1,path=/run/hull/p1/vsock,,odd.sock -device vhost-user-vsock-device,chardev=vsock1"
        ));
    }

    #[test]
    fn the_balloon_reports_free_pages_and_deflates_on_oom() {
        let args = strings(build(&config(1, 256, vec![Device::Balloon]), tcg(2)));
        assert_eq!(
            value(&args, "-device"),
            "virtio-balloon-device,id=balloon0,free-page-reporting=on,deflate-on-oom=on"
        );
        // The host's way to set a target: QMP on the control socket, not waiting for a client.
        let joined = args.join(" ");
        assert!(joined.contains(
            "-chardev socket,id=qmp,path=/run/hull/p1/control/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control"
        ), "{joined}");
    }

    #[test]
    fn a_nic_is_a_named_tap_and_a_virtio_net_device_with_the_pods_mac() {
        let devices = vec![Device::Net {
            tap: "hull0".into(),
            mac: "02:42:0a:58:00:05".parse().unwrap(),
            netns: "/var/run/netns/cni-1".into(),
        }];
        let joined = strings(build(&config(1, 256, devices), tcg(2))).join(" ");
        assert!(joined.contains(
            "-netdev tap,id=net0,ifname=hull0,script=no,downscript=no -device virtio-net-device,netdev=net0,mac=02:42:0a:58:00:05"
        ));
    }
}
