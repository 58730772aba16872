//! The agent's options on the kernel command line (`hull.<name>=<value>`).

/// Options the agent understands; everything else on the command line belongs to the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOptions {
    /// `hull.selftest=1`: print the ready line and stop the VM.
    pub selftest: bool,
}

impl AgentOptions {
    /// Parses a kernel command line such as the contents of `/proc/cmdline`.
    pub fn parse(cmdline: &str) -> Self {
        let mut options = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if key == "hull.selftest" {
                options.selftest = matches!(value, "1" | "y" | "yes" | "true" | "");
            }
        }
        options
    }
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
    fn last_occurrence_wins() {
        assert!(!AgentOptions::parse("hull.selftest=1 hull.selftest=0").selftest);
        assert!(AgentOptions::parse("hull.selftest=0 hull.selftest").selftest);
    }
}
