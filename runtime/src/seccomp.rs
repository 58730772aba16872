//! The shim's seccomp confinement. The filters are compiled to BPF at build time
//! (`runtime/build.rs` from `runtime/seccomp/shim_rules.rs`) and installed on every thread of
//! the shim at once (TSYNC) as soon as its pod VM's host side is up: the VMM, virtiofsd and the
//! vsock backend are started, the network is wired, and the shim has not yet read anything the
//! guest sent. From then on the shim starts no process, so `execve`, `fork`-like `clone`,
//! `ptrace`, `unshare`, `bpf`, `open_by_handle_at`, module loading and the rest of what a shim
//! never needs kill it with SIGSYS. Threads made later inherit the filter.
//!
//! The children are not filtered by the shim: they are started before, and have their own
//! (QEMU's `-sandbox`, virtiofsd's seccomp, hull-vmm's per-thread filters).

use std::sync::atomic::{AtomicBool, Ordering};

use seccompiler::BpfProgram;

/// Set once this process is confined.
static CONFINED: AtomicBool = AtomicBool::new(false);

/// Whether this process is confined (it can start no process any more).
pub fn confined() -> bool {
    CONFINED.load(Ordering::SeqCst)
}

/// The allowlist.
static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shim.bpf"));
/// `clone3` → ENOSYS, so that threads are made with `clone`, whose flags a filter can check.
static SHIM_CLONE3: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shim-clone3.bpf"));

/// Installing the shim's filters failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A built-in program is not a whole number of BPF instructions.
    #[error(transparent)]
    Malformed(#[from] hull_seccomp_bpf::Malformed),
    /// The kernel refused a filter, or could not put it on every thread.
    #[error("cannot install the {0} seccomp filter on every thread")]
    Install(&'static str, #[source] seccompiler::Error),
}

/// Decodes a program written by the build script.
fn program(name: &'static str, bytes: &[u8]) -> Result<BpfProgram, SeccompError> {
    hull_seccomp_bpf::decode(name, bytes).map_err(SeccompError::Malformed)
}

/// Installs the shim's filters on every thread of this process (and sets no_new_privs). Only
/// for a process that starts nothing afterwards.
pub fn confine_shim() -> Result<(), SeccompError> {
    let clone3 = program("clone3", SHIM_CLONE3)?;
    let allowlist = program("shim", SHIM)?;
    // The clone3 filter first: once the allowlist is in, `seccomp` itself is denied.
    seccompiler::apply_filter_all_threads(&clone3)
        .map_err(|e| SeccompError::Install("clone3", e))?;
    seccompiler::apply_filter_all_threads(&allowlist)
        .map_err(|e| SeccompError::Install("shim", e))?;
    CONFINED.store(true, Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    use super::*;

    #[test]
    fn the_built_programs_decode() {
        assert!(program("shim", SHIM).unwrap().len() > 100);
        assert!(program("clone3", SHIM_CLONE3).unwrap().len() > 3);
        assert!(matches!(
            program("x", &[0; 7]),
            Err(SeccompError::Malformed(hull_seccomp_bpf::Malformed("x")))
        ));
    }

    /// Set in a child test process: the probe it runs instead of its test.
    const PROBE_ENV: &str = "HULL_SECCOMP_PROBE";

    /// Runs test `test` again in a fresh process (the filters stay there), where it runs
    /// [`probe`] instead.
    fn in_child(test: &str, probe: &str) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(PROBE_ENV, probe)
            .output()
            .unwrap()
    }

    /// In a child: confines the whole process, then does what `probe` says, then exits.
    fn probe(probe: &str) -> ! {
        confine_shim().unwrap();
        match probe {
            // What the shim keeps doing: threads, files, unix sockets, inotify, signals, time.
            "allowed" => {
                let t =
                    std::thread::spawn(|| std::fs::read_to_string("/proc/self/status").unwrap());
                let status = t.join().unwrap();
                assert!(status.contains("Seccomp:\t2"), "{status}");
                let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                drop((a, b));
                // The copied volumes' host watches (shim::volumes).
                let dir = std::env::temp_dir();
                use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
                let wd = inotify.add_watch(&dir, AddWatchFlags::IN_CREATE).unwrap();
                inotify.rm_watch(wd).unwrap();
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    tokio::spawn(async { 1 }).await.unwrap()
                });
                println!("PROBE-OK");
            }
            "exec" => {
                let _ = Command::new("/bin/true").status();
            }
            "inet" => {
                let _ = std::net::TcpListener::bind("127.0.0.1:0");
            }
            other => panic!("unknown probe {other}"),
        }
        println!("PROBE-SURVIVED");
        std::process::exit(0);
    }

    #[test]
    fn a_confined_shim_keeps_its_threads_files_sockets_and_runtime() {
        if let Ok(p) = std::env::var(PROBE_ENV) {
            probe(&p);
        }
        let out = in_child(
            "seccomp::tests::a_confined_shim_keeps_its_threads_files_sockets_and_runtime",
            "allowed",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("PROBE-OK"),
            "{:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_confined_shim_dies_with_sigsys_on_exec_and_inet_sockets() {
        if let Ok(p) = std::env::var(PROBE_ENV) {
            probe(&p);
        }
        for p in ["exec", "inet"] {
            let out = in_child(
                "seccomp::tests::a_confined_shim_dies_with_sigsys_on_exec_and_inet_sockets",
                p,
            );
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGSYS),
                "{p}: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(!String::from_utf8_lossy(&out.stdout).contains("PROBE-SURVIVED"));
        }
    }
}
