//! Putting a VM together and running it: KVM VM with in-kernel irqchip and PIT, memfd guest RAM
//! as memory slots, the loaded guest, the devices on their buses, one thread per vCPU, and the
//! event loop (epoll) on the main thread that serves device queues and backends until the VM
//! stops. Snapshots and restores are in the child module `snapshot_ops`.

mod snapshot_ops;
pub use snapshot_ops::RestoreConfig;

use std::cell::Cell;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::arch::{cpuid, mptable, regs};
use crate::boot;
use crate::bus::{lock, Bus};
use crate::config::{ConfigError, VmmConfig};
use crate::devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::devices::serial::{ConsoleOut, Serial, SerialSnapshot, COM1_BASE, COM1_GSI, COM1_LEN};
use crate::devices::virtio::balloon::BalloonDevice;
use crate::devices::virtio::fs::{self, FsDevice};
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::net::{self, NetDevice};
use crate::devices::virtio::vsock::{self, VsockDevice};
use crate::devices::virtio::{Interrupt, VirtioDevice};
use crate::devices::{ExitReason, ExitSignal};
use crate::layout;
use crate::memory::{self, GuestMemory};
use crate::seccomp::{self, ThreadKind};
use crate::snapshot::pause::{self, LoopSide};
use crate::snapshot::{Shape, SnapshotError};
use crate::vcpu::{ExitStats, Vcpu};

