//! Making a template: boot a VM of the pod shape on hull-vmm with a control socket, wait for its
//! agent to answer, disconnect, snapshot it, and move the snapshot into place with its record.
//!
//! The template VM runs unjailed, for the few seconds it boots: its guest runs only hull's own
//! kernel and agent, nothing from a user, and it must write the snapshot where only root may.
//! It gets the pod's virtio-fs device on a virtiofsd serving an empty directory, but its guest
//! does not mount it (no `hull.share` word): a template is saved before virtio-fs carried any
//! request, and a restored pod mounts its own share through its own virtiofsd (`Personalize`).
//! Building happens in `<root>/.build-<pid>/` and ends in a rename, under an exclusive lock on
//! `<root>/.lock`, so concurrent shims make a template once and never see half of one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    ensure_root, hashes, lookup, prune, Lookup, Record, Template, TemplateError, TemplateInputs,
    HULL_VERSION, MEMORY_FILE, RECORD, STATE_FILE,
};
use crate::agent::AgentClient;
use crate::images::GuestImages;
use crate::network::netns::ScratchNetns;
use crate::sandbox::{SERVING_LINE, TAP_NAME};
use crate::share::{self, CacheMode, Virtiofsd};
use crate::vm::hull_vmm::{self, HullVmm};
use crate::vm::{console, Device, MacAddr, Vm, VmConfig};
use hull_protocol::network::format_mac;

/// The shape of the pods a template serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// Kernel and initramfs.
    pub images: GuestImages,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// The kernel command-line words after hull-vmm's own (the pod's, without `hull.share`).
    pub cmdline: Vec<String>,
    /// Whether the pods have a virtio-fs share.
    pub share: bool,
    /// Whether the pods have a NIC (the template's is on a throw-away tap, with
    /// [`TEMPLATE_MAC`]; a restored pod's agent gives it the pod's MAC).
    pub nic: bool,
}

/// The MAC of a template's NIC: locally administered, unicast. No pod ever uses it on a
/// network: the agent sets the pod's MAC before the link goes up.
pub const TEMPLATE_MAC: [u8; 6] = [0x02, 0x68, 0x75, 0x6c, 0x6c, 0x00];

impl TemplateSpec {
    /// The template of pods of this shape whose own kernel words are `words` (`kernel_params`):
    /// the command line is those words, the host name word and the balloon's page reporting
    /// order, as a pod that boots gets them ([`crate::sandbox`]).
    pub fn for_pods(
        images: GuestImages,
        (vcpus, memory_mib): (u32, u32),
        words: &[String],
        share: bool,
        nic: bool,
    ) -> Self {
        let mut cmdline = words.to_vec();
        cmdline.extend(crate::sandbox::hostname_arg());
        cmdline.push(crate::sandbox::PAGE_REPORTING_ARG.to_owned());
        Self {
            images,
            vcpus,
            memory_mib,
            cmdline,
            share,
            nic,
        }
    }

    /// The template's devices, in hull-vmm's bus order.
    fn layout(&self, hv: &HullVmm) -> Vec<String> {
        let mut d = vec!["vsock".to_owned()];
        if self.share {
            d.push(format!("fs:{}", share::TAG));
        }
        if self.nic {
            d.push(format!("net:{}", format_mac(TEMPLATE_MAC)));
        }
        d.push("balloon".to_owned());
        let extra = hv.extra_args();
        if !extra.is_empty() {
            d.push(format!("args:{}", extra.join(" ")));
        }
        d
    }

    /// The inputs that key this template on `hv` (image hashes cached under `root`).
    pub fn inputs(&self, hv: &HullVmm, root: &Path) -> Result<TemplateInputs, TemplateError> {
        let hashes = hashes::image_hashes(root, &[&self.images.kernel, &self.images.initramfs])?;
        let mut words: Vec<String> = hull_vmm::BASE_CMDLINE
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        words.extend(self.cmdline.iter().cloned());
        Ok(TemplateInputs {
            hull_version: HULL_VERSION.to_owned(),
            kernel_sha256: hashes[0].clone(),
            initramfs_sha256: hashes[1].clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            cmdline: words.join(" "),
            devices: self.layout(hv),
        })
    }
}

