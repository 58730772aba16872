//! The agent's options on the kernel command line (`hull.<name>=<value>`).

/// Options the agent understands; everything else on the command line belongs to the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOptions {
    /// `hull.selftest=1`: print the ready line and stop the VM (with `hull.share`, first mount
    /// the share and print its probe file: see `selftest::read_share`).
    pub selftest: bool,
    /// `hull.share=<tag>`: mount the virtio-fs share with this tag at `/run/hull/shared`.
    pub share: Option<String>,
}

impl AgentOptions {
    /// Parses a kernel command line such as the contents of `/proc/cmdline`.
    pub fn parse(cmdline: &str) -> Self {
        let mut options = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "hull.selftest" => {
                    options.selftest = matches!(value, "1" | "y" | "yes" | "true" | "")
                }
                "hull.share" if is_tag(value) => options.share = Some(value.to_owned()),
                _ => {}
            }
        }
        options
    }
}

/// A virtio-fs tag we accept: 1-36 characters of `[A-Za-z0-9_-]`.
fn is_tag(value: &str) -> bool {
    (1..=36).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_flag_is_found_among_kernel_options() {
        let o = AgentOptions::parse("console=ttyS0 reboot=t hull.selftest=1 quiet\n");
        assert!(o.selftest);
    }

    #[test]
    fn selftest_is_off_by_default_and_when_zero() {
        assert!(!AgentOptions::parse("console=ttyS0 quiet").selftest);
        assert!(!AgentOptions::parse("hull.selftest=0").selftest);
        assert!(!AgentOptions::parse("hull.selftestx=1").selftest);
    }

    #[test]
    fn share_tag_is_read_and_checked() {
        assert_eq!(
            AgentOptions::parse("quiet hull.share=hull")
                .share
                .as_deref(),
            Some("hull")
        );
        assert_eq!(AgentOptions::parse("hull.share=../x").share, None);
        assert_eq!(AgentOptions::parse("hull.share=").share, None);
        assert_eq!(AgentOptions::parse("quiet").share, None);
    }

    #[test]
    fn last_occurrence_wins() {
        assert!(!AgentOptions::parse("hull.selftest=1 hull.selftest=0").selftest);
        assert!(AgentOptions::parse("hull.selftest=0 hull.selftest").selftest);
    }
}
