//! Reading what a probe script in a container printed: its stdout and stderr as one text, and the
//! lines it tagged with a prefix (the escape tests tag each attempt's result).

use std::process::Output;

/// A command's stdout followed by its stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines of `all` that start with `prefix`, without it.
pub fn lines_after<'a>(all: &'a str, prefix: &str) -> Vec<&'a str> {
    all.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}
