//! Kernel configuration checks: the fragment (`hull.config`) against a built `.config`.

use std::collections::BTreeMap;

/// Options without which a hull guest does not work; each must be `=y` in the fragment and in the
/// built configuration.
pub const REQUIRED: &[&str] = &[
    "CONFIG_64BIT",
    "CONFIG_SMP",
    "CONFIG_PVH",
    "CONFIG_KVM_GUEST",
    "CONFIG_PARAVIRT",
    "CONFIG_SERIAL_8250",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_PRINTK",
    "CONFIG_TTY",
    "CONFIG_UNIX98_PTYS",
    "CONFIG_BLK_DEV_INITRD",
    "CONFIG_RD_GZIP",
    "CONFIG_BINFMT_ELF",
    "CONFIG_BINFMT_SCRIPT",
    "CONFIG_VIRTIO_MMIO",
    "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
    "CONFIG_VSOCKETS",
    "CONFIG_VIRTIO_VSOCKETS",
    "CONFIG_FUSE_FS",
    "CONFIG_VIRTIO_FS",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_NET",
    "CONFIG_EXT4_FS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_TMPFS",
    "CONFIG_DEVTMPFS",
    "CONFIG_PROC_FS",
    "CONFIG_SYSFS",
    "CONFIG_CGROUPS",
    "CONFIG_MEMCG",
    "CONFIG_CGROUP_SCHED",
    "CONFIG_CFS_BANDWIDTH",
    "CONFIG_CPUSETS",
    "CONFIG_CGROUP_PIDS",
    "CONFIG_BLK_CGROUP",
    "CONFIG_CGROUP_FREEZER",
    "CONFIG_NAMESPACES",
    "CONFIG_UTS_NS",
    "CONFIG_IPC_NS",
    "CONFIG_USER_NS",
    "CONFIG_PID_NS",
    "CONFIG_NET_NS",
    "CONFIG_SECCOMP",
    "CONFIG_SECCOMP_FILTER",
    "CONFIG_UNIX",
    "CONFIG_INET",
    "CONFIG_IPV6",
    "CONFIG_FUTEX",
    "CONFIG_EPOLL",
    "CONFIG_EVENTFD",
    "CONFIG_SIGNALFD",
    "CONFIG_TIMERFD",
    "CONFIG_AIO",
    "CONFIG_POSIX_MQUEUE",
    "CONFIG_SYSVIPC",
];

/// A configuration as `option -> value`; `=n` and `# CONFIG_X is not set` both read as `"n"`.
pub type Config = BTreeMap<String, String>;

/// Parses `.config` or fragment text.
pub fn parse(text: &str) -> Config {
    let mut config = Config::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                config.insert(name.to_owned(), "n".to_owned());
            }
        } else if let Some((name, value)) = line.split_once('=') {
            if name.starts_with("CONFIG_") {
                config.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    config
}

/// One way a built configuration disagrees with what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The option.
    pub option: String,
    /// What the fragment (or [`REQUIRED`]) asks for.
    pub wanted: String,
    /// What the build has (`n` when absent).
    pub got: String,
}

/// Every option of `fragment`, and every [`REQUIRED`] option, that `built` does not honour.
/// `=n` in the fragment is honoured by an absent option too, and no option may be a module.
pub fn check(fragment: &Config, built: &Config) -> Vec<Mismatch> {
    let get = |name: &str| built.get(name).map_or("n", String::as_str).to_owned();
    let mut wanted: BTreeMap<String, String> = fragment.clone();
    for name in REQUIRED {
        wanted.insert((*name).to_owned(), "y".to_owned());
    }
    let mut mismatches: Vec<Mismatch> = wanted
        .into_iter()
        .filter(|(name, want)| get(name) != *want)
        .map(|(name, want)| Mismatch {
            got: get(&name),
            option: name,
            wanted: want,
        })
        .collect();
    mismatches.extend(
        built
            .iter()
            .filter(|(_, v)| *v == "m")
            .map(|(name, _)| Mismatch {
                option: name.clone(),
                wanted: "y or n (no modules)".to_owned(),
                got: "m".to_owned(),
            }),
    );
    mismatches
}

/// The fragment shipped with the crate.
pub const FRAGMENT: &str = include_str!("../hull.config");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_asks_for_every_required_option() {
        let fragment = parse(FRAGMENT);
        for name in REQUIRED {
            assert_eq!(fragment.get(*name).map(String::as_str), Some("y"), "{name}");
        }
    }

    #[test]
    fn fragment_has_no_modules_and_turns_modules_off() {
        let fragment = parse(FRAGMENT);
        assert!(fragment.values().all(|v| v != "m"));
        assert_eq!(
            fragment.get("CONFIG_MODULES").map(String::as_str),
            Some("n")
        );
    }

    #[test]
    fn parse_reads_set_unset_and_values() {
        let c =
            parse("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\n# comment\nCONFIG_D=64\n");
        assert_eq!(c["CONFIG_A"], "y");
        assert_eq!(c["CONFIG_B"], "n");
        assert_eq!(c["CONFIG_C"], "\"x\"");
        assert_eq!(c["CONFIG_D"], "64");
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn check_reports_dropped_options_and_modules() {
        let fragment = parse("CONFIG_PVH=y\nCONFIG_SOUND=n\nCONFIG_NR_CPUS=64\n");
        let mut built: Config = REQUIRED
            .iter()
            .map(|n| ((*n).to_owned(), "y".to_owned()))
            .collect();
        built.insert("CONFIG_NR_CPUS".into(), "8".into());
        built.insert("CONFIG_FOO".into(), "m".into());
        built.remove("CONFIG_VIRTIO_FS");
        let got = check(&fragment, &built);
        let names: Vec<_> = got.iter().map(|m| m.option.as_str()).collect();
        assert_eq!(names, ["CONFIG_NR_CPUS", "CONFIG_VIRTIO_FS", "CONFIG_FOO"]);
        assert_eq!(got[1].got, "n");
    }
}
