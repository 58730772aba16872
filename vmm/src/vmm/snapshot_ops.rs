//! Snapshots of a running [`Vmm`] (asked for on the control socket) and [`Vmm::restore`], which
//! builds the same VM in a new process from a snapshot directory: KVM VM and irqchip as at boot,
//! guest RAM mapped `MAP_PRIVATE` from the snapshot's memory file, the devices recreated in the
//! same order (same MMIO windows, GSIs, eventfds) and put back in their saved state, then the
//! VM-wide and per-vCPU KVM state. Nothing is loaded: the guest carries on where it was paused.

use std::error::Error;
use std::path::{Path, PathBuf};

use super::{
    create_vcpus, create_vm, legacy_devices, open_kvm, os, virtio_devices, ExitStats, Vmm, VmmError,
};
use crate::bus::{lock, Bus};
use crate::config::{FsConfig, NetConfig, VmmConfig, VsockConfig};
use crate::devices::virtio::balloon::PAGE_SHIFT;
use crate::devices::ExitSignal;
use crate::memory;
use crate::snapshot::control::{self, Command};
use crate::snapshot::format::{self, SnapshotFiles};
use crate::snapshot::{machine, vcpu_state, MachineState, Shape, SnapshotError, VmState};

/// What a restored VM gets from its new process rather than from the snapshot: its host-side
/// ends (console file, vsock socket, tap, control socket).
#[derive(Debug, Clone, Default)]
pub struct RestoreConfig {
    /// Console output file; stdout when `None`.
    pub console: Option<PathBuf>,
    /// The vsock device's host socket (required when the snapshot has a vsock device).
    pub vsock_uds: Option<PathBuf>,
    /// The virtio-fs backend's socket, a fresh virtiofsd (required when the snapshot has
    /// virtio-fs).
    pub fs_socket: Option<PathBuf>,
    /// The NIC's tap (required when the snapshot has a NIC).
    pub net_tap: Option<String>,
    /// The control socket.
    pub api_sock: Option<PathBuf>,
    /// Install the seccomp filters.
    pub seccomp: bool,
    /// The memory file's checksum is known to match (its owner checked this very file, by its
    /// identity, in an earlier restore: `--memory-checked`): only its length is checked, and
    /// without virtio-fs nothing of it is read before the guest touches it.
    pub memory_checked: bool,
}

/// The make-up of the VM `config` describes, booted with `cmdline`.
pub(super) fn shape(config: &VmmConfig, cmdline: &str) -> Shape {
    Shape {
        vcpus: config.vcpus,
        mem_mib: config.mem_mib,
        cpuid_clear: config.cpuid_clear.iter().map(ToString::to_string).collect(),
        vsock_cid: config.vsock.as_ref().map(|v| v.cid),
        fs_tag: config.fs.as_ref().map(|f| f.tag.clone()),
        net_mac: config.net.as_ref().map(|n| n.mac),
        balloon: config.balloon,
        cmdline: cmdline.to_string(),
    }
}

fn shape_err(what: impl Into<String>) -> VmmError {
    VmmError::Snapshot(SnapshotError::Shape(what.into()))
}

