//! The agent's options on the kernel command line (`hull.<name>=<value>`).

/// Options the agent understands; everything else on the command line belongs to the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOptions {
    /// `hull.selftest=1`: print the ready line and stop the VM (with `hull.share`, first mount
    /// the share and print its probe file: see `selftest::read_share`).
    pub selftest: bool,
    /// `hull.share=<tag>`: mount the virtio-fs share with this tag at `/run/hull/shared`.
    pub share: Option<String>,
    /// `hull.hostname=<name>`: the guest's own hostname, which containers with a new UTS
    /// namespace and no hostname of their own inherit (the host's, as under runc).
    pub hostname: Option<String>,
    /// `hull.page_reporting_order=<0-10>`: the smallest free block (2^order pages) the guest
    /// reports to the host. Linux's balloon driver sets pageblock order (2 MiB) when it registers,
    /// overriding the kernel's own parameter, so the agent writes it once the driver is up.
    pub page_reporting_order: Option<u8>,
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
                "hull.hostname" if is_hostname(value) => options.hostname = Some(value.to_owned()),
                "hull.page_reporting_order" => {
                    options.page_reporting_order = value.parse().ok().filter(|o| *o <= 10)
                }
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

/// A hostname we accept: 1-64 characters of `[A-Za-z0-9.-]` (what `sethostname` allows and a
/// command line carries as one word).
fn is_hostname(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
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
    fn page_reporting_order_is_read_and_bounded() {
        let order = |c: &str| AgentOptions::parse(c).page_reporting_order;
        assert_eq!(order("quiet hull.page_reporting_order=0"), Some(0));
        assert_eq!(order("hull.page_reporting_order=9"), Some(9));
        assert_eq!(order("hull.page_reporting_order=11"), None);
        assert_eq!(order("hull.page_reporting_order=x"), None);
        assert_eq!(order("quiet"), None);
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
    fn hostname_is_read_and_checked() {
        let o = AgentOptions::parse("quiet hull.hostname=node-1.example hull.share=hull");
        assert_eq!(o.hostname.as_deref(), Some("node-1.example"));
        assert_eq!(AgentOptions::parse("hull.hostname=a/b").hostname, None);
        assert_eq!(AgentOptions::parse("hull.hostname=").hostname, None);
        let long = format!("hull.hostname={}", "a".repeat(65));
        assert_eq!(AgentOptions::parse(&long).hostname, None);
    }

    #[test]
    fn last_occurrence_wins() {
        assert!(!AgentOptions::parse("hull.selftest=1 hull.selftest=0").selftest);
        assert!(AgentOptions::parse("hull.selftest=0 hull.selftest").selftest);
    }
}