/// Building or running the VM failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The configuration is invalid.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// `/dev/kvm` is missing.
    #[error("/dev/kvm does not exist: this host has no KVM (load kvm_intel/kvm_amd, or use the QEMU backend)")]
    NoKvm(#[source] kvm_ioctls::Error),
    /// `/dev/kvm` cannot be opened.
    #[error("no permission to open /dev/kvm (run as root or join the kvm group)")]
    KvmPermission(#[source] kvm_ioctls::Error),
    /// Another KVM failure.
    #[error("KVM: cannot {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// A capability hull-vmm needs is missing.
    #[error("KVM lacks the {0:?} capability")]
    MissingCap(Cap),
    /// Guest memory.
    #[error("guest memory")]
    Memory(#[from] memory::MemoryError),
    /// Loading the guest.
    #[error("loading the guest")]
    Boot(#[from] boot::BootError),
    /// vCPU registers.
    #[error("vCPU set-up")]
    Regs(#[from] regs::RegsError),
    /// MP table.
    #[error("MP table")]
    MpTable(#[from] mptable::MpTableError),
    /// Bus set-up.
    #[error("device bus")]
    Bus(#[from] crate::bus::BusError),
    /// The console file.
    #[error("cannot open console file {0}")]
    Console(std::path::PathBuf, #[source] std::io::Error),
    /// vsock.
    #[error("vsock device")]
    Vsock(#[from] vsock::VsockError),
    /// virtio-fs.
    #[error("virtio-fs device")]
    Fs(#[from] fs::FsError),
    /// virtio-net.
    #[error("virtio-net device")]
    Net(#[from] net::NetError),
    /// seccomp.
    #[error("seccomp")]
    Seccomp(#[from] seccomp::SeccompError),
    /// A snapshot could not be restored.
    #[error("cannot restore the snapshot")]
    Snapshot(#[from] SnapshotError),
    /// The control socket.
    #[error("cannot listen on the control socket {0}")]
    ApiSock(std::path::PathBuf, #[source] std::io::Error),
    /// An OS call (eventfd, epoll, signals, threads).
    #[error("cannot {0}")]
    Os(&'static str, #[source] std::io::Error),
}

const TOKEN_EXIT: u64 = 1 << 56;
const TOKEN_SIGNAL: u64 = 2 << 56;
const TOKEN_QUEUE: u64 = 3 << 56;
const TOKEN_BACKEND: u64 = 4 << 56;
const TOKEN_API: u64 = 5 << 56;
const TOKEN_KIND: u64 = 0xff << 56;

/// A virtio device on the MMIO bus, as the event loop sees it.
struct VirtioSlot {
    device: Arc<Mutex<dyn VirtioDevice>>,
    /// Its transport (for snapshots).
    transport: Arc<Mutex<MmioTransport>>,
    /// The queue ioeventfds the event loop reads; empty when a vhost-user backend reads them.
    queue_evts: Vec<Arc<EventFd>>,
}

/// A VM ready to run.
pub struct Vmm {
    exit: ExitSignal,
    vcpus: Vec<Vcpu>,
    serial: Arc<Mutex<Serial>>,
    virtio: Vec<VirtioSlot>,
    stats: Arc<ExitStats>,
    seccomp: bool,
    vm: VmFd,
    mem: GuestMemory,
    /// The event loop's end of each vCPU's pause channel.
    vcpu_ctl: Vec<LoopSide>,
    /// Whether the vCPUs are paused (by the control socket).
    paused: Cell<bool>,
    /// The control socket and its path.
    api: Option<(UnixListener, std::path::PathBuf)>,
    /// What a snapshot records about the VM's make-up.
    shape: Shape,
}

impl std::fmt::Debug for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vmm")
            .field("vcpus", &self.vcpus.len())
            .finish_non_exhaustive()
    }
}

fn open_kvm() -> Result<Kvm, VmmError> {
    Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT => VmmError::NoKvm(e),
        libc::EACCES | libc::EPERM => VmmError::KvmPermission(e),
        _ => VmmError::Kvm("open /dev/kvm", e),
    })
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> VmmError {
    move |e| VmmError::Os(what, e)
}

/// A KVM VM with the capabilities hull-vmm needs, its in-kernel irqchip and PIT.
fn create_vm(kvm: &Kvm) -> Result<VmFd, VmmError> {
    for cap in [Cap::Irqchip, Cap::Ioeventfd, Cap::Irqfd, Cap::UserMemory] {
        if !kvm.check_extension(cap) {
            return Err(VmmError::MissingCap(cap));
        }
    }
    let vm = kvm
        .create_vm()
        .map_err(|e| VmmError::Kvm("create a VM", e))?;
    vm.set_tss_address(0xfffb_d000)
        .map_err(|e| VmmError::Kvm("set the TSS address", e))?;
    vm.create_irq_chip()
        .map_err(|e| VmmError::Kvm("create the irqchip", e))?;
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .map_err(|e| VmmError::Kvm("create the PIT", e))?;
    Ok(vm)
}

/// Gives the VM `mem`'s regions as memory slots.
fn add_guest_memory(vm: &VmFd, mem: &GuestMemory) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: u32::try_from(slot).expect("few regions"),
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mapping of `region.len()` bytes owned by `mem`, which
        // the Vmm keeps alive for as long as the VM exists.
        unsafe { vm.set_user_memory_region(r) }
            .map_err(|e| VmmError::Kvm("add guest memory", e))?;
    }
    Ok(())
}

/// The port-I/O devices: the serial console (to `config.console`, else stdout) and the i8042,
/// whose reset line stops the VM. Returns the serial port.
fn legacy_devices(
    config: &VmmConfig,
    vm: &VmFd,
    exit: &ExitSignal,
    pio: &mut Bus,
    saved: Option<&SerialSnapshot>,
) -> Result<Arc<Mutex<Serial>>, VmmError> {
    let out: ConsoleOut = match &config.console {
        Some(path) => Box::new(File::create(path).map_err(|e| VmmError::Console(path.clone(), e))?),
        None => Box::new(std::io::stdout()),
    };
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(os("create an eventfd"))?;
    vm.register_irqfd(&serial_irq, COM1_GSI)
        .map_err(|e| VmmError::Kvm("register the serial irqfd", e))?;
    let serial = match saved {
        None => Serial::new(serial_irq, out),
        Some(s) => Serial::restore(serial_irq, out, s).ok_or_else(|| {
            SnapshotError::Device("the saved serial port's FIFO is too large".into())
        })?,
    };
    let serial = Arc::new(Mutex::new(serial));
    pio.insert(COM1_BASE, COM1_LEN, serial.clone())?;
    pio.insert(
        I8042_BASE,
        I8042_LEN,
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
    )?;
    Ok(serial)
}

/// The virtio-mmio devices `config` asks for, on the MMIO bus, and the kernel command line that
/// announces them to the guest.
fn virtio_devices(
    config: &VmmConfig,
    vm: &VmFd,
    mem: &GuestMemory,
    mmio: &mut Bus,
) -> Result<(Vec<VirtioSlot>, String), VmmError> {
    let mut devices: Vec<Arc<Mutex<dyn VirtioDevice>>> = Vec::new();
    if let Some(v) = &config.vsock {
        devices.push(Arc::new(Mutex::new(VsockDevice::new(
            v.cid,
            v.uds.clone(),
        )?)));
    }
    if let Some(f) = &config.fs {
        devices.push(Arc::new(Mutex::new(FsDevice::connect(&f.socket, &f.tag)?)));
    }
    if let Some(n) = &config.net {
        devices.push(Arc::new(Mutex::new(NetDevice::open(&n.tap, n.mac)?)));
    }
    if config.balloon {
        devices.push(Arc::new(Mutex::new(BalloonDevice::new())));
    }
    let mut cmdline = config.cmdline.clone();
    let mut virtio = Vec::new();
    for dev in devices {
        let index = u32::try_from(virtio.len()).expect("few devices");
        virtio.push(attach_virtio(vm, mem, mmio, index, dev)?);
        cmdline.push_str(&format!(
            " virtio_mmio.device=4K@{:#x}:{}",
            layout::virtio_mmio_base(index),
            layout::VIRTIO_IRQ_BASE + index
        ));
    }
    Ok((virtio, cmdline))
}

/// Writes the boot tables, the kernel, the initrd, `cmdline` and the boot information into
/// guest memory.
fn load_guest(
    config: &VmmConfig,
    mem: &GuestMemory,
    cmdline: &str,
) -> Result<boot::Loaded, VmmError> {
    regs::write_boot_tables(mem)?;
    let loaded = boot::load_kernel(mem, &config.kernel, config.linux64)?;
    let initrd = boot::load_initrd(mem, &loaded, config.initrd.as_deref())?;
    boot::write_cmdline(mem, cmdline)?;
    boot::write_boot_info(mem, &loaded, cmdline, initrd, config.mem_bytes())?;
    mptable::write(mem, config.vcpus)?;
    Ok(loaded)
}

/// The vCPUs, with their CPUID, MSRs and LAPIC; the first one at the guest's entry point when
/// there is one (a restore sets every register from the snapshot instead). Also returns the
/// event loop's end of each vCPU's pause channel.
fn create_vcpus(
    config: &VmmConfig,
    kvm: &Kvm,
    vm: &VmFd,
    loaded: Option<&boot::Loaded>,
    (pio, mmio): (Arc<Bus>, Arc<Bus>),
    exit: &ExitSignal,
    stats: &Arc<ExitStats>,
) -> Result<(Vec<Vcpu>, Vec<LoopSide>), VmmError> {
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| VmmError::Kvm("read the supported CPUID", e))?;
    let msr_indices = Arc::new(
        kvm.get_msr_index_list()
            .map_err(|e| VmmError::Kvm("read the MSR index list", e))?
            .as_slice()
            .to_vec(),
    );
    let mut vcpus = Vec::new();
    let mut ctl = Vec::new();
    for id in 0..config.vcpus {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|e| VmmError::Kvm("create a vCPU", e))?;
        let (vcpu_side, loop_side) = pause::pair(msr_indices.clone());
        ctl.push(loop_side);
        let mut cpuid = supported.clone();
        cpuid::filter(cpuid.as_mut_slice(), id, config.vcpus, &config.cpuid_clear);
        fd.set_cpuid2(&cpuid)
            .map_err(|e| VmmError::Kvm("set the CPUID", e))?;
        regs::setup_msrs(&fd)?;
        regs::setup_lapic(&fd)?;
        if let Some(loaded) = loaded.filter(|_| id == 0) {
            regs::setup_sregs(&fd, loaded.entry.mode)?;
            regs::setup_regs(&fd, loaded.entry.addr, loaded.entry.mode)?;
            regs::setup_fpu(&fd)?;
        }
        vcpus.push(Vcpu {
            fd,
            id,
            pio: pio.clone(),
            mmio: mmio.clone(),
            exit: exit.clone(),
            stats: stats.clone(),
            control: vcpu_side,
        });
    }
    Ok((vcpus, ctl))
}

impl Vmm {
    /// Creates the VM for `config`, loads the guest and sets up devices and vCPUs.
    pub fn build(config: &VmmConfig) -> Result<Self, VmmError> {
        config.validate()?;
        let kvm = open_kvm()?;
        let vm = create_vm(&kvm)?;
        let mem = memory::create(config.mem_bytes())?;
        add_guest_memory(&vm, &mem)?;
        let exit = ExitSignal::new().map_err(os("create the exit eventfd"))?;
        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let serial = legacy_devices(config, &vm, &exit, &mut pio, None)?;
        let (virtio, cmdline) = virtio_devices(config, &vm, &mem, &mut mmio)?;
        let loaded = load_guest(config, &mem, &cmdline)?;
        let stats = Arc::new(ExitStats::default());
        let buses = (Arc::new(pio), Arc::new(mmio));
        let (vcpus, vcpu_ctl) =
            create_vcpus(config, &kvm, &vm, Some(&loaded), buses, &exit, &stats)?;
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
            paused: Cell::new(false),
            api: bind_api(config)?,
            shape: snapshot_ops::shape(config, &cmdline),
        })
    }

    /// Exit counters (shared with the vCPU threads).
    pub fn stats(&self) -> Arc<ExitStats> {
        self.stats.clone()
    }

    /// The virtio devices, to read their [`VirtioDevice::counters`] once the VM stopped.
    pub fn virtio_devices(&self) -> Vec<Arc<Mutex<dyn VirtioDevice>>> {
        self.virtio.iter().map(|s| s.device.clone()).collect()
    }

    /// Runs the VM until it stops; returns why. vCPU threads that are still inside `KVM_RUN`
    /// are left to the process's exit (the binary exits right after).
    pub fn run(mut self) -> Result<ExitReason, VmmError> {
        let signals = block_stop_signals()?;
        pause::install_kick_handler().map_err(os("install the vCPU kick handler"))?;
        let epoll = self.watch(&signals)?;
        // Built before any thread starts, so a filter that cannot be built stops the VM here.
        let vcpu_filter = self
            .seccomp
            .then(|| seccomp::filter(ThreadKind::Vcpu))
            .transpose()?;
        let threads = self.start_vcpus(vcpu_filter)?;
        if self.seccomp {
            seccomp::install(if self.api.is_some() {
                ThreadKind::EventLoopSnapshots
            } else {
                ThreadKind::EventLoop
            })?;
        }
        let reason = self.serve(&epoll, &signals)?;
        lock(&self.serial).flush();
        self.remove_api_sock();
        for slot in &self.virtio {
            lock(&slot.device).shutdown();
        }
        // vCPUs that already returned are reaped; others are stopped by the process exit.
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        Ok(reason)
    }

    /// An epoll instance watching the exit eventfd, the stop signals, every queue ioeventfd the
    /// event loop reads and every device backend's descriptors, each under its token.
    fn watch(&self, signals: &File) -> Result<Epoll, VmmError> {
        let epoll = Epoll::new().map_err(os("create the epoll instance"))?;
        let add = |fd: RawFd, token: u64| {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(os("watch a file descriptor"))
        };
        add(self.exit.eventfd().as_raw_fd(), TOKEN_EXIT)?;
        add(signals.as_raw_fd(), TOKEN_SIGNAL)?;
        if let Some((api, _)) = &self.api {
            add(api.as_raw_fd(), TOKEN_API)?;
        }
        for (d, slot) in self.virtio.iter().enumerate() {
            for (q, evt) in slot.queue_evts.iter().enumerate() {
                add(evt.as_raw_fd(), TOKEN_QUEUE | ((d as u64) << 16) | q as u64)?;
            }
        }
        for (d, slot) in self.virtio.iter().enumerate() {
            for (i, (fd, set)) in lock(&slot.device).backend_events().into_iter().enumerate() {
                epoll
                    .ctl(
                        ControlOperation::Add,
                        fd,
                        EpollEvent::new(set, TOKEN_BACKEND | ((d as u64) << 16) | i as u64),
                    )
                    .map_err(os("watch a device backend"))?;
            }
        }
        Ok(epoll)
    }

    /// One thread per vCPU, each under `filter` when there is one (a vCPU that cannot install it
    /// stops the VM as a crash).
    fn start_vcpus(
        &mut self,
        filter: Option<seccompiler::BpfProgram>,
    ) -> Result<Vec<JoinHandle<ExitReason>>, VmmError> {
        let mut threads = Vec::new();
        for (vcpu, ctl) in self.vcpus.drain(..).zip(self.vcpu_ctl.iter_mut()) {
            let name = format!("vcpu{}", vcpu.id);
            let filter = filter.clone();
            let exit = self.exit.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || {
                        if let Some(bpf) = filter {
                            if let Err(e) = seccompiler::apply_filter(&bpf) {
                                eprintln!(
                                    "hull-vmm: vCPU {}: cannot install seccomp: {e}",
                                    vcpu.id
                                );
                                exit.exit(ExitReason::Crash);
                                return ExitReason::Crash;
                            }
                        }
                        vcpu.run()
                    })
                    .map_err(os("start a vCPU thread"))?,
            );
            let handle = threads.last().expect("just pushed");
            ctl.set_thread(std::os::unix::thread::JoinHandleExt::as_pthread_t(handle));
        }
        Ok(threads)
    }

    /// The event loop: serves queue kicks, backend events and stop signals until the VM has a
    /// reason to stop, which it returns.
    fn serve(&self, epoll: &Epoll, signals: &File) -> Result<ExitReason, VmmError> {
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(VmmError::Os("wait for events", e)),
            };
            for ev in &events[..n] {
                self.dispatch(ev.data(), signals);
            }
            let r = self.exit.reason();
            if r != ExitReason::Running {
                return Ok(r);
            }
        }
    }

    /// Handles one epoll event by its token.
    fn dispatch(&self, token: u64, signals: &File) {
        match token & TOKEN_KIND {
            TOKEN_EXIT => {
                let _ = self.exit.eventfd().read();
            }
            TOKEN_SIGNAL => {
                drain_signalfd(signals);
                self.exit.exit(ExitReason::Stopped);
            }
            TOKEN_API => self.serve_api(),
            TOKEN_QUEUE => {
                let d = usize::try_from((token >> 16) & 0xffff).unwrap_or(usize::MAX);
                let q = u16::try_from(token & 0xffff).unwrap_or(u16::MAX);
                if let Some(slot) = self.virtio.get(d) {
                    if let Some(evt) = slot.queue_evts.get(usize::from(q)) {
                        let _ = evt.read();
                    }
                    lock(&slot.device).queue_notify(q);
                }
            }
            TOKEN_BACKEND => {
                let d = usize::try_from((token >> 16) & 0xffff).unwrap_or(usize::MAX);
                let i = usize::try_from(token & 0xffff).unwrap_or(usize::MAX);
                if let Some(slot) = self.virtio.get(d) {
                    lock(&slot.device).backend_event(i);
                }
            }
            _ => {}
        }
    }
}

fn attach_virtio(
    vm: &VmFd,
    mem: &GuestMemory,
    mmio: &mut Bus,
    index: u32,
    device: Arc<Mutex<dyn VirtioDevice>>,
) -> Result<VirtioSlot, VmmError> {
    let base = layout::virtio_mmio_base(index);
    let gsi = layout::VIRTIO_IRQ_BASE + index;
    let irqfd = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(os("create an eventfd"))?);
    vm.register_irqfd(&irqfd, gsi)
        .map_err(|e| VmmError::Kvm("register a virtio irqfd", e))?;
    let nqueues = lock(&device).queue_max_sizes().len();
    let mut queue_evts: Vec<Arc<EventFd>> = Vec::new();
    for q in 0..nqueues {
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(os("create an eventfd"))?);
        vm.register_ioevent(
            &evt,
            &IoEventAddress::Mmio(base + reg::QUEUE_NOTIFY),
            u32::try_from(q).expect("few queues"),
        )
        .map_err(|e| VmmError::Kvm("register a queue ioeventfd", e))?;
        queue_evts.push(evt);
    }
    let transport = MmioTransport::new(
        device.clone(),
        mem.clone(),
        Interrupt::new(irqfd),
        queue_evts.clone(),
    );
    let transport = Arc::new(Mutex::new(transport));
    mmio.insert(base, layout::VIRTIO_MMIO_SIZE, transport.clone())?;
    if lock(&device).take_queue_events(&queue_evts) {
        queue_evts.clear();
    }
    Ok(VirtioSlot {
        device,
        transport,
        queue_evts,
    })
}

