//! `Personalize`: what makes a guest restored from a template snapshot its own pod. Every pod
//! restored from one template starts with the same kernel RNG state, the same clock and no share
//! mounted (a template is saved before its virtio-fs has carried a request), so before any
//! container runs the host sends fresh entropy, which is mixed in (`RNDADDENTROPY`) and made the
//! CRNG's next key at once (`RNDRESEEDCRNG`, rather than at the next timed reseed); the realtime
//! clock is set from the host's; and the pod's share is mounted through the fresh virtiofsd.

use std::os::fd::AsRawFd;

use hull_protocol::agent::PersonalizeRequest;

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Personalizing the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum PersonalizeError {
    /// The kernel RNG refused the entropy or the reseed.
    #[error("cannot reseed the kernel RNG ({0})")]
    Reseed(&'static str, #[source] std::io::Error),
    /// The clock could not be set.
    #[error("cannot set the realtime clock")]
    Clock(#[source] std::io::Error),
    /// The share could not be mounted.
    #[error(transparent)]
    Share(#[from] crate::boot::BootError),
}

/// `struct rand_pool_info` with its buffer inline.
#[repr(C)]
struct PoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; hull_protocol::limits::MAX_ENTROPY_LEN],
}

/// Mixes `entropy` into the kernel RNG, crediting all of it, and reseeds the CRNG from it.
pub fn reseed(entropy: &[u8]) -> Result<(), PersonalizeError> {
    let len = entropy.len().min(hull_protocol::limits::MAX_ENTROPY_LEN);
    let mut info = PoolInfo {
        entropy_count: libc::c_int::try_from(len * 8).unwrap_or(libc::c_int::MAX),
        buf_size: libc::c_int::try_from(len).unwrap_or(libc::c_int::MAX),
        buf: [0; hull_protocol::limits::MAX_ENTROPY_LEN],
    };
    info.buf[..len].copy_from_slice(&entropy[..len]);
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| PersonalizeError::Reseed("open /dev/urandom", e))?;
    // SAFETY: a valid fd; `info` is a live `rand_pool_info` whose buffer holds `buf_size` bytes;
    // the return value is checked.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, &raw const info) } != 0 {
        return Err(PersonalizeError::Reseed(
            "RNDADDENTROPY",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a valid fd, an ioctl without argument; the return value is checked.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) } != 0 {
        return Err(PersonalizeError::Reseed(
            "RNDRESEEDCRNG",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Applies a checked request: reseed, clock, share.
pub fn apply(req: &PersonalizeRequest) -> Result<(), PersonalizeError> {
    reseed(&req.entropy)?;
    let now = libc::timespec {
        tv_sec: req.realtime_secs,
        tv_nsec: i64::from(req.realtime_nanos),
    };
    // SAFETY: a valid timespec (checked: nanoseconds below a second); the return value is checked.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &raw const now) } != 0 {
        return Err(PersonalizeError::Clock(std::io::Error::last_os_error()));
    }
    if !req.share_tag.is_empty() && !crate::boot::share_mounted() {
        crate::boot::mount_share(&req.share_tag)?;
    }
    eprintln!("hull-agent: personalized (entropy, clock, share)");
    Ok(())
}
