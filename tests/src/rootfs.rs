//! A busybox root filesystem for container tests, and the test initramfs that carries it.
//!
//! Until virtio-fs brings container roots from the host, test containers run from a busybox tree
//! packed into the initramfs at [`GUEST_ROOTFS`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hull_guest_image::initramfs;

/// Where the busybox tree is in the guest.
pub const GUEST_ROOTFS: &str = "/testroot/busybox";

/// Debian's static busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds a busybox root filesystem in `dir`: `/bin/busybox`, a link per applet, the usual
/// directories, and `/etc/passwd` + `/etc/group` with root, a user 1000 and nobody.
pub fn busybox_rootfs(dir: &Path) -> std::io::Result<()> {
    for d in [
        "bin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "root",
        "home/user",
        "run",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))?;
    let list = Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n",
    )?;
    Ok(())
}

/// The agent binary: `HULL_AGENT`, else `target/hull/bin/hull-agent` of this checkout.
pub fn agent_binary() -> PathBuf {
    std::env::var_os("HULL_AGENT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/bin/hull-agent"),
        PathBuf::from,
    )
}

/// The static `hull-fs-probe` (xattrs, shared mmap), built beside the agent by `scripts/build.sh`.
pub fn fs_probe_binary() -> PathBuf {
    agent_binary().with_file_name("hull-fs-probe")
}

/// The test initramfs (agent + busybox tree), built once per test binary under the target dir.
pub fn test_initramfs() -> Result<PathBuf, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let agent = agent_binary();
            let tree = tempfile::tempdir().map_err(|e| e.to_string())?;
            busybox_rootfs(tree.path()).map_err(|e| format!("busybox rootfs: {e}"))?;
            let image = initramfs::build_with_trees(&agent, &[(GUEST_ROOTFS, tree.path())])
                .map_err(|e| format!("test initramfs from {}: {e:?}", agent.display()))?;
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/test");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            // One file per test process: binaries run in parallel.
            let path = dir.join(format!("initramfs-{}.img", std::process::id()));
            std::fs::write(&path, image).map_err(|e| e.to_string())?;
            Ok(path)
        })
        .clone()
}
