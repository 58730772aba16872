//! The CPUID a guest sees: KVM's supported set, with per-vCPU topology (APIC ids), the
//! hypervisor bit, and features the configuration asks to hide (`--cpuid-clear cx16,xsave`).
//! Hiding features is how a kernel is kept off instructions a host cannot run for it (on a PVM
//! host: cmpxchg16b, xsave; see FACTS.md).

use std::fmt;
use std::str::FromStr;

use kvm_bindings::kvm_cpuid_entry2;

/// A CPUID register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

/// A named CPUID feature bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Its name, as in `/proc/cpuinfo`.
    pub name: &'static str,
    /// Leaf (EAX).
    pub leaf: u32,
    /// Sub-leaf (ECX).
    pub index: u32,
    /// Register.
    pub reg: Reg,
    /// Bit.
    pub bit: u32,
}

const fn f(name: &'static str, leaf: u32, index: u32, reg: Reg, bit: u32) -> Feature {
    Feature {
        name,
        leaf,
        index,
        reg,
        bit,
    }
}

/// Features that can be hidden by name.
pub const FEATURES: &[Feature] = &[
    f("pcid", 1, 0, Reg::Ecx, 17),
    f("cx16", 1, 0, Reg::Ecx, 13),
    f("x2apic", 1, 0, Reg::Ecx, 21),
    f("popcnt", 1, 0, Reg::Ecx, 23),
    f("tsc_deadline_timer", 1, 0, Reg::Ecx, 24),
    f("xsave", 1, 0, Reg::Ecx, 26),
    f("avx", 1, 0, Reg::Ecx, 28),
    f("rdrand", 1, 0, Reg::Ecx, 30),
    f("avx2", 7, 0, Reg::Ebx, 5),
    f("smep", 7, 0, Reg::Ebx, 7),
    f("erms", 7, 0, Reg::Ebx, 9),
    f("invpcid", 7, 0, Reg::Ebx, 10),
    f("smap", 7, 0, Reg::Ebx, 20),
    f("umip", 7, 0, Reg::Ecx, 2),
    f("pku", 7, 0, Reg::Ecx, 3),
    f("la57", 7, 0, Reg::Ecx, 16),
    f("rdpid", 7, 0, Reg::Ecx, 22),
    f("fsrm", 7, 0, Reg::Edx, 4),
    f("serialize", 7, 0, Reg::Edx, 14),
    f("pdpe1gb", 0x8000_0001, 0, Reg::Edx, 26),
    f("rdtscp", 0x8000_0001, 0, Reg::Edx, 27),
    // KVM paravirtual features (leaf 0x4000_0001): the ones that are hypercalls, which a
    // host's instruction emulator may not run (PVM: secondary CPUs never come up with PV IPIs).
    f("kvm_pv_tlb_flush", 0x4000_0001, 0, Reg::Eax, 9),
    f("kvm_pv_send_ipi", 0x4000_0001, 0, Reg::Eax, 11),
    f("kvm_pv_sched_yield", 0x4000_0001, 0, Reg::Eax, 13),
];

/// A feature name not in [`FEATURES`].
#[derive(Debug, thiserror::Error)]
#[error("unknown CPUID feature {0:?} (known: {known})", known = known_names())]
pub struct UnknownFeature(String);

fn known_names() -> String {
    FEATURES
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Feature {
    type Err = UnknownFeature;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FEATURES
            .iter()
            .find(|f| f.name == s)
            .copied()
            .ok_or_else(|| UnknownFeature(s.to_owned()))
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

const LEAF_FEATURES: u32 = 1;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_TOPOLOGY: u32 = 0x1f;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

fn reg_mut(e: &mut kvm_cpuid_entry2, reg: Reg) -> &mut u32 {
    match reg {
        Reg::Eax => &mut e.eax,
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

/// Adapts KVM's supported CPUID for vCPU `id` of `vcpus`, hiding `hidden`.
pub fn filter(entries: &mut [kvm_cpuid_entry2], id: u8, vcpus: u8, hidden: &[Feature]) {
    for e in entries.iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                // Initial APIC id and logical processor count, so each vCPU knows who it is.
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(vcpus) << 16) | (u32::from(id) << 24);
                if vcpus > 1 {
                    e.edx |= EDX_HTT;
                }
                e.ecx |= ECX_HYPERVISOR;
            }
            LEAF_EXT_TOPOLOGY | LEAF_V2_TOPOLOGY => e.edx = u32::from(id),
            _ => {}
        }
        for feature in hidden {
            if e.function == feature.leaf && e.index == feature.index {
                *reg_mut(e, feature.reg) &= !(1 << feature.bit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, v: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: v,
            ebx: v,
            ecx: v,
            edx: v,
            ..Default::default()
        }
    }

    #[test]
    fn topology_and_hypervisor_bit_are_per_vcpu() {
        let mut e = vec![entry(1, 0, 0), entry(0xb, 0, 0), entry(0xb, 1, 0)];
        filter(&mut e, 3, 4, &[]);
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[1].edx, 3);
        assert_eq!(e[2].edx, 3);
    }

    #[test]
    fn hidden_features_are_cleared_and_nothing_else() {
        let mut e = vec![
            entry(1, 0, u32::MAX),
            entry(7, 0, u32::MAX),
            entry(7, 1, u32::MAX),
        ];
        let hidden: Vec<Feature> = ["cx16", "xsave", "smap", "fsrm"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        filter(&mut e, 0, 1, &hidden);
        assert_eq!(e[0].ecx, !(1 << 13) & !(1 << 26));
        assert_eq!(e[0].edx, u32::MAX);
        assert_eq!(e[1].ebx, !(1 << 20));
        assert_eq!(e[1].edx, !(1 << 4));
        assert_eq!(e[2].ebx, u32::MAX, "sub-leaf 1 is not touched");
    }

    #[test]
    fn kvm_paravirtual_hypercall_features_can_be_hidden() {
        let mut e = vec![entry(0x4000_0001, 0, u32::MAX)];
        let hidden: Vec<Feature> = ["kvm_pv_send_ipi", "kvm_pv_tlb_flush", "kvm_pv_sched_yield"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        filter(&mut e, 0, 2, &hidden);
        assert_eq!(e[0].eax, !((1 << 9) | (1 << 11) | (1 << 13)));
    }

    #[test]
    fn unknown_feature_names_are_refused_with_the_list() {
        let err = "cmpxchg32b".parse::<Feature>().unwrap_err().to_string();
        assert!(err.contains("cx16") && err.contains("cmpxchg32b"), "{err}");
    }
}