fn failed(what: impl Into<String>) -> impl FnOnce(crate::vm::VmError) -> TemplateError {
    let what = what.into();
    move |e| TemplateError::Create(what, Some(Box::new(e)))
}

/// The template for `spec` under `root`: the valid one there, else a new one made now. A
/// template there that is refused (corrupt, stale, not root-only) is an error: the caller boots
/// normally and says why; `hull template create` replaces it.
pub async fn get_or_create(
    root: &Path,
    hv: &HullVmm,
    spec: &TemplateSpec,
    timeout: Duration,
) -> Result<Template, TemplateError> {
    ensure_root(root)?;
    let inputs = spec.inputs(hv, root)?;
    if let Lookup::Ready(t) = lookup(root, &inputs)? {
        return Ok(t);
    }
    let _lock = lock(root).await?;
    // Another shim may have made it while this one waited for the lock.
    if let Lookup::Ready(t) = lookup(root, &inputs)? {
        return Ok(t);
    }
    create_locked(root, hv, spec, &inputs, timeout).await
}

/// Makes the template for `spec` under `root` anew (replacing one there).
pub async fn create(
    root: &Path,
    hv: &HullVmm,
    spec: &TemplateSpec,
    timeout: Duration,
) -> Result<Template, TemplateError> {
    ensure_root(root)?;
    let inputs = spec.inputs(hv, root)?;
    let _lock = lock(root).await?;
    create_locked(root, hv, spec, &inputs, timeout).await
}

/// An exclusive lock on `<root>/.lock`, held until dropped.
async fn lock(root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, TemplateError> {
    let path = root.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| TemplateError::Io(format!("cannot open {}", path.display()), e))?;
    tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| TemplateError::Io("cannot lock the templates".into(), e.into()))
    })
    .await
    .map_err(|e| TemplateError::Io("the lock task failed".into(), std::io::Error::other(e)))?
}

