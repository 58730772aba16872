//! `containerd-shim-hull-v2`: containerd's runtime `io.containerd.hull.v2`. containerd runs it
//! with `start` (spawn the shim server, print its address) and `delete` (clean up after a dead
//! shim); the server serves the Task API for one pod VM. Logic: `hull_runtime::shim`.

use std::time::Duration;

use hull_runtime::agent::client::error_chain;
use hull_runtime::shim::event_sink::{self, DroppingSink};
use hull_runtime::shim::lifecycle::{shim_config, HullShim};
use hull_runtime::shim::RUNTIME_NAME;

/// How long `delete` waits for its answer to reach stdout.
const DELETE_FLUSH: Duration = Duration::from_secs(5);

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| a == "-v" || a == "-version" || a == "--version")
    {
        println!(
            "containerd-shim-hull-v2 (hull {})",
            env!("CARGO_PKG_VERSION")
        );
        println!("runtime: {RUNTIME_NAME}, shim API task v2");
        return;
    }
    // containerd puts the action last: `… -id <id> -bundle <dir> delete`.
    let deleting = std::env::args().next_back().is_some_and(|a| a == "delete");
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
        eprintln!("containerd-shim-hull-v2: cannot start the async runtime: {e}");
        std::process::exit(1);
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    let address = std::env::var(event_sink::TTRPC_ADDRESS).ok();
    runtime.block_on(async {
        // CRI-O gives a VM runtime no events endpoint: serve one that drops them.
        let sink = if event_sink::needed(address.as_deref(), &args) {
            match DroppingSink::start().await {
                Ok(sink) => Some(sink),
                Err(e) => {
                    eprintln!("containerd-shim-hull-v2: {}", error_chain(&e));
                    std::process::exit(1);
                }
            }
        } else {
            None
        };
        containerd_shim::asynchronous::run::<HullShim>(RUNTIME_NAME, Some(shim_config())).await;
        if let Some(sink) = sink {
            sink.stop().await;
        }
    });
    if deleting {
        // containerd-shim 0.11 writes `delete`'s answer (the exit status containerd publishes for
        // the dead shim's task) to tokio's stdout, which writes on a blocking thread, and returns
        // without flushing: let that write finish, or containerd reads nothing and reports 0.
        runtime.shutdown_timeout(DELETE_FLUSH);
    }
    // Exit now rather than wait for the runtime's blocking threads: nothing is left to do.
    std::process::exit(0);
}
