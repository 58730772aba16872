//! Real-KVM tests: small guests built here run under the real `hull-vmm` binary on this host's
//! `/dev/kvm` (hardware or PVM: guest kernel mode is emulated on PVM, slowly but exactly) and
//! exercise the exit paths. They need `/dev/kvm`; under `CI=true` a missing one is a failure.

mod common;

use common::run_guest;
use hull_vmm::testing::{Cmd, SCRATCH};

fn serial_text(cmds: &[Cmd], text: &[u8]) -> Vec<Cmd> {
    let mut v: Vec<Cmd> = text
        .iter()
        .map(|b| Cmd::Out8 {
            port: 0x3f8,
            value: *b,
        })
        .collect();
    v.extend_from_slice(cmds);
    v
}

#[test]
fn serial_output_then_i8042_reset_is_a_clean_exit() {
    let Some(run) = run_guest(&serial_text(&[], b"hello from the guest\n"), &[]) else {
        return;
    };
    run.assert_exit(0);
    assert_eq!(run.console, "hello from the guest\n");
    assert!(run.stderr.contains("Reset"), "{}", run.stderr);
}

#[test]
fn triple_fault_is_a_clean_exit() {
    let Some(run) = run_guest(&serial_text(&[Cmd::TripleFault], b"x"), &[]) else {
        return;
    };
    run.assert_exit(0);
    assert_eq!(run.console, "x");
    assert!(run.stderr.contains("TripleFault"), "{}", run.stderr);
}

#[test]
fn unmapped_mmio_reads_all_ones_and_writes_are_dropped() {
    let cmds = [
        Cmd::Write32 {
            addr: 0xc000_1000,
            value: 0x1234_5678,
        },
        Cmd::ReadOut {
            addr: 0xc000_1000,
            port: 0x3f8,
        },
        Cmd::Out8 {
            port: 0x3f8,
            value: b'\n',
        },
    ];
    let Some(run) = run_guest(&cmds, &["--exit-stats"]) else {
        return;
    };
    run.assert_exit(0);
    assert_eq!(run.console_bytes, [0xff, b'\n']);
    assert!(run.stderr.contains("unclaimed=2"), "{}", run.stderr);
}

#[test]
fn ram_writes_are_visible_to_the_guest() {
    let cmds = [
        Cmd::Write32 {
            addr: SCRATCH,
            value: u32::from_le_bytes(*b"ram\n"),
        },
        Cmd::Echo {
            addr: SCRATCH,
            len: 4,
            port: 0x3f8,
        },
    ];
    let Some(run) = run_guest(&cmds, &["--vcpus", "2", "--mem-mib", "32"]) else {
        return;
    };
    run.assert_exit(0);
    assert_eq!(run.console, "ram\n");
}

/// The 8-, 16- and 64-bit writes of the interpreter (the hostile guest uses them on registers).
#[test]
fn writes_of_every_width_land_in_ram() {
    let cmds = [
        Cmd::Write64 {
            addr: SCRATCH,
            value: u64::from_le_bytes(*b"abcdefgh"),
        },
        Cmd::Write16 {
            addr: SCRATCH + 2,
            value: u16::from_le_bytes(*b"XY"),
        },
        Cmd::Write8 {
            addr: SCRATCH + 7,
            value: b'\n',
        },
        Cmd::Echo {
            addr: SCRATCH,
            len: 8,
            port: 0x3f8,
        },
    ];
    let Some(run) = run_guest(&cmds, &[]) else {
        return;
    };
    run.assert_exit(0);
    assert_eq!(run.console, "abXYefg\n");
}
