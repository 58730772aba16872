//! Which container engines this host has, and whether each runs hull: `hull check`'s engine lines.
//!
//! hull is a containerd shim v2 (`io.containerd.hull.v2`), so an engine runs it when its
//! configuration names that runtime: containerd (a CRI runtime handler in its config), CRI-O (a
//! `[crio.runtime.runtimes.hull]` table with `runtime_type = "vm"`), Docker 23+ (a `runtimes`
//! entry with `runtimeType` in `daemon.json`). Podman runs OCI runtime binaries (runc-like
//! command lines), not shims, so hull cannot be registered with it. Engines are found on `PATH`
//! and, for the tests' own containerd 1.7 and CRI-O (`scripts/install-engines.sh`), under
//! [`ENGINES_DIR`]; each found engine's version comes from its `--version`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hostcheck::{Check, Outcome};
use crate::shim::RUNTIME_NAME;

/// Where `scripts/install-engines.sh` puts the tests' containerd 1.7 and CRI-O.
pub const ENGINES_DIR: &str = "/usr/local/lib/hull/engines";

/// Where to look for engines and their configurations.
#[derive(Debug, Clone)]
pub struct EngineProbe {
    /// Directories searched for engine binaries (`PATH`).
    pub path: Vec<PathBuf>,
    /// The tests' engines ([`ENGINES_DIR`]).
    pub engines_dir: PathBuf,
    /// containerd's configuration file.
    pub containerd_config: PathBuf,
    /// CRI-O's configuration file; its drop-in directory is `<file>.d`.
    pub crio_config: PathBuf,
    /// Docker's `daemon.json`.
    pub docker_config: PathBuf,
}

impl EngineProbe {
    /// The host's: `PATH`, the usual configuration files, `containerd_config` for containerd.
    pub fn host(containerd_config: &Path) -> Self {
        Self {
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            engines_dir: PathBuf::from(ENGINES_DIR),
            containerd_config: containerd_config.to_owned(),
            crio_config: PathBuf::from("/etc/crio/crio.conf"),
            docker_config: PathBuf::from("/etc/docker/daemon.json"),
        }
    }

    fn on_path(&self, name: &str) -> Option<PathBuf> {
        self.path.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }
}

/// One line per engine: containerd (on `PATH`, and the tests' 1.7), CRI-O, Docker, Podman.
pub fn checks(probe: &EngineProbe) -> Vec<Check> {
    let mut out = vec![containerd_check(probe)];
    let tests_containerd = probe.engines_dir.join("containerd-1.7/bin/containerd");
    if tests_containerd.is_file() {
        out.push(Check {
            what: "containerd",
            outcome: Outcome::Ok,
            detail: format!(
                "{} ({}, the engine tests' own: not on PATH; they start it with a configuration \
                 that registers {RUNTIME_NAME})",
                version_of(&tests_containerd, "containerd"),
                tests_containerd.display()
            ),
            fix: None,
        });
    }
    out.push(crio_check(probe));
    out.push(docker_check(probe));
    out.push(podman_check(probe));
    out
}

/// `<binary> --version`'s version, as "<name> <version>" (or what went wrong).
fn version_of(binary: &Path, name: &str) -> String {
    let out = Command::new(binary).arg("--version").output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return format!("{name} (version unknown: {e})"),
    };
    parse_version(&text).map_or_else(
        || format!("{name} (version unknown)"),
        |v| format!("{name} {v}"),
    )
}

/// The version in an engine's `--version` output: the first word that starts with a digit and
/// holds a dot (`containerd github.com/… 1.6.20~ds1 …`, `crio version 1.26.4`, `Docker version
/// 26.1.5+dfsg1, build a72d7cd`, `podman version 5.4.2`), without a trailing comma.
pub fn parse_version(text: &str) -> Option<&str> {
    text.split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
}

fn containerd_check(probe: &EngineProbe) -> Check {
    let config = &probe.containerd_config;
    let Some(binary) = probe.on_path("containerd") else {
        return Check {
            what: "containerd",
            outcome: Outcome::Warn,
            detail: "not installed (hull runs as a containerd runtime or a CRI-O VM runtime)"
                .into(),
            fix: Some("apt-get install containerd, then scripts/setup-containerd.sh".into()),
        };
    };
    let found = format!(
        "{} ({})",
        version_of(&binary, "containerd"),
        binary.display()
    );
    let text = std::fs::read_to_string(config).unwrap_or_default();
    if text.contains(RUNTIME_NAME) {
        Check {
            what: "containerd",
            outcome: Outcome::Ok,
            detail: format!("{found}: {} registers {RUNTIME_NAME}", config.display()),
            fix: None,
        }
    } else {
        Check {
            what: "containerd",
            outcome: Outcome::Warn,
            detail: format!(
                "{found}: {} does not register {RUNTIME_NAME} (ctr --runtime works without it; \
                 CRI needs it)",
                config.display()
            ),
            fix: Some(
                "add [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hull] \
                 runtime_type = \"io.containerd.hull.v2\" (scripts/setup.sh does)"
                    .into(),
            ),
        }
    }
}