/// The control socket `config` asks for, listening (non-blocking: the event loop accepts).
fn bind_api(config: &VmmConfig) -> Result<Option<(UnixListener, std::path::PathBuf)>, VmmError> {
    let Some(path) = &config.api_sock else {
        return Ok(None);
    };
    let err = |e| VmmError::ApiSock(path.clone(), e);
    if path.exists() {
        return Err(err(std::io::ErrorKind::AlreadyExists.into()));
    }
    // Bound under another name and renamed once listening: a client that sees the path can
    // connect (std binds, then listens: a connection in between would be refused).
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let l = UnixListener::bind(&tmp).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(Some((l, path.clone())))
}

/// Blocks SIGTERM/SIGINT in this thread (and the vCPU threads it starts) and returns a signalfd
/// that reports them, so a stop request becomes an ordinary event.
fn block_stop_signals() -> Result<File, VmmError> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; return values of these libc calls are checked below.
    let ok = unsafe {
        libc::sigemptyset(&mut set) == 0
            && libc::sigaddset(&mut set, libc::SIGTERM) == 0
            && libc::sigaddset(&mut set, libc::SIGINT) == 0
            && libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    };
    if !ok {
        return Err(VmmError::Os(
            "block signals",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `set` is initialised; the returned fd is checked and then owned by the File.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(VmmError::Os(
            "create a signalfd",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn drain_signalfd(f: &File) {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let mut r = f;
    while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
}
