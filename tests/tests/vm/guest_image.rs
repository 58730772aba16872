//! Checks on the built guest images: every option of `hull.config` (and every required one)
//! survived into the kernel's `.config`, and the initramfs holds exactly the static agent and
//! the base directories.

use hull_guest_image::{initramfs, kconfig};
use hull_tests::{env_path, guest_images, skip_or_fail};

#[test]
fn built_kernel_config_honours_the_fragment() {
    let Some(path) = env_path("HULL_KERNEL_CONFIG").filter(|p| p.is_file()) else {
        skip_or_fail("HULL_KERNEL_CONFIG does not name a built .config (scripts/test.sh sets it)");
        return;
    };
    let built = kconfig::parse(&std::fs::read_to_string(&path).unwrap());
    let mismatches = kconfig::check(&kconfig::parse(kconfig::FRAGMENT), &built);
    assert!(
        mismatches.is_empty(),
        "{} disagrees: {mismatches:#?}",
        path.display()
    );
    assert_eq!(built.get("CONFIG_MODULES").map(String::as_str), Some("n"));
}

#[test]
fn built_initramfs_holds_the_static_agent_as_init() {
    let Some(images) = guest_images() else {
        return;
    };
    let image = std::fs::read(&images.initramfs).unwrap();
    let members = initramfs::read(&image).unwrap();
    let init = members.iter().find(|m| m.path == "init").expect("/init");
    assert!(
        initramfs::is_static_elf(&init.data),
        "/init is not a static ELF"
    );
    assert_eq!(init.mode & 0o777, 0o755);
    let mut paths: Vec<_> = members.iter().map(|m| m.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "dev",
            "dev/console",
            "init",
            "proc",
            "run",
            "run/hull",
            "sys",
            "tmp"
        ]
    );
}

#[test]
fn agent_and_host_agree_on_the_ready_line() {
    use hull_agent::selftest::GuestFacts;
    use hull_runtime::selftest::{ReadyFacts, READY_PREFIX};
    assert_eq!(hull_agent::READY_PREFIX, READY_PREFIX);
    let facts = GuestFacts {
        cpus: 3,
        mem_total_kib: 4096,
        cgroup_controllers: vec!["cpuset".into(), "pids".into()],
    };
    let parsed = ReadyFacts::parse(&facts.to_string()).unwrap();
    assert_eq!(
        (parsed.cpus, parsed.mem_total_kib, parsed.cgroup2),
        (3, 4096, vec!["cpuset".to_owned(), "pids".to_owned()])
    );
}
