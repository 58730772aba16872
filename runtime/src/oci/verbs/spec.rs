//! `spec`: write a starting `config.json` into the bundle (oci-spec's default Linux spec, as
//! `runc spec` does).

use std::path::Path;

use crate::oci::OciError;

/// Writes `<bundle>/config.json`; refuses to overwrite one.
pub fn run(bundle: &Path) -> Result<i32, OciError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(OciError::InvalidArgument(format!(
            "file {} exists; remove it first",
            path.display()
        )));
    }
    let spec = oci_spec::runtime::Spec::default();
    let json = serde_json::to_string_pretty(&spec)
        .map_err(|e| OciError::Io("cannot encode the spec".into(), std::io::Error::other(e)))?;
    std::fs::write(&path, json)
        .map_err(OciError::io(format!("cannot write {}", path.display())))?;
    Ok(0)
}
