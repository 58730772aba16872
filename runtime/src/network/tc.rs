//! Connecting the pod's veth and the VMM's tap with tc: an ingress qdisc on each and a match-all
//! u32 filter whose `mirred egress redirect` action hands every frame to the other interface.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::tc::TcHandle;
use rtnetlink::{Handle, LinkUnspec};

use super::{netlink, netns, NetworkError, PodInterface};

/// `ETH_P_ALL`, as tc wants it: in network byte order.
const ALL_PROTOCOLS: u16 = 0x0003_u16.to_be();
/// The filters' priority (any fixed value: there is one filter per ingress qdisc).
const PRIORITY: u16 = 1;
/// Poll interval while waiting for the VMM to create its tap.
const TAP_POLL: Duration = Duration::from_millis(5);

/// Waits up to `timeout` for the VMM's `tap` to appear in `netns`, gives it the veth's MTU, brings it
/// up, and redirects veth ⇄ tap both ways.
pub fn wire(
    netns: &Path,
    veth: &PodInterface,
    tap: &str,
    timeout: Duration,
) -> Result<(), NetworkError> {
    netns::run_in(netns, || {
        netns::with_handle(|handle| async move {
            let tap_index = wait_for_link(&handle, tap, timeout).await?;
            handle
                .link()
                .set(
                    LinkUnspec::new_with_index(tap_index)
                        .mtu(veth.mtu)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink(format!("cannot bring the tap {tap} up")))?;
            redirect(&handle, veth.index, tap_index).await?;
            redirect(&handle, tap_index, veth.index).await?;
            tracing::info!(veth = %veth.name, tap, "pod network wired to the VM");
            Ok(())
        })
    })
}

/// Removes the veth's ingress qdisc (and with it the redirect to the tap). A namespace or veth
/// that is already gone is not an error: CNI may have torn it down first.
pub fn unwire(netns: &Path, veth_index: u32) -> Result<(), NetworkError> {
    if !netns.exists() {
        return Ok(());
    }
    netns::run_in(netns, || {
        netns::with_handle(|handle| async move {
            let mut request = handle.qdisc().del(index_i32(veth_index));
            request.message_mut().header.parent = TcHandle::INGRESS;
            request.message_mut().header.handle = TcHandle {
                major: 0xffff,
                minor: 0,
            };
            match request.execute().await {
                Ok(()) => Ok(()),
                // ENOENT / EINVAL / ENODEV: no such qdisc or link any more.
                Err(rtnetlink::Error::NetlinkError(e))
                    if matches!(
                        e.raw_code().abs(),
                        libc::ENOENT | libc::EINVAL | libc::ENODEV
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(NetworkError::Netlink(
                    "cannot remove the veth's ingress qdisc".into(),
                    e,
                )),
            }
        })
    })
}

async fn redirect(handle: &Handle, from: u32, to: u32) -> Result<(), NetworkError> {
    handle
        .qdisc()
        .add(index_i32(from))
        .ingress()
        .execute()
        .await
        .map_err(netlink(format!(
            "cannot add an ingress qdisc to interface {from}"
        )))?;
    handle
        .traffic_filter(index_i32(from))
        .add()
        .ingress()
        .priority(PRIORITY)
        .protocol(ALL_PROTOCOLS)
        .redirect(to)
        .map_err(netlink("cannot describe the redirect filter"))?
        .execute()
        .await
        .map_err(netlink(format!(
            "cannot redirect interface {from} to interface {to}"
        )))
}

async fn wait_for_link(
    handle: &Handle,
    name: &str,
    timeout: Duration,
) -> Result<u32, NetworkError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(index) = find_link(handle, name).await? {
            return Ok(index);
        }
        if Instant::now() >= deadline {
            return Err(NetworkError::TapMissing(name.to_owned()));
        }
        tokio::time::sleep(TAP_POLL).await;
    }
}

/// The index of the link called `name`, if there is one.
async fn find_link(handle: &Handle, name: &str) -> Result<Option<u32>, NetworkError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("cannot list interfaces"))?;
    Ok(links
        .iter()
        .find(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name))
        })
        .map(|l| l.header.index))
}

/// Interface indexes are positive `i32`s in the kernel; tc's API takes them as such.
fn index_i32(index: u32) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Deletes the link called `name`, if there is one.
pub(super) async fn delete_link(handle: &Handle, name: &str) -> Result<(), NetworkError> {
    if let Some(index) = find_link(handle, name).await? {
        handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(netlink(format!("cannot delete {name}")))?;
    }
    Ok(())
}
