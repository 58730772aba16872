//! `hull-jailer --config <json> -- <vmm> <args…>`: runs a VMM inside the jail the config
//! describes (see `hull_runtime::jail`). The exit status is the VMM's (128 + signal when a signal
//! ended it); 125 means the jail could not be built, with the reason on stderr.

use std::ffi::OsString;
use std::path::PathBuf;

use hull_protocol::error_chain;
use hull_runtime::jail::exec::{self, STAGE2};

/// The exit code for "the jail could not be built" (as `env`/`chroot` use 125–127).
const JAIL_FAILED: i32 = 125;

struct Args {
    stage2: bool,
    config: String,
    vmm: PathBuf,
    vmm_args: Vec<OsString>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut stage2 = false;
    let mut config = None;
    loop {
        let arg = args.next().ok_or("missing `-- <vmm> <args…>`")?;
        match arg.to_str() {
            Some(STAGE2) => stage2 = true,
            Some("--config") => {
                let value = args.next().ok_or("--config needs a value")?;
                config = Some(value.into_string().map_err(|_| "--config is not UTF-8")?);
            }
            Some("--") => break,
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let vmm = args.next().ok_or("missing the VMM binary after --")?;
    Ok(Args {
        stage2,
        config: config.ok_or("missing --config")?,
        vmm: vmm.into(),
        vmm_args: args.collect(),
    })
}

fn main() {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("hull-jailer: {e}\nusage: hull-jailer --config <json> -- <vmm> <args…>");
            std::process::exit(2);
        }
    };
    if args.stage2 {
        let err = exec::enter(&args.config, &args.vmm, &args.vmm_args);
        eprintln!("hull-jailer: {}", error_chain(&err));
        std::process::exit(JAIL_FAILED);
    }
    match exec::supervise(&args.config, &args.vmm, &args.vmm_args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("hull-jailer: {}", error_chain(&e));
            std::process::exit(JAIL_FAILED);
        }
    }
}
