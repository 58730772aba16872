//! Driving a process's stdio through `ctr` byte for byte: feeding stdin while its output is read,
//! MD5 sums computed on the host (busybox's `md5sum` computes them inside), and a small seeded
//! random generator for sweeps.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with `input` on its stdin (written from a thread while its stdout and stderr are
/// read, so neither side can block the other) and returns its output.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stderr = child.stderr.take().expect("stderr");
    std::thread::scope(|s| {
        // A process that exits before reading all its input closes the pipe: not our error.
        s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let err = s.spawn(move || {
            let mut e = Vec::new();
            let _ = stderr.read_to_end(&mut e);
            e
        });
        let mut out = child.wait_with_output().expect("wait");
        out.stderr = err.join().expect("stderr reader");
        out
    })
}

/// The MD5 sum of `data` in hex, as `md5sum` prints it (the host's coreutils).
pub fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum on the host");
    let mut stdin = child.stdin.take().expect("stdin");
    let out = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(data).expect("feed md5sum"));
        child.wait_with_output().expect("md5sum")
    });
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A seeded xorshift64* generator: the same seed gives the same sweep.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A size in `0..=max`, spread over the orders of magnitude (as many small sizes as large
    /// ones), with 0 and `max` themselves now and then.
    pub fn size(&mut self, max: u64) -> u64 {
        match self.range(0, 15) {
            0 => 0,
            1 => max,
            _ => {
                let bits = 64 - max.leading_zeros();
                let top = 1u64 << self.range(0, u64::from(bits));
                self.range(0, top.min(max))
            }
        }
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.range(0, items.len() as u64 - 1)).unwrap_or(0);
        &items[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_in_bounds_and_repeat_with_the_seed() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let sizes: Vec<u64> = (0..1000).map(|_| a.size(4 << 20)).collect();
        assert!(sizes.iter().all(|s| *s <= 4 << 20));
        assert!(sizes.iter().any(|s| *s < 1024) && sizes.iter().any(|s| *s > 1 << 20));
        assert_eq!(
            sizes,
            (0..1000).map(|_| b.size(4 << 20)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn host_md5() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
