//! containerd end to end: a pod VM of any shape the hull configuration allows boots with that
//! shape. Guest RAM above 1 GiB (the VMM jail's file-size limit once capped the guest-RAM memfd
//! there, and every such pod failed), the configured maximum of RAM and of vCPUs, then a seeded
//! sweep of random shapes within the bounds for a bounded time. Each pod reports its `MemTotal`
//! and CPU count from inside, and exits with a code the test picked.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use hull_runtime::shim::config::HullConfig;
use hull_tests::containerd::{Containerd, IMAGE, RUNTIME};

/// What a pod saw inside, and how it ended.
#[derive(Debug)]
struct Seen {
    code: Option<i32>,
    mem_total_kib: u64,
    cpus: u32,
    explain: String,
}

/// Runs a one-shot container as pod `id` with extra `flags` (annotations, limits); it prints its
/// `MemTotal` and CPU count and exits with `code`.
fn run(c: &Containerd, id: &str, flags: &[&str], code: u8) -> Seen {
    let script = format!(
        "set -- $(head -n 1 /proc/meminfo); echo mem=$2; \
         echo cpus=$(grep -c ^processor /proc/cpuinfo); exit {code}"
    );
    let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, id, "sh", "-c", &script]);
    let out = c.ctr(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> Option<u64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.trim().parse().ok())
    };
    let seen = Seen {
        code: out.status.code(),
        mem_total_kib: field("mem").unwrap_or(0),
        cpus: field("cpus").map_or(0, |n| u32::try_from(n).unwrap_or(0)),
        explain: c.explain(&out),
    };
    c.assert_clean(id, Duration::from_secs(10));
    seen
}

/// The `MemTotal` a guest of `mib` MiB reports: its RAM less what the kernel keeps for itself
/// (its image, the page structures and early allocations: measured 35 MiB of 1100, 49 of 2048,
/// 220 of 8192). The lower bound still tells 1100 MiB from 1024.
fn mem_total_range(mib: u32) -> RangeInclusive<u64> {
    let kib = u64::from(mib) * 1024;
    kib - kib / 32 - 48 * 1024..=kib
}

/// Boots pod `id` with `flags` and asserts it has `mib` MiB and `vcpus` vCPUs and exits `code`.
fn assert_shape(c: &Containerd, id: &str, flags: &[&str], mib: u32, vcpus: u32, code: u8) {
    let started = Instant::now();
    let seen = run(c, id, flags, code);
    eprintln!(
        "{id}: {mib} MiB, {vcpus} vCPUs: MemTotal {} KiB, {} CPUs, exit {:?}, {:.1} s",
        seen.mem_total_kib,
        seen.cpus,
        seen.code,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(seen.code, Some(i32::from(code)), "{id}: {}", seen.explain);
    assert!(
        mem_total_range(mib).contains(&seen.mem_total_kib),
        "{id}: MemTotal {} KiB is not {mib} MiB of guest RAM ({:?})\n{}",
        seen.mem_total_kib,
        mem_total_range(mib),
        seen.explain
    );
    assert_eq!(seen.cpus, vcpus, "{id}: {}", seen.explain);
}

fn annotations(mib: u32, vcpus: u32) -> [String; 4] {
    [
        "--annotation".into(),
        format!("io.hull.memory_mib={mib}"),
        "--annotation".into(),
        format!("io.hull.vcpus={vcpus}"),
    ]
}

fn config(c: &Containerd) -> HullConfig {
    HullConfig::load_from(&c.dir().join("hull.toml")).expect("the test's hull config")
}

#[test]
fn pods_above_one_gib_and_at_the_configured_maxima_boot_with_that_size() {
    let Some(c) = Containerd::start() else { return };
    let max = config(&c);
    // Just above 1 GiB, by annotation.
    let flags = annotations(1100, 1);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_shape(&c, "gib1100", &flags, 1100, 1, 0);
    // 2 GiB from a container memory limit: 1920 MiB plus the configured overhead.
    let limit = (2048 - u64::from(max.memory_overhead_mib)) << 20;
    let limit = limit.to_string();
    assert_shape(&c, "limit2048", &["--memory-limit", &limit], 2048, 1, 3);
    // The largest pod the configuration allows, in RAM and vCPUs at once.
    let flags = annotations(max.max_memory_mib, max.max_vcpus);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_shape(&c, "largest", &flags, max.max_memory_mib, max.max_vcpus, 42);
}

/// SplitMix64: a seeded sequence, enough for picking shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (small ranges: the bias is negligible).
    fn within(&mut self, range: RangeInclusive<u32>) -> u32 {
        let span = u64::from(range.end() - range.start()) + 1;
        range.start() + u32::try_from(self.next() % span).expect("within the span")
    }
}

#[test]
fn a_seeded_sweep_of_vm_shapes_within_the_configured_bounds_boots_each_shape() {
    let Some(c) = Containerd::start() else { return };
    let bounds = config(&c);
    let seed = hull_tests::sweep::seed("HULL_SHAPE_SWEEP_SEED");
    eprintln!("shape sweep: seed {seed} (rerun with HULL_SHAPE_SWEEP_SEED={seed})");
    let mut rng = Rng(seed);
    // A shape is started only while the budget lasts: the test takes it plus at most one boot.
    let (started, budget) = (
        Instant::now(),
        hull_tests::sweep::budget("HULL_SHAPE_SWEEP_SECS", 60),
    );
    let mut shapes = 0;
    while started.elapsed() < budget || shapes == 0 {
        let mib = rng.within(hull_runtime::vm::MIN_MEMORY_MIB..=bounds.max_memory_mib);
        let vcpus = rng.within(1..=bounds.max_vcpus);
        let code = u8::try_from(rng.within(0..=255)).expect("a byte");
        let flags = annotations(mib, vcpus);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let id = format!("shape{shapes}");
        eprintln!("shape sweep (seed {seed}) #{shapes}: {mib} MiB, {vcpus} vCPUs, exit {code}");
        assert_shape(&c, &id, &flags, mib, vcpus, code);
        shapes += 1;
    }
    eprintln!(
        "shape sweep: seed {seed}, {shapes} shapes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
