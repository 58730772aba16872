//! `/etc/hull/config.toml`: which hypervisor, which guest images and tools, VM sizing, logging.
//! Every key has a compiled-in default, so the file may be absent; a bad file is an error naming
//! the key. `HULL_CONFIG` points at another file (tests use it).

use crate::share::CacheMode;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::images::{GuestImages, INSTALL_DIR};

use super::host_namespaces::HostNamespaces;

/// Where the configuration lives.
pub const DEFAULT_PATH: &str = "/etc/hull/config.toml";
/// Where failed starts are recorded unless `log_dir` says otherwise.
pub const DEFAULT_LOG_DIR: &str = "/var/log/hull";

/// Reading the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    /// The file is not valid TOML or has a bad key or value.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line it stopped at).
        message: String,
        /// The line (from 1) the parser stopped at, when it says.
        line: Option<usize>,
        /// The key on that line, when the line has one.
        key: Option<String>,
    },
    /// A key has a value hull cannot use.
    #[error("{path}: key `{key}`: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        why: String,
    },
    /// A key's value breaks one of the limits every path or name is checked against.
    #[error("{path}: key `{key}`")]
    Limit {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// The limit it breaks.
        #[source]
        source: hull_protocol::limits::LimitError,
    },
}

/// Which VMM runs pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HypervisorChoice {
    /// hull-vmm where the host has hardware KVM, else QEMU (KVM or TCG).
    Auto,
    /// Always hull-vmm.
    HullVmm,
    /// Always QEMU.
    Qemu,
}

/// How pod VMs start (see docs/snapshot.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartChoice {
    /// On hull-vmm, pods of the default shape restore a template snapshot (made on first use);
    /// everything else boots.
    Snapshot,
    /// Every pod boots its kernel.
    Boot,
}

/// The configuration, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HullConfig {
    /// `auto`, `hull-vmm` or `qemu`.
    pub hypervisor: HypervisorChoice,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Initramfs holding hull-agent.
    pub initramfs: PathBuf,
    /// QEMU binary (empty: `HULL_QEMU` or `qemu-system-x86_64` on PATH).
    pub qemu: Option<PathBuf>,
    /// hull-vmm binary (empty: next to the shim, then PATH).
    pub hull_vmm: Option<PathBuf>,
    /// virtiofsd binary (empty: the usual places, then PATH).
    pub virtiofsd: Option<PathBuf>,
    /// virtio-fs cache mode.
    pub virtio_fs_cache: CacheMode,
    /// vCPUs of a pod VM when its spec asks for no more.
    pub default_vcpus: u32,
    /// Guest RAM (MiB) of a pod VM when its spec asks for no more.
    pub default_memory_mib: u32,
    /// Upper bound of vCPUs.
    pub max_vcpus: u32,
    /// Upper bound of guest RAM, MiB.
    pub max_memory_mib: u32,
    /// Guest RAM added on top of a container's memory limit (kernel, agent, page cache).
    pub memory_overhead_mib: u32,
    /// Annotations allowed to change VM sizing (`io.hull.vcpus`, `io.hull.memory_mib`).
    pub sizing_annotations: Vec<String>,
    /// Log filter of the shim (`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter).
    pub log_level: String,
    /// Where pods keep their runtime files (`<run_dir>/<pod id>/`).
    pub run_dir: PathBuf,
    /// Where the record of a pod VM that failed to start is kept (`<log_dir>/<pod id>.log`, the
    /// newest few; see `hull_runtime::shim::boot_log`).
    pub log_dir: PathBuf,
    /// How long a pod VM may take until its agent answers, seconds.
    pub boot_timeout_secs: u64,
    /// Extra guest kernel command-line words.
    pub kernel_params: Vec<String>,
    /// `snapshot` (the default): on hull-vmm, pods of the default shape restore a template;
    /// `boot`: every pod boots. QEMU always boots.
    pub start: StartChoice,
    /// Where templates are kept (root-only).
    pub template_dir: PathBuf,
    /// Run each VMM in a jail (own namespaces, pivot_root, unprivileged uid; see
    /// `hull_runtime::jail`). Turn off only to debug a VMM.
    pub jail: bool,
    /// Confine the shim with its seccomp allowlist once its pod VM is started (see
    /// `hull_runtime::seccomp`). Turn off only to debug the shim.
    pub seccomp: bool,
    /// The jailer binary (empty: `HULL_JAILER`, beside the shim, then PATH).
    pub jailer: Option<PathBuf>,
    /// What to do with a Kubernetes pod asking for the node's network, IPC or PID namespace or
    /// for host mount propagation, which a VM cannot give: `refuse` (the default) or `ignore`
    /// (run it in the VM's own namespaces). See `super::host_namespaces`.
    pub host_namespaces: HostNamespaces,
    /// Testing only: run every container from this guest path (a tree packed into the initramfs)
    /// instead of sharing containerd's rootfs; bind mounts from the host are dropped.
    pub guest_rootfs: Option<String>,
}

