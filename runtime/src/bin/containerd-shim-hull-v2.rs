//! `containerd-shim-hull-v2`: containerd's runtime `io.containerd.hull.v2`. containerd runs it
//! with `start` (spawn the shim server, print its address) and `delete` (clean up after a dead
//! shim); the server serves the Task API for one pod VM. Logic: `hull_runtime::shim`.

use hull_runtime::shim::lifecycle::{shim_config, HullShim};
use hull_runtime::shim::RUNTIME_NAME;

#[tokio::main]
async fn main() {
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
    containerd_shim::asynchronous::run::<HullShim>(RUNTIME_NAME, Some(shim_config())).await;
    // Exit now rather than wait for the runtime's blocking threads: nothing is left to do.
    std::process::exit(0);
}
