//! containerd end to end: stdin arrives whole through `ctr run` and `ctr task exec`, to a
//! reader that keeps up and to one that starts late — checksummed inside the guest (busybox's
//! `md5sum`) against the host's sum (issue 22: `CloseIO` came while the tail of the input still
//! sat in the fifo, and the shim dropped it; always whole 64 KiB reads short).

use std::process::Output;
use std::time::{Duration, Instant};

use hull_tests::containerd::{Containerd, IMAGE, RUNTIME};
use hull_tests::data::bytes;
use hull_tests::stdio::{md5_hex, run_with_input};

const MB: usize = 1_000_000;

/// The input sizes.
const SIZES: [usize; 3] = [MB, 4 * MB, 16 * MB];

/// Runs per size through `ctr task exec` (one running container): the count the issue asks for.
const EXEC_RUNS: usize = 20;
/// Runs per size to the late reader through `ctr task exec` (each sleeps first).
const EXEC_SLOW_RUNS: usize = 10;
/// Runs per size through `ctr run` (each boots a VM; the copy and `CloseIO` code is the same as
/// an exec's, so fewer runs here keep CI short).
const RUN_RUNS: usize = 5;
/// Runs per size to the late reader through `ctr run`.
const RUN_SLOW_RUNS: usize = 3;

/// Reads all its input and prints its MD5.
const READER: &str = "md5sum";

/// The same, starting late: every buffer on the way is full when the client has written its
/// last byte and asks for the end of input.
const SLOW_READER: &str = "sleep 0.5; md5sum";

/// One payload: its bytes and the host's MD5.
struct Payload {
    data: Vec<u8>,
    md5: String,
}

fn payloads() -> Vec<Payload> {
    SIZES
        .iter()
        .map(|&len| {
            let data = bytes(len as u64, len);
            let md5 = md5_hex(&data);
            Payload { data, md5 }
        })
        .collect()
}

/// Checks one run's output; returns what was wrong with it, if anything.
fn verdict(out: &Output, p: &Payload) -> Option<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && stdout.split_whitespace().next() == Some(p.md5.as_str());
    (!ok).then(|| {
        format!(
            "status {:?}, md5 {:?} (want {}); stderr: {}",
            out.status.code(),
            stdout.trim(),
            p.md5,
            stderr.trim()
        )
    })
}

/// Sends every payload `runs` times through `run` (which gets the payload and a run number);
/// panics with every bad run.
fn sweep(c: &Containerd, what: &str, runs: usize, mut run: impl FnMut(&Payload, usize) -> Output) {
    let started = Instant::now();
    let mut bad = Vec::new();
    for p in payloads() {
        for r in 0..runs {
            let out = run(&p, r);
            if let Some(why) = verdict(&out, &p) {
                bad.push(format!("{} bytes, run {r}: {why}", p.data.len()));
            }
        }
    }
    eprintln!(
        "{what}: {} runs in {:.1} s, {} bad",
        SIZES.len() * runs,
        started.elapsed().as_secs_f64(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{what}: {} of {} runs lost input:\n{}\n--- containerd log (tail) ---\n{}",
        bad.len(),
        SIZES.len() * runs,
        bad.join("\n"),
        hull_tests::containerd::tail(&c.log(), 40)
    );
}

fn ctr_run(c: &Containerd, id: &str, script: &str, input: &[u8]) -> Output {
    let mut cmd = c.ctr_command();
    cmd.args([
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        id,
        "sh",
        "-c",
        script,
    ]);
    let out = run_with_input(cmd, input);
    c.assert_clean(id, Duration::from_secs(10));
    out
}

fn ctr_exec(c: &Containerd, id: &str, exec_id: &str, script: &str, input: &[u8]) -> Output {
    let mut cmd = c.ctr_command();
    cmd.args(["task", "exec", "--exec-id", exec_id, id, "sh", "-c", script]);
    run_with_input(cmd, input)
}

#[test]
fn stdin_through_ctr_run_arrives_whole() {
    let Some(c) = Containerd::start() else { return };
    sweep(&c, "ctr run", RUN_RUNS, |p, r| {
        ctr_run(&c, &format!("in-{}-{r}", p.data.len()), READER, &p.data)
    });
}

#[test]
fn stdin_through_ctr_run_to_a_slow_reader_arrives_whole() {
    let Some(c) = Containerd::start() else { return };
    sweep(&c, "ctr run, slow reader", RUN_SLOW_RUNS, |p, r| {
        ctr_run(
            &c,
            &format!("slow-{}-{r}", p.data.len()),
            SLOW_READER,
            &p.data,
        )
    });
}

#[test]
fn stdin_through_ctr_task_exec_arrives_whole() {
    let Some(c) = Containerd::start() else { return };
    // One container for every exec: no boot per run.
    c.run_detached("execs", &["sleep", "3600"]);
    for (tag, what, script, runs) in [
        ("in", "ctr task exec", READER, EXEC_RUNS),
        (
            "slow",
            "ctr task exec, slow reader",
            SLOW_READER,
            EXEC_SLOW_RUNS,
        ),
    ] {
        sweep(&c, what, runs, |p, r| {
            let exec_id = format!("{tag}-{}-{r}", p.data.len());
            ctr_exec(&c, "execs", &exec_id, script, &p.data)
        });
    }
    c.remove("execs");
    c.assert_clean("execs", Duration::from_secs(10));
}