/// The text of `file` and of every `*.conf` in `<file>.d`, sorted, as the engine reads them.
fn config_texts(file: &Path) -> Vec<(PathBuf, String)> {
    let mut files = vec![file.to_owned()];
    let dropins = PathBuf::from(format!("{}.d", file.display()));
    let mut more: Vec<PathBuf> = std::fs::read_dir(&dropins)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    more.sort();
    files.extend(more);
    files
        .into_iter()
        .filter_map(|f| Some((f.clone(), std::fs::read_to_string(&f).ok()?)))
        .collect()
}

/// Whether a CRI-O configuration declares a VM runtime whose `runtime_path` is hull's shim; the
/// name of its table when it does.
pub fn crio_registers_hull(text: &str) -> Option<String> {
    let value: toml::Table = toml::from_str(text).ok()?;
    let runtimes = value
        .get("crio")?
        .get("runtime")?
        .get("runtimes")?
        .as_table()?;
    runtimes.iter().find_map(|(name, rt)| {
        let vm = rt.get("runtime_type")?.as_str()? == "vm";
        let shim = rt
            .get("runtime_path")?
            .as_str()?
            .ends_with("containerd-shim-hull-v2");
        (vm && shim).then(|| name.clone())
    })
}

fn crio_check(probe: &EngineProbe) -> Check {
    let on_path = probe.on_path("crio");
    let tests_copy = probe.engines_dir.join("cri-o/crio");
    let Some(binary) = on_path
        .clone()
        .or_else(|| tests_copy.is_file().then_some(tests_copy))
    else {
        return Check {
            what: "cri-o",
            outcome: Outcome::Ok,
            detail: "not installed".into(),
            fix: None,
        };
    };
    let found = format!("{} ({})", version_of(&binary, "CRI-O"), binary.display());
    let texts = config_texts(&probe.crio_config);
    let registered = texts
        .iter()
        .find_map(|(file, text)| Some((file, crio_registers_hull(text)?)));
    match (registered, on_path) {
        (Some((file, name)), _) => Check {
            what: "cri-o",
            outcome: Outcome::Ok,
            detail: format!(
                "{found}: {} declares [crio.runtime.runtimes.{name}] (runtime_type \"vm\", hull's \
                 shim)",
                file.display()
            ),
            fix: None,
        },
        (None, None) => Check {
            what: "cri-o",
            outcome: Outcome::Ok,
            detail: format!(
                "{found}, the engine tests' own: not on PATH; they start it with a configuration \
                 that declares hull as a VM runtime"
            ),
            fix: None,
        },
        (None, Some(_)) => Check {
            what: "cri-o",
            outcome: Outcome::Warn,
            detail: format!(
                "{found}: no [crio.runtime.runtimes.*] with runtime_type = \"vm\" and hull's shim \
                 in {} or its .d directory",
                probe.crio_config.display()
            ),
            fix: Some(
                "add [crio.runtime.runtimes.hull] runtime_path = \
                 \"/usr/local/bin/containerd-shim-hull-v2\", runtime_type = \"vm\" (docs/cri.md)"
                    .into(),
            ),
        },
    }
}

fn docker_check(probe: &EngineProbe) -> Check {
    let Some(binary) = probe.on_path("docker") else {
        return Check {
            what: "docker",
            outcome: Outcome::Ok,
            detail: "not installed".into(),
            fix: None,
        };
    };
    let found = format!("{} ({})", version_of(&binary, "Docker"), binary.display());
    if probe.on_path("dockerd").is_none() {
        return Check {
            what: "docker",
            outcome: Outcome::Ok,
            detail: format!(
                "{found}: the client only, no dockerd here (a Docker engine elsewhere registers \
                 {RUNTIME_NAME} in its own daemon.json)"
            ),
            fix: None,
        };
    }
    let text = std::fs::read_to_string(&probe.docker_config).unwrap_or_default();
    if text.contains(RUNTIME_NAME) {
        Check {
            what: "docker",
            outcome: Outcome::Ok,
            detail: format!(
                "{found}: {} names {RUNTIME_NAME}",
                probe.docker_config.display()
            ),
            fix: None,
        }
    } else {
        Check {
            what: "docker",
            outcome: Outcome::Warn,
            detail: format!(
                "{found}: {} does not name {RUNTIME_NAME} (`docker run --runtime \
                 {RUNTIME_NAME}` works on Docker 23+ without it)",
                probe.docker_config.display()
            ),
            fix: Some(format!(
                "add \"runtimes\": {{\"hull\": {{\"runtimeType\": \"{RUNTIME_NAME}\"}}}} to {}",
                probe.docker_config.display()
            )),
        }
    }
}

