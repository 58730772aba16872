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
