//! What every test tier of hull shares (unit tests, VM tests, end-to-end tests, in every crate).
//!
//! Today that is one rule: a test that cannot run here (no root, no `/dev/kvm`, an image not
//! built) **skips loudly** on a developer's machine, and **fails** under CI, where nothing may
//! skip. Every test that may skip goes through [`skip_or_fail`], so the rule and the way CI is
//! recognised are written once.
#![warn(missing_docs)]

/// Whether the tests run under CI (`CI` set to anything but empty, `0` or `false`), where no
/// test may skip.
pub fn under_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Skips the calling test with a loud message on stderr, or fails it (panics) under CI.
/// The caller returns right after: `if !ready { skip_or_fail("why"); return; }`.
#[track_caller]
pub fn skip_or_fail(why: &str) {
    assert!(!under_ci(), "CI is set, so this test may not skip: {why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

/// `true` when `ready`; otherwise skips (or fails under CI) with `why` and gives `false`:
/// `if !runnable(have_root, "needs root") { return; }`.
#[track_caller]
pub fn runnable(ready: bool, why: &str) -> bool {
    if !ready {
        skip_or_fail(why);
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        // The only test in this binary: nothing else reads CI meanwhile.
        let before = std::env::var_os("CI");
        for (v, ci) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("false", false),
            ("0", false),
            ("", false),
        ] {
            std::env::set_var("CI", v);
            assert_eq!(under_ci(), ci, "CI={v:?}");
        }
        std::env::remove_var("CI");
        assert!(!under_ci());
        assert!(runnable(true, "never shown"));
        assert!(!runnable(false, "this is a test of the skip message"));
        if let Some(v) = before {
            std::env::set_var("CI", v);
        }
    }
}