async fn create_locked(
    root: &Path,
    hv: &HullVmm,
    spec: &TemplateSpec,
    inputs: &TemplateInputs,
    timeout: Duration,
) -> Result<Template, TemplateError> {
    let started = Instant::now();
    let build = root.join(format!(".build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&build);
    let run = build.join("run");
    std::fs::create_dir_all(&run)
        .map_err(|e| TemplateError::Io(format!("cannot create {}", run.display()), e))?;
    let result = build_in(&build, &run, root, hv, spec, inputs, timeout).await;
    let _ = std::fs::remove_dir_all(&build);
    let template = result?;
    let pruned = prune(root, inputs);
    tracing::info!(
        key = %template.record.key,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        pruned = ?pruned,
        "made the pod template"
    );
    Ok(template)
}

async fn build_in(
    build: &Path,
    run: &Path,
    root: &Path,
    hv: &HullVmm,
    spec: &TemplateSpec,
    inputs: &TemplateInputs,
    timeout: Duration,
) -> Result<Template, TemplateError> {
    let mut devices = vec![Device::Vsock];
    let mut virtiofsd = None;
    if spec.share {
        let shared = run.join("shared");
        std::fs::create_dir_all(&shared)
            .map_err(|e| TemplateError::Io(format!("cannot create {}", shared.display()), e))?;
        let daemon = Virtiofsd::start(run, &shared, CacheMode::default(), Duration::from_secs(5))
            .map_err(|e| TemplateError::Create("virtiofsd".into(), Some(Box::new(e))))?;
        devices.push(Device::VhostUserFs {
            socket: daemon.socket().to_owned(),
            tag: share::TAG.to_owned(),
        });
        virtiofsd = Some(daemon);
    }
    // The NIC's tap lives in a namespace of its own that goes with the build: nothing reaches
    // it, and the guest sees a NIC as a pod's does (driver bound, queues set up, link down).
    let netns = if spec.nic {
        let path = build.join("netns");
        let ns = ScratchNetns::create(&path)
            .map_err(|e| TemplateError::Io(format!("cannot create {}", path.display()), e))?;
        devices.push(Device::Net {
            tap: TAP_NAME.to_owned(),
            mac: MacAddr(TEMPLATE_MAC),
            netns: path,
        });
        Some(ns)
    } else {
        None
    };
    devices.push(Device::Balloon);
    let config = VmConfig {
        images: spec.images.clone(),
        cmdline: spec.cmdline.clone(),
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        devices,
        run_dir: run.to_owned(),
    };
    let (mut vm, api) = hv
        .start_with_api(&config)
        .map_err(failed("start the template VM"))?;
    let snapshot = build.join("snapshot");
    let saved = boot_and_save(vm.as_mut(), &api, &snapshot, timeout).await;
    let _ = vm.stop(Duration::from_secs(2));
    drop(virtiofsd);
    drop(netns);
    saved?;
    install(root, &snapshot, inputs)
}

/// Waits for the agent (its serving line, then an answer), lets the connection go, and has the
/// VMM write the snapshot into `snapshot`.
async fn boot_and_save(
    vm: &mut dyn Vm,
    api: &Path,
    snapshot: &Path,
    timeout: Duration,
) -> Result<(), TemplateError> {
    let started = Instant::now();
    console::wait_for_line_async(vm, SERVING_LINE, timeout)
        .await
        .map_err(failed("wait for the template's agent"))?;
    let uds = vm
        .vsock_uds()
        .map(Path::to_owned)
        .ok_or_else(|| TemplateError::Create("the template VM serves no vsock".into(), None))?;
    loop {
        match AgentClient::wait_ready(&uds, Duration::from_millis(250)).await {
            Ok(agent) => {
                drop(agent);
                break;
            }
            Err(e) => {
                let exited = vm.wait_timeout(Duration::ZERO).ok().flatten();
                if exited.is_some() || started.elapsed() >= timeout {
                    return Err(TemplateError::Create(
                        "the template's agent did not answer".into(),
                        Some(Box::new(e)),
                    ));
                }
            }
        }
    }
    // The guest closes its end of the connection just dropped; none is left in the template.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (api, dir) = (api.to_owned(), snapshot.to_owned());
    let answer = tokio::task::spawn_blocking(move || snapshot_request(&api, &dir))
        .await
        .map_err(|e| {
            TemplateError::Io("the snapshot task failed".into(), std::io::Error::other(e))
        })?
        .map_err(|e| {
            TemplateError::Io("cannot reach the template VM's control socket".into(), e)
        })?;
    if answer.starts_with("OK ") {
        Ok(())
    } else {
        Err(TemplateError::Create(
            format!("hull-vmm did not snapshot the template: {answer}"),
            None,
        ))
    }
}

/// Sends `snapshot DIR` on hull-vmm's control socket and returns its answer line.
fn snapshot_request(api: &Path, dir: &Path) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut s = std::os::unix::net::UnixStream::connect(api)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(s, "snapshot {}", dir.display())?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}

/// Writes the record beside the snapshot files, makes them private, and renames the snapshot
/// into `<root>/<key>` (replacing one there).
fn install(
    root: &Path,
    snapshot: &Path,
    inputs: &TemplateInputs,
) -> Result<Template, TemplateError> {
    let key = inputs.key();
    let size = |name: &str| {
        let p = snapshot.join(name);
        std::fs::metadata(&p)
            .map(|m| m.len())
            .map_err(|e| TemplateError::Io(format!("cannot stat {}", p.display()), e))
    };
    let record = Record {
        key: key.clone(),
        inputs: inputs.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        state_bytes: size(STATE_FILE)?,
        memory_bytes: size(MEMORY_FILE)?,
    };
    let mode = |p: PathBuf, m: u32| {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m))
            .map_err(|e| TemplateError::Io(format!("cannot chmod {}", p.display()), e))
    };
    // Root-only, the files too: a jailed VMM (its uid is not root) gets them as descriptors its
    // jailer opened as root (`HullVmm::restore`).
    mode(snapshot.to_owned(), 0o700)?;
    mode(snapshot.join(STATE_FILE), 0o600)?;
    mode(snapshot.join(MEMORY_FILE), 0o600)?;
    let record_path = snapshot.join(RECORD);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&record_path)
        .map_err(|e| TemplateError::Io(format!("cannot create {}", record_path.display()), e))?;
    let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(|e| TemplateError::Io(format!("cannot write {}", record_path.display()), e))?;
    let dest = root.join(&key);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(snapshot, &dest).map_err(|e| {
        TemplateError::Io(format!("cannot move the template to {}", dest.display()), e)
    })?;
    Ok(Template { dir: dest, record })
}
