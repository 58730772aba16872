//! `hull --version` is read by the engines that run hull as their OCI runtime: dockerd and Podman
//! parse runc's shape (a `<name> version <v>` line, `commit:`, `spec:`) for `docker info` and
//! `podman info`, and dockerd logs "failed to parse" for anything else.

use std::process::Command;

#[test]
fn version_flags_print_runcs_three_lines() {
    for flag in ["--version", "-v"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hull"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{flag}: {text:?}");
        assert_eq!(
            lines[0],
            format!("hull version {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
        assert!(lines[1].starts_with("commit: "), "{flag}: {text:?}");
        assert_eq!(
            lines[2],
            format!("spec: {}", hull_runtime::oci::OCI_VERSION),
            "{flag}"
        );
    }
}

#[test]
fn the_version_verb_still_says_what_hull_speaks() {
    let out = Command::new(env!("CARGO_BIN_EXE_hull"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("io.containerd.hull.v2"), "{text}");
    assert!(text.contains("agent protocol"), "{text}");
}
