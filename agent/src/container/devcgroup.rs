//! `linux.resources.devices` enforced the cgroup v2 way: a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! attached to the container's cgroup.
//!
//! The rules are checked from the last to the first and the first match decides (so a later
//! rule overrides an earlier one, as when they are written to cgroup v1's devices.allow/deny in
//! order); when nothing matches, access is denied. A rule matches when its type (`a` = any),
//! major and minor (absent or -1 = any) match and the requested access is within the rule's
//! access letters (the same reading runc uses).
//!
//! The program is attached by the agent once the init process has built its `/dev`, and replaced
//! by `update`. It is written by hand: a handful of instructions per rule.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::sys;

/// A device rule set we cannot load.
#[derive(Debug, thiserror::Error)]
pub enum DevCgroupError {
    /// A rule with a type that has no device cgroup meaning.
    #[error("device cgroup rule type {0:?} is not one of a, b, c")]
    Type(String),
    /// A rule with bad access letters.
    #[error("device cgroup rule access {0:?} is not made of r, w, m")]
    Access(String),
    /// A major/minor out of range.
    #[error("device cgroup rule number {0} is out of range")]
    Number(i64),
    /// Too many rules for one program.
    #[error("{0} device cgroup rules (at most 512)")]
    TooMany(usize),
    /// The kernel refused the program.
    #[error("cannot load the device cgroup program: {log}")]
    Load {
        /// The verifier's log (may be empty).
        log: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Attaching it to the cgroup failed.
    #[error("cannot attach the device cgroup program to {path}")]
    Attach {
        /// The cgroup.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One BPF instruction, as the kernel lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The instruction as the kernel reads it: its eight bytes in memory order.
    fn encode(self) -> u64 {
        let [o0, o1] = self.off.to_ne_bytes();
        let [i0, i1, i2, i3] = self.imm.to_ne_bytes();
        u64::from_ne_bytes([self.code, self.regs, o0, o1, i0, i1, i2, i3])
    }
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const LDX_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const MOV32_X: u8 = 0xbc; // w_dst = w_src
const AND32_K: u8 = 0x54; // w_dst &= imm
const RSH32_K: u8 = 0x74; // w_dst >>= imm
const MOV64_K: u8 = 0xb7; // r_dst = imm
const JNE32_K: u8 = 0x56; // if w_dst != imm goto +off
const EXIT: u8 = 0x95;

/// One rule, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    typ: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

fn number(n: Option<i64>) -> Result<Option<i32>, DevCgroupError> {
    match n {
        None | Some(-1) => Ok(None),
        Some(v) => u32::try_from(v)
            .map(|u| Some(u as i32))
            .map_err(|_| DevCgroupError::Number(v)),
    }
}

fn rule(r: &LinuxDeviceCgroup) -> Result<Rule, DevCgroupError> {
    let typ = match r.typ() {
        None | Some(LinuxDeviceType::A) => None,
        Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
        Some(LinuxDeviceType::P) => return Err(DevCgroupError::Type("p".into())),
    };
    let letters = r.access().clone().unwrap_or_default();
    let mut access = 0;
    for c in letters.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(DevCgroupError::Access(letters.clone())),
        };
    }
    if letters.is_empty() {
        access = ACC_READ | ACC_WRITE | ACC_MKNOD;
    }
    Ok(Rule {
        allow: r.allow(),
        typ,
        major: number(r.major())?,
        minor: number(r.minor())?,
        access,
    })
}

/// Compiles the rules into a program.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, DevCgroupError> {
    if rules.len() > 512 {
        return Err(DevCgroupError::TooMany(rules.len()));
    }
    let rules: Vec<Rule> = rules.iter().map(rule).collect::<Result<_, _>>()?;
    // Context (struct bpf_cgroup_dev_ctx): access_type = access << 16 | type; major; minor.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV32_X, 3, 2, 0, 0),
        insn(AND32_K, 3, 0, 0, 0xffff), // w3 = type
        insn(MOV32_X, 4, 2, 0, 0),
        insn(RSH32_K, 4, 0, 0, 16), // w4 = access
        insn(LDX_W, 5, 1, 4, 0),    // w5 = major
        insn(LDX_W, 6, 1, 8, 0),    // w6 = minor
    ];
    for r in rules.iter().rev() {
        let mut checks: Vec<Insn> = Vec::new();
        // Each check is a "jump to the end of this block when it does not match" with the
        // offset patched below.
        if let Some(t) = r.typ {
            checks.push(insn(JNE32_K, 3, 0, 0, t));
        }
        if r.access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            checks.push(insn(MOV32_X, 7, 4, 0, 0));
            checks.push(insn(AND32_K, 7, 0, 0, !r.access));
            checks.push(insn(JNE32_K, 7, 0, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(insn(JNE32_K, 5, 0, 0, m));
        }
        if let Some(m) = r.minor {
            checks.push(insn(JNE32_K, 6, 0, 0, m));
        }
        let verdict = [
            insn(MOV64_K, 0, 0, 0, i32::from(r.allow)),
            insn(EXIT, 0, 0, 0, 0),
        ];
        let total = checks.len() + verdict.len();
        for (i, c) in checks.iter_mut().enumerate() {
            if c.code == JNE32_K {
                // Jump past the rest of the block: to the first instruction after the verdict.
                c.off = i16::try_from(total - i - 1).unwrap_or(i16::MAX);
            }
        }
        let unconditional = checks.is_empty();
        p.extend(checks);
        p.extend(verdict);
        if unconditional {
            // Matches everything: what follows could never run, and the verifier refuses
            // unreachable instructions.
            return Ok(p);
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

/// How often a program load answered with EAGAIN is tried.
const LOAD_ATTEMPTS: u32 = 5;

/// Loads a compiled program into the kernel.
fn load(prog: &[Insn]) -> Result<OwnedFd, DevCgroupError> {
    let insns: Vec<u64> = prog.iter().map(|i| i.encode()).collect();
    let mut log = vec![0u8; 16384];
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"hull_devcg");
    // The kernel may answer EAGAIN transiently (seen once under load): try a few times.
    let mut attempts = 0;
    let loaded = loop {
        let r = sys::bpf_prog_load(
            BPF_PROG_TYPE_CGROUP_DEVICE,
            BPF_CGROUP_DEVICE,
            &insns,
            c"Apache-2.0",
            name,
            &mut log,
        );
        attempts += 1;
        if !matches!(r, Err(nix::Error::EAGAIN)) || attempts >= LOAD_ATTEMPTS {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    loaded.map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        DevCgroupError::Load {
            log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
            source: e.into(),
        }
    })
}

/// The devices every container may use whatever its rules say, appended after them (so they win),
/// as runc does: mknod of any node, and the default nodes (`null`, `zero`, `full`, `random`,
/// `urandom`, `tty`, `console`, `ptmx`, `pts/*`, `net/tun`). Engines such as containerd send a
/// deny-all rule and rely on this.
pub fn with_default_allows(rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let allow = |typ: &str, major: i64, minor: i64, access: &str| {
        serde_json::from_value::<LinuxDeviceCgroup>(serde_json::json!({
            "allow": true, "type": typ, "major": major, "minor": minor, "access": access
        }))
        .expect("a well-formed device rule")
    };
    let mut all = rules.to_vec();
    all.extend([
        allow("c", -1, -1, "m"),
        allow("b", -1, -1, "m"),
        allow("c", 1, 3, "rwm"),
        allow("c", 1, 5, "rwm"),
        allow("c", 1, 7, "rwm"),
        allow("c", 1, 8, "rwm"),
        allow("c", 1, 9, "rwm"),
        allow("c", 5, 0, "rwm"),
        allow("c", 5, 1, "rwm"),
        allow("c", 5, 2, "rwm"),
        allow("c", 136, -1, "rwm"),
        allow("c", 10, 200, "rwm"),
    ]);
    all
}

/// Loads the program for `rules` (plus [`with_default_allows`]) and attaches it to the cgroup at
/// `cgroup` (replacing the program attached before, if any).
pub fn apply(cgroup: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DevCgroupError> {
    let prog_fd = load(&compile(&with_default_allows(rules))?)?;
    let attach_err = |source| DevCgroupError::Attach {
        path: cgroup.display().to_string(),
        source,
    };
    let dir = std::fs::File::open(cgroup).map_err(attach_err)?;
    // The attachment keeps its own reference to the program, so closing `prog_fd` is fine.
    sys::bpf_prog_attach(dir.as_fd(), prog_fd.as_fd(), BPF_CGROUP_DEVICE)
        .map_err(|e| attach_err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    /// Runs the program on one request, as the kernel would.
    /// (A tiny interpreter of the opcodes used: the 32-bit truncations are the point.)
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )]
    fn run(p: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                MOV32_X => r[dst] = r[src] & 0xffff_ffff,
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE32_K => {
                    if r[dst] as u32 != i.imm as u32 {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => return r[0] as i64,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn containerd_style_rules() {
        let p = compile(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":5,"access":"r"},
                {"allow":true,"type":"c","access":"m"},
                {"allow":true,"type":"b","major":8,"access":"rw"}]"#,
        ))
        .unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1, "null rw");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1, "zero r");
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 5), 0, "zero w");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 7), 0, "full r");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 10, 229), 1, "any char mknod");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 0, "block mknod");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 16), 1, "block 8:* r");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 9, 0), 0, "block 9:0");
    }

    #[test]
    fn later_rules_override_and_empty_denies() {
        let p = compile(&rules(
            r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3}]"#,
        ))
        .unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&compile(&[]).unwrap(), DEV_CHAR, ACC_READ, 1, 3), 0);
        let wild = compile(&rules(
            r#"[{"allow":true,"type":"a","major":-1,"minor":-1,"access":"rwm"}]"#,
        ))
        .unwrap();
        assert_eq!(run(&wild, DEV_BLOCK, ACC_WRITE, 4000, 1), 1);
    }

    #[test]
    fn default_devices_stay_usable_under_a_deny_all_rule() {
        let p = compile(&with_default_allows(&rules(
            r#"[{"allow":false,"access":"rwm"}]"#,
        )))
        .unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1, "null");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1, "zero");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 4), 1, "pts/4");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 8, 1), 1, "mknod is allowed");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "a disk is not");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 10, 229), 0, "fuse is not");
    }

    #[test]
    fn rejects_bad_rules() {
        assert!(matches!(
            compile(&rules(r#"[{"allow":true,"type":"p"}]"#)),
            Err(DevCgroupError::Type(_))
        ));
        assert!(matches!(
            compile(&rules(r#"[{"allow":true,"access":"rx"}]"#)),
            Err(DevCgroupError::Access(_))
        ));
        assert!(matches!(
            compile(&rules(r#"[{"allow":true,"major":-5}]"#)),
            Err(DevCgroupError::Number(-5))
        ));
    }

    #[test]
    fn the_kernel_accepts_the_program() {
        if !hull_test_support::runnable(
            nix::unistd::geteuid().is_root(),
            "the_kernel_accepts_the_program: needs root",
        ) {
            return;
        }
        // Loading alone (attaching is covered by the host integration tests).
        let prog = compile(&rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#,
        ))
        .unwrap();
        if let Err(e) = load(&prog) {
            panic!("{e}");
        }
    }
}
