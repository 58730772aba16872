//! Running netlink work inside another network namespace without moving the caller's threads.

use std::future::Future;
use std::path::Path;

use super::NetworkError;

/// Runs `work` to completion on a fresh thread that first entered the network namespace at `path`
/// (a netlink socket belongs to the namespace it is opened in), with a current-thread runtime.
pub fn run_in<T, F, Fut>(path: &Path, work: F) -> Result<T, NetworkError>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let netns = std::fs::File::open(path).map_err(|e| NetworkError::Netns(path.to_owned(), e))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| NetworkError::Netns(path.to_owned(), e.into()))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(NetworkError::Socket)?;
                runtime.block_on(work())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetworkError::Netns(
                    path.to_owned(),
                    std::io::Error::other("the netlink thread panicked"),
                ))
            })
    })
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