/// The annotation that may set a pod's vCPUs (when listed in `sizing_annotations`).
pub const VCPUS_ANNOTATION: &str = "io.hull.vcpus";
/// The annotation that may set a pod's guest RAM in MiB (when listed in `sizing_annotations`).
pub const MEMORY_ANNOTATION: &str = "io.hull.memory_mib";

impl Default for HullConfig {
    fn default() -> Self {
        let images = GuestImages::in_dir(Path::new(INSTALL_DIR));
        Self {
            hypervisor: HypervisorChoice::Auto,
            kernel: images.kernel,
            initramfs: images.initramfs,
            qemu: None,
            hull_vmm: None,
            virtiofsd: None,
            virtio_fs_cache: CacheMode::default(),
            default_vcpus: 1,
            default_memory_mib: 256,
            max_vcpus: 8,
            max_memory_mib: 8192,
            memory_overhead_mib: 128,
            sizing_annotations: vec![VCPUS_ANNOTATION.into(), MEMORY_ANNOTATION.into()],
            log_level: "info".into(),
            run_dir: PathBuf::from("/run/hull"),
            log_dir: PathBuf::from(DEFAULT_LOG_DIR),
            boot_timeout_secs: 60,
            kernel_params: Vec::new(),
            start: StartChoice::Snapshot,
            template_dir: PathBuf::from(crate::template::DEFAULT_ROOT),
            jail: true,
            seccomp: true,
            jailer: None,
            host_namespaces: HostNamespaces::Refuse,
            guest_rootfs: None,
        }
    }
}

impl ConfigError {
    /// What the user should do, naming the key or line where the error has one.
    pub fn fix(&self) -> String {
        const KEYS: &str = "docs/shim.md lists the keys";
        match self {
            ConfigError::Read(path, _) => format!(
                "make {} readable, or remove it to use the compiled-in defaults",
                path.display()
            ),
            ConfigError::Parse {
                path,
                line,
                key: Some(key),
                ..
            } => match line {
                Some(line) => format!(
                    "correct `{key}` on line {line} of {} ({KEYS})",
                    path.display()
                ),
                None => format!("correct `{key}` in {} ({KEYS})", path.display()),
            },
            ConfigError::Parse {
                path,
                line: Some(line),
                ..
            } => format!(
                "correct line {line} of {} (TOML syntax; {KEYS})",
                path.display()
            ),
            ConfigError::Parse { path, .. } => {
                format!("correct {} (TOML syntax; {KEYS})", path.display())
            }
            ConfigError::Invalid { path, key, .. } | ConfigError::Limit { path, key, .. } => {
                format!("correct `{key}` in {} ({KEYS})", path.display())
            }
        }
    }
}

/// The line (from 1) holding byte `at` of `text`, and the key on it (`key = …`), if any.
fn locate(text: &str, at: usize) -> (usize, Option<String>) {
    let at = at.min(text.len());
    let line = text[..at].matches('\n').count() + 1;
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    (line, key)
}