/// The configuration of a VM of `shape` with the host-side ends of `rc`.
fn restored_config(dir: &Path, shape: &Shape, rc: &RestoreConfig) -> Result<VmmConfig, VmmError> {
    let cpuid_clear = shape
        .cpuid_clear
        .iter()
        .map(|n| n.parse())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| shape_err(format!("unknown CPUID feature in {:?}", shape.cpuid_clear)))?;
    let vsock = match (shape.vsock_cid, &rc.vsock_uds) {
        (Some(cid), Some(uds)) => Some(VsockConfig {
            uds: uds.clone(),
            cid,
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(shape_err(
                "the snapshot has a vsock device: give --vsock-uds",
            ))
        }
        (None, Some(_)) => {
            return Err(shape_err(
                "the snapshot has no vsock device for --vsock-uds",
            ))
        }
    };
    let fs = match (&shape.fs_tag, &rc.fs_socket) {
        (Some(tag), Some(socket)) => Some(FsConfig {
            socket: socket.clone(),
            tag: tag.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => return Err(shape_err("the snapshot has virtio-fs: give --fs-socket")),
        (None, Some(_)) => return Err(shape_err("the snapshot has no virtio-fs for --fs-socket")),
    };
    let net = match (shape.net_mac, &rc.net_tap) {
        (Some(mac), Some(tap)) => Some(NetConfig {
            tap: tap.clone(),
            mac,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(shape_err("the snapshot has a NIC: give --net-tap")),
        (None, Some(_)) => return Err(shape_err("the snapshot has no NIC for --net-tap")),
    };
    Ok(VmmConfig {
        kernel: dir.to_path_buf(),
        initrd: None,
        cmdline: shape.cmdline.clone(),
        vcpus: shape.vcpus,
        mem_mib: shape.mem_mib,
        console: rc.console.clone(),
        vsock,
        fs,
        net,
        // Its target is set through the control socket: a restore that has none cannot serve
        // `balloon MIB`, but the guest still reports free pages.
        balloon: shape.balloon,
        cpuid_clear,
        linux64: false,
        seccomp: rc.seccomp,
        api_sock: rc.api_sock.clone(),
    })
}

/// `e` and its sources on one line.
fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Vmm {
    /// Builds the VM saved in `dir` (checked first: header, versions, sizes, checksums, shape),
    /// ready to [`Vmm::run`] from where it was paused.
    pub fn restore(dir: &Path, rc: &RestoreConfig) -> Result<Self, VmmError> {
        Self::restore_files(&SnapshotFiles::open(dir)?, rc)
    }

    /// [`Vmm::restore`] from a snapshot's open files.
    pub fn restore_files(files: &SnapshotFiles, rc: &RestoreConfig) -> Result<Self, VmmError> {
        let (state, header) = machine::read_snapshot_state(files)?;
        let config = restored_config(&files.name, &state.shape, rc)?;
        let kvm = open_kvm()?;
        let vm = create_vm(&kvm)?;
        let file = &files.memory;
        // A vhost-user backend maps guest RAM: it must be a shared memfd, so a VM with
        // virtio-fs gets a copy of the file's data; otherwise the file is mapped privately and
        // its pages shared. Either way the memory checksum is checked before any device exists,
        // unless the caller knows it matches.
        let mem = if config.fs.is_some() {
            // One pass over the file's data: the copy computes the checksum.
            let (mem, crc) = memory::copy_of(file, config.mem_bytes(), !rc.memory_checked)?;
            if let Some(crc) = crc {
                format::check_memory_crc(&header, crc)?;
            }
            mem
        } else {
            if !rc.memory_checked {
                files.check_memory(&header)?;
            }
            memory::map_private(file, config.mem_bytes())?
        };
        super::add_guest_memory(&vm, &mem)?;
        let exit = ExitSignal::new().map_err(os("create the exit eventfd"))?;
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let serial = legacy_devices(&config, &vm, &exit, &mut pio, Some(&state.serial))?;
        let (virtio, _) = virtio_devices(&config, &vm, &mem, &mut mmio)?;
        for (slot, saved) in virtio.iter().zip(&state.virtio) {
            lock(&slot.transport)
                .restore(saved)
                .map_err(SnapshotError::Device)?;
        }
        let stats = std::sync::Arc::new(ExitStats::default());
        let buses = (std::sync::Arc::new(pio), std::sync::Arc::new(mmio));
        let (vcpus, vcpu_ctl) = create_vcpus(&config, &kvm, &vm, None, buses, &exit, &stats)?;
        state.machine.restore(&vm)?;
        for (vcpu, saved) in vcpus.iter().zip(&state.vcpus) {
            vcpu_state::restore(&vcpu.fd, vcpu.id, saved)?;
        }
        Ok(Self {
            exit,
            vcpus,
            serial,
            virtio,
            stats,
            seccomp: config.seccomp,
            vm,
            mem,
            vcpu_ctl,
            paused: std::cell::Cell::new(false),
            api: super::bind_api(&config)?,
            shape: state.shape,
        })
    }

    /// Serves the control socket's waiting connections (one request each).
    pub(super) fn serve_api(&self) {
        let Some((listener, _)) = &self.api else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            let result = control::read_request(&stream)
                .map_err(|e| format!("cannot read the request: {e}"))
                .and_then(|line| control::parse(&line))
                .and_then(|cmd| self.execute(cmd).map_err(|e| chain(&e)));
            if let Err(e) = &result {
                eprintln!("hull-vmm: control request failed: {e}");
            }
            control::answer(&stream, &result);
        }
    }

    fn execute(&self, cmd: Command) -> Result<String, SnapshotError> {
        match cmd {
            Command::Pause => self.pause_vcpus().map(|()| "paused".into()),
            Command::Resume => {
                self.resume_vcpus();
                Ok("running".into())
            }
            Command::Snapshot(dir) => {
                let bytes = self.snapshot(&dir)?;
                eprintln!(
                    "hull-vmm: snapshot of {bytes} bytes written to {}",
                    dir.display()
                );
                Ok(format!("snapshot {bytes}"))
            }
            Command::Balloon(mib) => self.set_balloon_target(mib),
        }
    }

    /// Asks the guest to give `mib` MiB to the balloon (at most the guest's RAM).
    fn set_balloon_target(&self, mib: u32) -> Result<String, SnapshotError> {
        let refuse = |why: String| Err(SnapshotError::Device(why));
        let ram_mib = self.shape.mem_mib;
        if u64::from(mib) > ram_mib {
            return refuse(format!(
                "balloon {mib} MiB is more than the guest's {ram_mib} MiB"
            ));
        }
        let pages = mib << (20 - PAGE_SHIFT);
        for slot in &self.virtio {
            if let Some(actual) = lock(&slot.device).set_balloon_target(pages) {
                let actual_mib = actual >> (20 - PAGE_SHIFT);
                return Ok(format!(
                    "balloon target={mib} actual={actual_mib} guest={ram_mib}"
                ));
            }
        }
        refuse("this VM has no balloon (--balloon)".into())
    }

    /// Stops every vCPU at a safe point (no-op when paused).
    fn pause_vcpus(&self) -> Result<(), SnapshotError> {
        if self.paused.get() {
            return Ok(());
        }
        for ctl in &self.vcpu_ctl {
            if let Err(e) = ctl.pause() {
                self.vcpu_ctl.iter().for_each(|c| c.resume());
                return Err(e);
            }
        }
        self.paused.set(true);
        Ok(())
    }

    fn resume_vcpus(&self) {
        if self.paused.replace(false) {
            self.vcpu_ctl.iter().for_each(|c| c.resume());
        }
    }

    /// Pauses the VM (it stays paused) and writes its snapshot into `dir`; returns the bytes
    /// written.
    fn snapshot(&self, dir: &Path) -> Result<u64, SnapshotError> {
        self.pause_vcpus()?;
        let vcpus = self
            .vcpu_ctl
            .iter()
            .map(|c| c.save())
            .collect::<Result<Vec<_>, _>>()?;
        for (i, v) in vcpus.iter().enumerate() {
            eprintln!(
                "hull-vmm: snapshot: vCPU {i}: {} MSRs, XSAVE {}, XCRs {}",
                v.msrs.len(),
                if v.xsave.is_some() {
                    "saved"
                } else {
                    "unavailable"
                },
                if v.xcrs.is_some() {
                    "saved"
                } else {
                    "unavailable"
                },
            );
        }
        let virtio = self
            .virtio
            .iter()
            .map(|s| lock(&s.transport).state())
            .collect::<Result<Vec<_>, _>>()
            .map_err(SnapshotError::Device)?;
        let state = VmState {
            shape: self.shape.clone(),
            vcpus,
            machine: MachineState::save(&self.vm)?,
            serial: lock(&self.serial).state(),
            virtio,
        };
        machine::write_snapshot(dir, &state, &self.mem)
    }

    /// Removes the control socket's file (the VM stops).
    pub(super) fn remove_api_sock(&self) {
        if let Some((_, path)) = &self.api {
            let _ = std::fs::remove_file(path);
        }
    }
}
