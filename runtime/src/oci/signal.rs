//! Signal names and numbers as `runc kill` takes them: `9`, `KILL`, `SIGKILL`, `sigkill`.

use super::OciError;

/// The signals a host process that stands for a guest process (a container's monitor, an exec's
/// host process) passes on to it: what engines and users send to stop or poke a container.
/// SIGKILL and SIGSTOP cannot be caught; the engine's `kill` reaches the guest for those.
pub const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
];

/// x86_64 Linux signal numbers by name (without `SIG`).
const SIGNALS: &[(&str, u32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The number of signal `text`.
pub fn parse(text: &str) -> Result<u32, OciError> {
    let bad = || OciError::InvalidArgument(format!("unknown signal {text:?}"));
    if let Ok(n) = text.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: u32 = match rt.strip_prefix('+') {
            Some(n) => n.parse().map_err(|_| bad())?,
            None if rt.is_empty() => 0,
            None => return Err(bad()),
        };
        return (34 + off <= 64).then_some(34 + off).ok_or_else(bad);
    }
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("sigusr1").unwrap(), 10);
        assert_eq!(parse("RTMIN+2").unwrap(), 36);
        for bad in ["0", "65", "SIGNOPE", "", "-1", "RTMIN+40"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
