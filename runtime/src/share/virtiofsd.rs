//! One virtiofsd per pod, serving only the pod's shared directory, in its own sandbox
//! (`--sandbox namespace`, its default seccomp filter). virtiofsd exits when the VMM disconnects;
//! dropping a [`Virtiofsd`] kills it if it did not and removes its socket.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::ShareError;

/// The binary, unless `HULL_VIRTIOFSD` names another.
pub const DEFAULT_BINARY: &str = "virtiofsd";

/// virtiofsd's cache policy (`--cache`); in `/etc/hull/config.toml` as `virtio_fs_cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Metadata and data may be cached for a while.
    Auto,
    /// Everything cached (fastest; the share must not change behind the guest's back).
    Always,
    /// Nothing cached (slowest; always coherent).
    Never,
    /// Metadata cached, data not.
    Metadata,
}

/// The default, chosen by `hull-bench fs` (512 MiB sequential, 10 000 small files, QEMU/TCG on this
/// project's machines): `metadata` led or tied every column — guest read 793 MiB/s against 126 (auto)
/// and 113 (always), write 183 MiB/s against 66–71, stat 50 700/s against 4 800 (auto) and 1 000
/// (never). Re-measure with hardware KVM before changing it.
impl Default for CacheMode {
    fn default() -> Self {
        CacheMode::Metadata
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::Auto => "auto",
            CacheMode::Always => "always",
            CacheMode::Never => "never",
            CacheMode::Metadata => "metadata",
        })
    }
}

impl FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(CacheMode::Auto),
            "always" => Ok(CacheMode::Always),
            "never" => Ok(CacheMode::Never),
            "metadata" => Ok(CacheMode::Metadata),
            other => Err(format!(
                "unknown virtio-fs cache mode {other:?} (auto, always, never, metadata)"
            )),
        }
    }
}

/// A running virtiofsd.
#[derive(Debug)]
pub struct Virtiofsd {
    child: Child,
    socket: PathBuf,
}

/// Its command line.
pub fn args(socket: &Path, shared_dir: &Path, cache: CacheMode) -> Vec<std::ffi::OsString> {
    vec![
        "--socket-path".into(),
        socket.into(),
        "--shared-dir".into(),
        shared_dir.into(),
        "--cache".into(),
        cache.to_string().into(),
        // Mounts made under the share after start-up (container root filesystems) show as
        // submounts.
        "--announce-submounts".into(),
        // Extended attributes (file capabilities, SELinux-free labels, user.*) pass through.
        "--xattr".into(),
        "--sandbox".into(),
        "namespace".into(),
    ]
}

impl Virtiofsd {
    /// Starts virtiofsd on `shared_dir` with its socket and log in `run_dir`.
    pub fn start(
        run_dir: &Path,
        shared_dir: &Path,
        cache: CacheMode,
        timeout: Duration,
    ) -> Result<Self, ShareError> {
        let binary = std::env::var_os("HULL_VIRTIOFSD")
            .map_or_else(|| PathBuf::from(DEFAULT_BINARY), PathBuf::from);
        let socket = run_dir.join("virtiofs.sock");
        let log = run_dir.join("virtiofsd.log");
        let _ = std::fs::remove_file(&socket);
        let log_file =
            std::fs::File::create(&log).map_err(|e| ShareError::Spawn(log.clone(), e))?;
        let child = Command::new(&binary)
            .args(args(&socket, shared_dir, cache))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| ShareError::Spawn(binary.clone(), e))?;
        let mut daemon = Self { child, socket };
        let deadline = Instant::now() + timeout;
        while !daemon.socket.exists() {
            let exited = daemon.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= deadline {
                return Err(ShareError::NotReady(daemon.socket.clone(), log));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(daemon)
    }

    /// The vhost-user socket the VMM attaches to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether it has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        self.try_wait().is_some()
    }

    /// How it ended, once it has (reaping it); `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_serves_only_the_share_in_a_sandbox() {
        let a: Vec<String> = args(
            Path::new("/r/v.sock"),
            Path::new("/r/shared"),
            CacheMode::Auto,
        )
        .into_iter()
        .map(|s| s.into_string().unwrap())
        .collect();
        assert_eq!(
            a.join(" "),
            "--socket-path /r/v.sock --shared-dir /r/shared --cache auto --announce-submounts --xattr --sandbox namespace"
        );
    }

    #[test]
    fn cache_modes_parse() {
        for m in ["auto", "always", "never", "metadata"] {
            assert_eq!(m.parse::<CacheMode>().unwrap().to_string(), m);
        }
        assert!("sometimes".parse::<CacheMode>().is_err());
    }
}
