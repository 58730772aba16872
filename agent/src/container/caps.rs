//! Capabilities: the spec's five sets as bit masks, and applying them in the forked process.
//!
//! Bounding is dropped first (needs `CAP_SETPCAP`), then the user is switched with
//! `PR_SET_KEEPCAPS` so the permitted set survives, then effective/permitted/inheritable are set
//! with `capset(2)` and the ambient set raised. Absent sets are empty, as the spec says.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use rustix::thread::{
    configure_capability_in_ambient_set, remove_capability_from_bounding_set, set_capabilities,
    CapabilitySet, CapabilitySets,
};

use super::stage::{Failure, Stage};

/// A capability set we cannot apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapsError {
    /// The capability is not known to the running kernel.
    #[error("capability {name} is not supported by this kernel (last is {last})")]
    Unknown {
        /// The capability.
        name: String,
        /// `/proc/sys/kernel/cap_last_cap`.
        last: u8,
    },
    /// The ambient set must be within permitted and inheritable.
    #[error("ambient capability {0} is not in both the permitted and inheritable sets")]
    Ambient(String),
}

/// The five sets as masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapsPlan {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
    /// The highest capability number of the kernel.
    pub last_cap: u8,
}

/// The running kernel's last capability number (40 on 6.x kernels).
pub fn kernel_last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn mask(set: &Option<Capabilities>, last: u8) -> Result<u64, CapsError> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: caps::Capability = name.parse().map_err(|_| CapsError::Unknown {
            name: name.clone(),
            last,
        })?;
        if cap.index() > last {
            return Err(CapsError::Unknown { name, last });
        }
        m |= cap.bitmask();
    }
    Ok(m)
}

impl CapsPlan {
    /// Translates the spec's capabilities (`None`: every set empty).
    pub fn from_spec(c: Option<&LinuxCapabilities>, last_cap: u8) -> Result<Self, CapsError> {
        let Some(c) = c else {
            return Ok(CapsPlan {
                last_cap,
                ..Default::default()
            });
        };
        let plan = CapsPlan {
            bounding: mask(c.bounding(), last_cap)?,
            effective: mask(c.effective(), last_cap)?,
            permitted: mask(c.permitted(), last_cap)?,
            inheritable: mask(c.inheritable(), last_cap)?,
            ambient: mask(c.ambient(), last_cap)?,
            last_cap,
        };
        let bad_ambient = plan.ambient & !(plan.permitted & plan.inheritable);
        if bad_ambient != 0 {
            let n = bad_ambient.trailing_zeros();
            let name = caps::all()
                .into_iter()
                .find(|c| u32::from(c.index()) == n)
                .map(|c| c.to_string())
                .unwrap_or_else(|| n.to_string());
            return Err(CapsError::Ambient(name));
        }
        Ok(plan)
    }

    /// Forked side: drops every capability not in the bounding set.
    pub fn drop_bounding(&self) -> Result<(), Failure> {
        for cap in 0..=self.last_cap {
            if self.bounding & (1u64 << cap) != 0 {
                continue;
            }
            remove_capability_from_bounding_set(one(cap))
                .map_err(|e| Failure::rustix(Stage::Bounding, usize::from(cap), e))?;
        }
        Ok(())
    }

    /// Forked side: sets effective, permitted and inheritable, then raises the ambient set.
    pub fn apply(&self) -> Result<(), Failure> {
        let sets = CapabilitySets {
            effective: CapabilitySet::from_bits_retain(self.effective),
            permitted: CapabilitySet::from_bits_retain(self.permitted),
            inheritable: CapabilitySet::from_bits_retain(self.inheritable),
        };
        // capset(2), version 3, for this thread.
        set_capabilities(None, sets).map_err(|e| Failure::rustix(Stage::Capabilities, 0, e))?;
        for cap in 0..=self.last_cap {
            if self.ambient & (1u64 << cap) == 0 {
                continue;
            }
            configure_capability_in_ambient_set(one(cap), true)
                .map_err(|e| Failure::rustix(Stage::Ambient, usize::from(cap), e))?;
        }
        Ok(())
    }
}

/// The set of capability number `cap` alone.
fn one(cap: u8) -> CapabilitySet {
    CapabilitySet::from_bits_retain(1u64 << cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: &str) -> LinuxCapabilities {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn five_sets_become_masks() {
        let c = caps(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE"],
                "effective":["CAP_CHOWN","CAP_KILL"],"permitted":["CAP_CHOWN","CAP_KILL"],
                "inheritable":["CAP_KILL"],"ambient":["CAP_KILL"]}"#,
        );
        let p = CapsPlan::from_spec(Some(&c), 40).unwrap();
        assert_eq!(p.bounding, (1 << 0) | (1 << 5) | (1 << 10));
        assert_eq!(p.effective, (1 << 0) | (1 << 5));
        assert_eq!(p.permitted, p.effective);
        assert_eq!(p.inheritable, 1 << 5);
        assert_eq!(p.ambient, 1 << 5);
        assert_eq!(CapsPlan::from_spec(None, 40).unwrap().bounding, 0);
        let high = caps(r#"{"bounding":["CAP_CHECKPOINT_RESTORE"]}"#);
        assert_eq!(
            CapsPlan::from_spec(Some(&high), 40).unwrap().bounding,
            1 << 40
        );
    }

    #[test]
    fn rejects_unknown_to_kernel_and_bad_ambient() {
        let high = caps(r#"{"bounding":["CAP_CHECKPOINT_RESTORE"]}"#);
        assert!(matches!(
            CapsPlan::from_spec(Some(&high), 38),
            Err(CapsError::Unknown { .. })
        ));
        let amb = caps(r#"{"permitted":["CAP_KILL"],"ambient":["CAP_KILL"]}"#);
        assert_eq!(
            CapsPlan::from_spec(Some(&amb), 40),
            Err(CapsError::Ambient("CAP_KILL".into()))
        );
    }
}
