//! Running netlink work inside another network namespace without moving the caller's threads.

use std::future::Future;
use std::path::Path;

use super::NetworkError;

/// Runs `work` on a fresh, short-lived thread that first entered the network namespace at
/// `netns`, and gives its result: a socket belongs to the namespace it is opened in and a child
/// inherits the forking thread's namespaces, while the caller's threads stay where they are.
pub fn on_thread_in<T, F>(netns: &Path, work: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> std::io::Result<T> + Send,
{
    let netns = std::fs::File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread in the netns panicked")))
    })
}

/// Runs `work` to completion on a thread in the network namespace at `path` ([`on_thread_in`])
/// with a current-thread runtime (netlink connections are async).
pub fn run_in<T, F, Fut>(path: &Path, work: F) -> Result<T, NetworkError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    on_thread_in(path, || {
        Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetworkError::Socket)
            .and_then(|runtime| runtime.block_on(work())))
    })
    .map_err(|e| NetworkError::Netns(path.to_owned(), e))?
}

/// Opens a netlink connection on the current thread's runtime and hands its handle to `work`.
pub async fn with_handle<T, F, Fut>(work: F) -> Result<T, NetworkError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    let connection = tokio::spawn(connection);
    let result = work(handle).await;
    connection.abort();
    result
}

/// A network namespace made for a short job and deleted with this value: a fresh, empty
/// namespace bind-mounted on a file (like `ip netns add`), so a child can be spawned into it by
/// path ([`on_thread_in`]). Dropping it unmounts and removes the file; the namespace goes when
/// the last process in it has exited (with it any tap made there). The template build gives its
/// VM a NIC on a throw-away tap in one (`crate::template::create`).
#[derive(Debug)]
pub struct ScratchNetns {
    path: std::path::PathBuf,
}

impl ScratchNetns {
    /// Creates the namespace, mounted at `path` (a file that must not exist yet).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        // From here on a drop unmounts (nothing, on failure) and removes the file.
        let netns = Self {
            path: path.to_owned(),
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // A thread of its own: unsharing moves only the calling thread, which ends.
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        path,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )
                })
                .join()
                .unwrap_or(Err(nix::errno::Errno::EIO))
        })
        .map_err(std::io::Error::from)?;
        Ok(netns)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root only (unshare, mount): the namespace is another than this one, links made in it
    /// stay there, and the drop leaves no file behind.
    #[test]
    fn a_scratch_namespace_is_its_own_and_goes_with_its_value() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        let ns = ScratchNetns::create(&path).unwrap();
        let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        assert_ne!(ino(ns.path()), ino(Path::new("/proc/self/ns/net")));
        let inside = on_thread_in(ns.path(), || {
            std::fs::read_to_string("/proc/thread-self/net/dev").map(|d| d.lines().count())
        })
        .unwrap();
        assert_eq!(inside, 3, "two header lines and lo only");
        assert!(ScratchNetns::create(&path).is_err(), "the path is taken");
        drop(ns);
        assert!(!path.exists());
    }
}
