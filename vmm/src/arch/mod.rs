//! x86_64 specifics: the vCPU's initial state (GDT, page tables, registers, MSRs, LAPIC), the
//! CPUID the guest sees, and the MP table that tells the guest how many CPUs it has.

pub mod cpuid;
pub mod mptable;
pub mod regs;
