//! Compiles the shim's seccomp filters (`seccomp/shim_rules.rs`) to BPF, so the shim loads a
//! finished program rather than building one at run time. Each program is written to `OUT_DIR`
//! as its instructions, 8 bytes each (code u16, jt u8, jf u8, k u32; little endian).

use std::collections::BTreeMap;
use std::path::Path;

use seccompiler::{
    BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

include!("seccomp/shim_rules.rs");

fn write_program(out: &Path, name: &str, filter: Result<SeccompFilter, BackendError>) {
    hull_seccomp_bpf::write_program(out, name, filter).unwrap_or_else(|e| panic!("{e}: {e:?}"));
}

fn main() {
    println!("cargo::rerun-if-changed=seccomp/shim_rules.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    write_program(out, "shim", shim_allowlist());
    write_program(out, "shim-clone3", shim_clone3_enosys());
}
