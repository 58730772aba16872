//! The process's identity: uid, gid, additional gids, umask, and `HOME` from the container's own
//! `/etc/passwd` (read from the rootfs; glibc's NSS is not available to a static agent).
//!
//! The spec carries numeric ids, so no name lookup is needed; `process.user.username` is a
//! Windows field and is refused on Linux.

use std::path::Path;

use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgroups, Gid};
use rustix::thread::{set_thread_res_gid, set_thread_res_uid};

use super::stage::{Failure, Stage};

/// A user we cannot apply.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// `username` is set.
    #[error("process.user.username is not supported on Linux")]
    Username,
    /// Too many additional groups.
    #[error("{0} additional gids (the kernel allows 65536)")]
    TooManyGroups(usize),
}

/// The identity to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlan {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Additional gids (exactly these; none when the spec has none).
    pub groups: Vec<Gid>,
    /// umask (0o022 when the spec has none).
    pub umask: u32,
}

impl UserPlan {
    /// From `process.user`.
    pub fn from_spec(u: &oci_spec::runtime::User) -> Result<Self, UserError> {
        if u.username().as_ref().is_some_and(|n| !n.is_empty()) {
            return Err(UserError::Username);
        }
        let groups = u.additional_gids().as_deref().unwrap_or_default();
        if groups.len() > 65536 {
            return Err(UserError::TooManyGroups(groups.len()));
        }
        let groups = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        Ok(UserPlan {
            uid: u.uid(),
            gid: u.gid(),
            groups,
            umask: u.umask().unwrap_or(0o022) & 0o777,
        })
    }

    /// Forked side: groups, gid, then uid. The caller holds `PR_SET_KEEPCAPS`.
    pub fn switch(&self) -> Result<(), Failure> {
        setgroups(&self.groups).map_err(|e| Failure::nix(Stage::Groups, 0, e))?;
        // The raw system calls set the ids of this (single-threaded) process only, without
        // glibc's all-threads broadcast. An id of u32::MAX (-1) leaves that id as it is.
        let gid = rustix::process::Gid::from_raw_unchecked(self.gid);
        set_thread_res_gid(gid, gid, gid).map_err(|e| Failure::rustix(Stage::Gid, 0, e))?;
        let uid = rustix::process::Uid::from_raw_unchecked(self.uid);
        set_thread_res_uid(uid, uid, uid).map_err(|e| Failure::rustix(Stage::Uid, 0, e))?;
        umask(Mode::from_bits_truncate(self.umask));
        Ok(())
    }
}

/// The home directory of `uid` in the rootfs's `/etc/passwd`, if the file and the entry exist
/// (symlinks in the image are followed inside the rootfs, never out of it).
pub fn home_dir(rootfs: &Path, uid: u32) -> Option<String> {
    let path = super::rootfs::resolve_in_root(rootfs, Path::new("/etc/passwd")).ok()?;
    let passwd = std::fs::read_to_string(path).ok()?;
    passwd_home(&passwd, uid)
}

/// Parses `passwd(5)` text for the home of `uid`.
pub fn passwd_home(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty() {
            Some(f[5].to_string())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let text = "root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\nweb:x:33:33::/var/www:/bin/false\nnohome:x:7:7:::/bin/sh\n";
        assert_eq!(passwd_home(text, 0).as_deref(), Some("/root"));
        assert_eq!(passwd_home(text, 33).as_deref(), Some("/var/www"));
        assert_eq!(passwd_home(text, 7), None);
        assert_eq!(passwd_home(text, 1000), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), text).unwrap();
        assert_eq!(home_dir(dir.path(), 33).as_deref(), Some("/var/www"));
        assert_eq!(home_dir(Path::new("/nonexistent"), 0), None);
        // An absolute symlink in the image points into the rootfs, not at the agent's file.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("etc/real")).unwrap();
        std::fs::write(
            other.path().join("etc/real/passwd"),
            "x:x:5:5::/inside:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/real/passwd", other.path().join("etc/passwd")).unwrap();
        assert_eq!(home_dir(other.path(), 5).as_deref(), Some("/inside"));
        assert_eq!(
            home_dir(other.path(), 0),
            None,
            "not the agent's /etc/passwd"
        );
    }

    #[test]
    fn user_from_spec() {
        let u: oci_spec::runtime::User =
            serde_json::from_str(r#"{"uid":1000,"gid":100,"additionalGids":[5,6],"umask":63}"#)
                .unwrap();
        let p = UserPlan::from_spec(&u).unwrap();
        assert_eq!(
            p,
            UserPlan {
                uid: 1000,
                gid: 100,
                groups: vec![Gid::from_raw(5), Gid::from_raw(6)],
                umask: 0o077
            }
        );
        let d: oci_spec::runtime::User = serde_json::from_str(r#"{"uid":0,"gid":0}"#).unwrap();
        assert_eq!(UserPlan::from_spec(&d).unwrap().umask, 0o022);
        let n: oci_spec::runtime::User =
            serde_json::from_str(r#"{"uid":0,"gid":0,"username":"x"}"#).unwrap();
        assert_eq!(UserPlan::from_spec(&n), Err(UserError::Username));
    }
}
