//! Entry point of `hull-agent`, the guest's `/init`.
//!
//! PID 1 must never return or panic (the kernel would panic with it), so every path ends in
//! stopping the VM. Everything goes to the console (stdout), which the host reads.

use std::io::Write;

use hull_agent::{
    boot, cmdline::AgentOptions, loopback, power, selftest, selftest::GuestFacts, server,
};
use hull_protocol::error_chain;

/// Writes one line to the console. Errors are ignored: PID 1 must not die because the console is
/// missing, and `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() {
    if let Err(e) = boot::prepare() {
        say!("hull-agent: {}", error_chain(&e));
        stop();
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let options = AgentOptions::parse(&cmdline);
    if options.selftest {
        if let Some(tag) = &options.share {
            match selftest::read_share(tag) {
                Ok(line) => say!("{line}"),
                Err(e) => say!("hull-agent: self-test share failed: {}", error_chain(&e)),
            }
        }
        match GuestFacts::read() {
            Ok(facts) => say!("{facts}"),
            Err(e) => say!("hull-agent: self-test failed: {}", error_chain(&e)),
        }
        stop();
    }
    if let Some(name) = &options.hostname {
        // Containers that set no hostname inherit it, as they inherit the host's under runc.
        if let Err(e) = rustix::system::sethostname(name.as_bytes()) {
            say!("hull-agent: cannot set the hostname: {e}");
        }
    }
    if let Some(order) = options.page_reporting_order {
        // Reported from the next free on; without a balloon driver the file is not there.
        let param = "/sys/module/page_reporting/parameters/page_reporting_order";
        if let Err(e) = std::fs::write(param, order.to_string()) {
            say!("hull-agent: cannot set the page reporting order: {e}");
        }
    }
    if let Err(e) = boot::mount_pod_shm() {
        // Only CRI pods' /dev/shm needs it: say so and go on.
        say!("hull-agent: {}", error_chain(&e));
    }
    if let Err(e) = loopback::up() {
        // Containers lose 127.0.0.1, nothing else: say so and go on.
        say!("hull-agent: cannot bring lo up: {e}");
    }
    if let Some(tag) = &options.share {
        if let Err(e) = boot::mount_share(tag) {
            say!("hull-agent: {}", error_chain(&e));
            stop();
        }
    }
    if let Err(e) = server::run() {
        say!("hull-agent: {}", error_chain(&e));
    }
    stop();
}

fn stop() -> ! {
    say!("hull-agent: stopping the VM");
    let e = power::stop_vm();
    say!("hull-agent: reboot failed: {e}");
    // Nothing else can be done; keep PID 1 alive so the kernel does not panic.
    loop {
        std::thread::park();
    }
}
