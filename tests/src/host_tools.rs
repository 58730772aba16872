//! Test images carrying real tools of the host (Debian's `iptables`, `nft`, `brctl`, `ip`): each
//! binary with every shared library `ldd` names and any plug-in directory it loads from, at the
//! host's paths, on top of the busybox image. Built offline; the tools come from Debian packages
//! `scripts/install-deps.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::containerd::{build_image_files, ImageFile};

/// A tool to put in the image: the host file and the name it is run by (multi-call binaries such
/// as `xtables-nft-multi` pick their personality from it).
#[derive(Debug, Clone, Copy)]
pub struct Tool<'a> {
    /// The host binary (symlinks are followed).
    pub host: &'a str,
    /// Its path in the image.
    pub image: &'a str,
}

/// The absolute paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; not the vDSO, not `file:` headers).
pub fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter(|line| !line.ends_with(':'))
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, p)| p);
            path.split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// Builds image `name` into `out`: busybox, `tools`, every regular file of `plugin_dirs`, and
/// the libraries all of them need. `Err` names what is missing (e.g. a tool not installed).
pub fn build_tools_image(
    out: &Path,
    name: &str,
    tools: &[Tool],
    plugin_dirs: &[&str],
) -> Result<(), String> {
    let mut objects: Vec<PathBuf> = Vec::new();
    for tool in tools {
        if !Path::new(tool.host).is_file() {
            return Err(format!(
                "{} is not installed (scripts/install-deps.sh)",
                tool.host
            ));
        }
        objects.push(PathBuf::from(tool.host));
    }
    let mut plugins = Vec::new();
    for dir in plugin_dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
        for e in entries {
            let path = e.map_err(|e| format!("{dir}: {e}"))?.path();
            if path.is_file() {
                plugins.push(path);
            }
        }
    }
    objects.extend(plugins.iter().cloned());
    let out_ldd = Command::new("ldd")
        .args(&objects)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let mut libs = ldd_paths(&String::from_utf8_lossy(&out_ldd.stdout));
    libs.sort();
    libs.dedup();
    let mut files: Vec<(PathBuf, String)> = tools
        .iter()
        .map(|t| {
            (
                PathBuf::from(t.host),
                t.image.trim_start_matches('/').to_owned(),
            )
        })
        .collect();
    for path in plugins.iter().chain(libs.iter()) {
        let image = path.to_string_lossy().trim_start_matches('/').to_owned();
        files.push((path.clone(), image));
    }
    let extra: Vec<ImageFile> = files
        .iter()
        .map(|(from, to)| ImageFile {
            from,
            to,
            mode: None,
        })
        .collect();
    build_image_files(out, name, &extra, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_the_loader() {
        let ldd = "/usr/sbin/nft:\n\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibnftables.so.1 => /lib/x86_64-linux-gnu/libnftables.so.1 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n/usr/sbin/brctl:\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n";
        assert_eq!(
            ldd_paths(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libnftables.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
            ]
        );
    }
}
