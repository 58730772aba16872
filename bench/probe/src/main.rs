//! `hull-bench-probe`: the CPU workloads `hull bench` runs inside each runtime's container and on
//! the host, built static so the same binary runs everywhere (copied into the benchmark image).
//!
//! - `getppid N`: N `getppid` system calls (the cheapest real syscall: its cost is the kernel
//!   entry/exit the runtime adds);
//! - `compute N`: N rounds of an integer mix (no syscalls, no memory traffic: pure vCPU speed);
//! - `spawn N PROG [ARG…]`: N fork + exec + wait of PROG (process creation, page faults, exec).
//!
//! Each prints one line of JSON: `{"op":"getppid","n":N,"seconds":S,"ns_per_op":X}`.

use std::hint::black_box;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

fn getppid(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
}

fn compute(n: u64) {
    let mut x = black_box(0x9e37_79b9_7f4a_7c15_u64);
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(i);
    }
    black_box(x);
}

fn spawn(n: u64, prog: &str, args: &[String]) -> Result<(), String> {
    for _ in 0..n {
        let status = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{prog}: {e}"))?;
        if !status.success() {
            return Err(format!("{prog} exited with {status}"));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(op), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: hull-bench-probe getppid|compute N | spawn N PROG [ARG…]");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let outcome = match op.as_str() {
        "getppid" => {
            getppid(n);
            Ok(())
        }
        "compute" => {
            compute(n);
            Ok(())
        }
        "spawn" => match args.get(2) {
            Some(prog) => spawn(n, prog, &args[3..]),
            None => Err("spawn needs a program".to_owned()),
        },
        other => Err(format!("unknown workload {other:?}")),
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = outcome {
        eprintln!("hull-bench-probe: {e}");
        return ExitCode::FAILURE;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_op = seconds * 1e9 / n.max(1) as f64;
    println!("{{\"op\":\"{op}\",\"n\":{n},\"seconds\":{seconds},\"ns_per_op\":{per_op}}}");
    ExitCode::SUCCESS
}
