//! The busybox OCI image test containers run: built offline from the host's busybox-static (no
//! registry), once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::IMAGE;
use crate::rootfs::busybox_rootfs;

/// The busybox OCI image archive (built once per test process under `target/hull/test`).
pub fn busybox_image() -> Result<PathBuf, String> {
    static IMAGE_TAR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE_TAR
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hull/test");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let out = dir.join(format!("busybox-oci-{}.tar", std::process::id()));
            build_busybox_image(&out, IMAGE)?;
            Ok(out)
        })
        .clone()
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn sha256_file(path: &Path) -> Result<String, String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    Ok(String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Builds an OCI image archive (`oci-layout`, `index.json`, `blobs/sha256/…`) of a busybox root
/// filesystem made from the host's busybox-static, named `name`, without any registry.
pub fn build_busybox_image(out: &Path, name: &str) -> Result<(), String> {
    build_busybox_image_with(out, name, &[])
}

/// [`build_busybox_image`] with `extra` host files copied in, each to a path in the image
/// (e.g. a static probe to `bin/probe`; missing directories are made).
pub fn build_busybox_image_with(
    out: &Path,
    name: &str,
    extra: &[(&Path, &str)],
) -> Result<(), String> {
    build_image(out, name, extra, None)
}

/// [`build_busybox_image_with`] whose command is `entrypoint` (when given) instead of `sh`.
pub fn build_image(
    out: &Path,
    name: &str,
    extra: &[(&Path, &str)],
    entrypoint: Option<&[&str]>,
) -> Result<(), String> {
    let files: Vec<ImageFile> = extra
        .iter()
        .map(|(from, to)| ImageFile {
            from,
            to,
            mode: None,
        })
        .collect();
    build_image_files(out, name, &files, entrypoint)
}

/// A host file copied into a test image (owned by root, as every file of the image is).
#[derive(Debug, Clone, Copy)]
pub struct ImageFile<'a> {
    /// The host file.
    pub from: &'a Path,
    /// Its path in the image (missing directories are made).
    pub to: &'a str,
    /// Its mode (e.g. `0o4755` for a setuid-root binary); the host file's when `None`.
    pub mode: Option<u32>,
}

/// [`build_image`] with files whose mode may be chosen.
pub fn build_image_files(
    out: &Path,
    name: &str,
    extra: &[ImageFile],
    entrypoint: Option<&[&str]>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rootfs = work.path().join("rootfs");
    busybox_rootfs(&rootfs).map_err(|e| format!("busybox rootfs: {e}"))?;
    for ImageFile { from, to, mode } in extra {
        if let Some(parent) = rootfs.join(to).parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{to}: {e}"))?;
        }
        std::fs::copy(from, rootfs.join(to))
            .map_err(|e| format!("{} → {to}: {e}", from.display()))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(rootfs.join(to), std::fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("{to}: {e}"))?;
        }
    }
    let image = work.path().join("image");
    let blobs = image.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| e.to_string())?;
    let layer = work.path().join("layer.tar");
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let blob = |path: &Path| -> Result<(String, u64), String> {
        let digest = sha256_file(path)?;
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        std::fs::copy(path, blobs.join(&digest)).map_err(|e| e.to_string())?;
        Ok((digest, size))
    };
    let (layer_digest, layer_size) = blob(&layer)?;
    let mut image_config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"]
    });
    if let Some(entrypoint) = entrypoint {
        image_config["Entrypoint"] = serde_json::json!(entrypoint);
        image_config["Cmd"] = serde_json::json!([]);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "hull: busybox-static, built offline" }]
    });
    let write_json = |file: &str, value: &serde_json::Value| -> Result<PathBuf, String> {
        let path = work.path().join(file);
        std::fs::write(&path, serde_json::to_vec(value).unwrap()).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let (config_digest, config_size) = blob(&write_json("config.json", &config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_size
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_size
        }]
    });
    let (manifest_digest, manifest_size) = blob(&write_json("manifest.json", &manifest)?)?;
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag
            }
        }]
    });
    std::fs::write(
        image.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        image.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(|e| e.to_string())?;
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&image)
        .arg("-cf")
        .arg(out)
        .args(["oci-layout", "index.json", "blobs"]))?;
    Ok(())
}