fn podman_check(probe: &EngineProbe) -> Check {
    let Some(binary) = probe.on_path("podman") else {
        return Check {
            what: "podman",
            outcome: Outcome::Ok,
            detail: "not installed".into(),
            fix: None,
        };
    };
    let found = format!("{} ({})", version_of(&binary, "podman"), binary.display());
    Check {
        what: "podman",
        outcome: Outcome::Ok,
        detail: format!(
            "{found}: hull is not registered with it (podman runs OCI runtime binaries, not \
             containerd shims; run hull pods through containerd or CRI-O)"
        ),
        fix: None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn fake(dir: &Path, name: &str, version_line: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{version_line}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn probe(root: &Path) -> EngineProbe {
        EngineProbe {
            path: vec![root.join("bin")],
            engines_dir: root.join("engines"),
            containerd_config: root.join("containerd.toml"),
            crio_config: root.join("crio.conf"),
            docker_config: root.join("daemon.json"),
        }
    }

    #[test]
    fn versions_come_out_of_each_engines_words() {
        let v = |t| parse_version(t);
        assert_eq!(
            v("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"),
            Some("1.6.20~ds1")
        );
        assert_eq!(v("crio version 1.26.4\nVersion: 1.26.4"), Some("1.26.4"));
        assert_eq!(
            v("Docker version 26.1.5+dfsg1, build a72d7cd"),
            Some("26.1.5+dfsg1")
        );
        assert_eq!(v("podman version 5.4.2"), Some("5.4.2"));
        assert_eq!(v("no version here"), None);
    }

    #[test]
    fn each_engine_says_what_it_found() {
        let root = tempfile::tempdir().unwrap();
        let p = probe(root.path());
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        // Nothing installed: containerd warns, the others say so.
        let c = checks(&p);
        let find = |c: &[Check], what: &str| c.iter().find(|x| x.what == what).cloned().unwrap();
        assert_eq!(find(&c, "containerd").outcome, Outcome::Warn);
        for what in ["cri-o", "docker", "podman"] {
            assert_eq!(find(&c, what).detail, "not installed", "{what}");
        }
        // Everything installed, nothing registered.
        let bin = root.path().join("bin");
        fake(
            &bin,
            "containerd",
            "containerd github.com/containerd/containerd 1.6.20~ds1 x",
        );
        fake(&bin, "crio", "crio version 1.26.4");
        fake(&bin, "docker", "Docker version 26.1.5+dfsg1, build a72d7cd");
        assert!(find(&checks(&p), "docker")
            .detail
            .contains("the client only"));
        fake(
            &bin,
            "dockerd",
            "Docker version 26.1.5+dfsg1, build a72d7cd",
        );
        fake(&bin, "podman", "podman version 5.4.2");
        let tests_ctrd = root.path().join("engines/containerd-1.7/bin");
        std::fs::create_dir_all(&tests_ctrd).unwrap();
        fake(
            &tests_ctrd,
            "containerd",
            "containerd github.com/containerd/containerd 1.7.24~ds1 y",
        );
        let c = checks(&p);
        assert_eq!(c.len(), 5, "{c:?}");
        assert!(
            c[0].detail.starts_with("containerd 1.6.20~ds1 ("),
            "{}",
            c[0]
        );
        assert_eq!(c[0].outcome, Outcome::Warn);
        assert!(
            c[1].detail.starts_with("containerd 1.7.24~ds1 ("),
            "{}",
            c[1]
        );
        assert_eq!(c[1].outcome, Outcome::Ok);
        let crio = find(&c, "cri-o");
        assert_eq!(crio.outcome, Outcome::Warn, "{crio}");
        assert!(crio.detail.starts_with("CRI-O 1.26.4"), "{crio}");
        assert_eq!(find(&c, "docker").outcome, Outcome::Warn);
        assert!(find(&c, "podman").detail.contains("not registered"));
        // Registered everywhere it can be.
        std::fs::write(
            &p.containerd_config,
            "runtime_type = \"io.containerd.hull.v2\"",
        )
        .unwrap();
        std::fs::create_dir_all(root.path().join("crio.conf.d")).unwrap();
        std::fs::write(
            root.path().join("crio.conf.d/10-hull.conf"),
            "[crio.runtime.runtimes.hull]\nruntime_path = \"/usr/local/bin/containerd-shim-hull-v2\"\n\
             runtime_type = \"vm\"\n",
        )
        .unwrap();
        std::fs::write(
            &p.docker_config,
            r#"{"runtimes": {"hull": {"runtimeType": "io.containerd.hull.v2"}}}"#,
        )
        .unwrap();
        let c = checks(&p);
        assert_eq!(find(&c, "containerd").outcome, Outcome::Ok);
        let crio = find(&c, "cri-o");
        assert_eq!(crio.outcome, Outcome::Ok, "{crio}");
        assert!(crio.detail.contains("10-hull.conf"), "{crio}");
        assert_eq!(find(&c, "docker").outcome, Outcome::Ok);
    }

    #[test]
    fn only_a_vm_runtime_on_hulls_shim_registers_it_with_cri_o() {
        let ok = "[crio.runtime.runtimes.kata]\nruntime_path = \"/x/containerd-shim-hull-v2\"\n\
                  runtime_type = \"vm\"\n";
        assert_eq!(crio_registers_hull(ok).as_deref(), Some("kata"));
        let oci = "[crio.runtime.runtimes.hull]\nruntime_path = \"/x/containerd-shim-hull-v2\"\n\
                   runtime_type = \"oci\"\n";
        assert_eq!(crio_registers_hull(oci), None);
        assert_eq!(crio_registers_hull("not toml ["), None);
    }
}
