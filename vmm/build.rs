//! Compiles hull-vmm's seccomp filters (`seccomp/rules.rs`) to BPF, so hull-vmm loads finished
//! programs rather than building them at run time. Each program goes to `OUT_DIR` in
//! `hull_seccomp_bpf`'s format.

use std::collections::BTreeMap;
use std::path::Path;

use seccompiler::{
    BackendError, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

include!("seccomp/rules.rs");

fn write_program(out: &Path, name: &str, filter: Result<SeccompFilter, BackendError>) {
    hull_seccomp_bpf::write_program(out, name, filter).unwrap_or_else(|e| panic!("{e}: {e:?}"));
}

fn main() {
    println!("cargo::rerun-if-changed=seccomp/rules.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    write_program(out, "vcpu", thread_filter(true, false));
    write_program(out, "event-loop", thread_filter(false, false));
    write_program(out, "event-loop-snapshots", thread_filter(false, true));
}
