//! Where the engines besides the host's containerd 1.6 are: `scripts/install-engines.sh` puts
//! containerd 1.7 (Debian trixie's package, unpacked) and CRI-O 1.26 under
//! `/usr/local/lib/hull/engines`, off `PATH`, so tests start them by path. A missing engine is a
//! skip, or a failure under `CI=true`.

use std::path::{Path, PathBuf};

/// Where `scripts/install-engines.sh` installs the engines (`HULL_ENGINES_DIR` overrides it).
pub fn engines_dir() -> PathBuf {
    crate::env_path("HULL_ENGINES_DIR")
        .unwrap_or_else(|| PathBuf::from("/usr/local/lib/hull/engines"))
}

/// The directory of containerd 1.7's `containerd`, `ctr` and runc shim; `None` (after the
/// skip-or-fail rule) when it is not installed.
pub fn containerd_1_7() -> Option<PathBuf> {
    let bin = engines_dir().join("containerd-1.7/bin");
    present(&bin.join("containerd")).then_some(bin)
}

/// CRI-O's directory (`crio`, `pinns`); `None` (after the skip-or-fail rule) when it or Debian's
/// `conmon` is not installed.
pub fn crio() -> Option<PathBuf> {
    let dir = engines_dir().join("cri-o");
    (present(&dir.join("crio")) && present(&dir.join("pinns")) && present(Path::new(CONMON)))
        .then_some(dir)
}

/// Debian's conmon, which CRI-O needs even when every pod runs on a VM runtime.
pub const CONMON: &str = "/usr/bin/conmon";

fn present(path: &Path) -> bool {
    if path.is_file() {
        return true;
    }
    crate::skip_or_fail(&format!(
        "{} is not installed (scripts/install-deps.sh runs scripts/install-engines.sh)",
        path.display()
    ));
    false
}