impl HullConfig {
    /// The file to read: `HULL_CONFIG`, else [`DEFAULT_PATH`].
    pub fn path() -> PathBuf {
        std::env::var_os("HULL_CONFIG").map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from)
    }

    /// Reads [`HullConfig::path`]; the defaults when the file does not exist.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&Self::path())
    }

    /// Reads `path`; the defaults when it does not exist.
    pub fn load_from(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError::Read(path.to_owned(), e)),
        }
    }

    /// Parses `text` (from `path`, for messages) and checks every value.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let (line, key) = e
                .span()
                .map(|span| locate(text, span.start))
                .map_or((None, None), |(line, key)| (Some(line), key));
            ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_end().replace('\n', " "),
                line,
                key,
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, why: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            why: why.to_owned(),
        };
        if self.default_vcpus == 0 || self.default_vcpus > self.max_vcpus {
            return Err(invalid("default_vcpus", "must be between 1 and max_vcpus"));
        }
        if self.max_vcpus > crate::vm::MAX_VCPUS {
            return Err(invalid(
                "max_vcpus",
                &format!(
                    "must be at most {} (the guest kernel's NR_CPUS)",
                    crate::vm::MAX_VCPUS
                ),
            ));
        }
        if self.default_memory_mib < 64 || self.default_memory_mib > self.max_memory_mib {
            return Err(invalid(
                "default_memory_mib",
                "must be at least 64 and at most max_memory_mib",
            ));
        }
        if self.boot_timeout_secs == 0 {
            return Err(invalid("boot_timeout_secs", "must be positive"));
        }
        for (key, p) in [("kernel", &self.kernel), ("initramfs", &self.initramfs)] {
            if !p.is_absolute() {
                return Err(invalid(key, "must be an absolute path"));
            }
        }
        if !self.run_dir.is_absolute() {
            return Err(invalid("run_dir", "must be an absolute path"));
        }
        if !self.template_dir.is_absolute() {
            return Err(invalid("template_dir", "must be an absolute path"));
        }
        if !self.log_dir.is_absolute() {
            return Err(invalid("log_dir", "must be an absolute path"));
        }
        for a in &self.sizing_annotations {
            if a != VCPUS_ANNOTATION && a != MEMORY_ANNOTATION {
                return Err(invalid(
                    "sizing_annotations",
                    &format!(
                        "unknown annotation {a:?} (known: {VCPUS_ANNOTATION}, {MEMORY_ANNOTATION})"
                    ),
                ));
            }
        }
        if let Some(g) = &self.guest_rootfs {
            hull_protocol::limits::check_abs_path("guest_rootfs", g).map_err(|source| {
                ConfigError::Limit {
                    path: path.to_owned(),
                    key: "guest_rootfs",
                    source,
                }
            })?;
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(invalid("log_level", "not a log level or filter"));
        }
        Ok(())
    }

    /// The guest images.
    pub fn images(&self) -> GuestImages {
        GuestImages {
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
        }
    }

    /// The boot deadline.
    pub fn boot_timeout(&self) -> Duration {
        Duration::from_secs(self.boot_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HullConfig, ConfigError> {
        HullConfig::parse(Path::new("/etc/hull/config.toml"), text)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), HullConfig::default());
        let d = HullConfig::default();
        // The installed PVH vmlinux when there is one, else the bzImage.
        let vmlinux = Path::new("/usr/local/share/hull/vmlinux");
        let expected = if vmlinux.is_file() {
            vmlinux
        } else {
            Path::new("/usr/local/share/hull/vmlinuz")
        };
        assert_eq!(d.kernel, expected);
        assert_eq!(d.hypervisor, HypervisorChoice::Auto);
    }

    #[test]
    fn missing_file_is_the_defaults() {
        let c = HullConfig::load_from(Path::new("/nonexistent/hull.toml")).unwrap();
        assert_eq!(c, HullConfig::default());
    }

    #[test]
    fn keys_are_read() {
        let c = parse(
            "hypervisor = \"qemu\"\nkernel = \"/k\"\ninitramfs = \"/i\"\ndefault_vcpus = 2\n\
             default_memory_mib = 512\nvirtio_fs_cache = \"never\"\nlog_level = \"debug\"\n\
             guest_rootfs = \"/testroot/busybox\"\nhost_namespaces = \"ignore\"\n",
        )
        .unwrap();
        assert_eq!(c.hypervisor, HypervisorChoice::Qemu);
        assert_eq!(c.images().kernel, Path::new("/k"));
        assert_eq!((c.default_vcpus, c.default_memory_mib), (2, 512));
        assert_eq!(c.virtio_fs_cache, CacheMode::Never);
        assert_eq!(c.guest_rootfs.as_deref(), Some("/testroot/busybox"));
        assert_eq!(c.host_namespaces, HostNamespaces::Ignore);
        assert_eq!(
            HullConfig::default().host_namespaces,
            HostNamespaces::Refuse
        );
    }

    #[test]
    fn fixes_name_the_key_or_the_line() {
        let fix = |text: &str| parse(text).unwrap_err().fix();
        let f = fix("max_vcpus = -1\n");
        assert!(f.contains("`max_vcpus` on line 1"), "{f}");
        let f = fix("# hull\n\ndefault_vcpu = 2\n");
        assert!(f.contains("`default_vcpu` on line 3"), "{f}");
        let f = fix("jail = true\n[[[\n");
        assert!(f.contains("line 2") && !f.contains('`'), "{f}");
        let f = fix("default_vcpus = 0\n");
        assert!(f.contains("`default_vcpus`"), "{f}");
        let e = ConfigError::Read("/etc/hull/config.toml".into(), std::io::Error::other("x"));
        assert!(e.fix().contains("readable"), "{}", e.fix());
    }

    #[test]
    fn bad_files_name_the_key() {
        let e = parse("hypervisor = \"xen\"").unwrap_err().to_string();
        assert!(e.contains("hypervisor"), "{e}");
        let e = parse("default_vcpu = 2").unwrap_err().to_string();
        assert!(e.contains("default_vcpu"), "{e}");
        let e = parse("default_memory_mib = \"lots\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("default_memory_mib"), "{e}");
        let e = parse("default_vcpus = 0").unwrap_err().to_string();
        assert!(e.contains("`default_vcpus`"), "{e}");
        let e = parse("kernel = \"vmlinuz\"").unwrap_err().to_string();
        assert!(e.contains("`kernel`"), "{e}");
        let e = parse("sizing_annotations = [\"io.hull.kernel\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sizing_annotations"), "{e}");
        let e = parse("log_level = \"[\"").unwrap_err().to_string();
        assert!(e.contains("log_level"), "{e}");
        let e = parse("host_namespaces = \"allow\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host_namespaces") && e.contains("refuse"), "{e}");
        let e = parse("guest_rootfs = \"../x\"").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Limit {
                    key: "guest_rootfs",
                    ..
                }
            ),
            "{e:?}"
        );
        let shown = crate::agent::client::error_chain(&e);
        assert!(
            shown.contains("guest_rootfs") && shown.contains("../x"),
            "{shown}"
        );
    }
}
