//! The pod network extended into the VM: hull reads the veth CNI made in the pod's namespace,
//! the VMM's tap is wired to it with tc mirred, and the agent gives the guest NIC the veth's
//! MAC, addresses, MTU and routes. Namespaces are the test's own (`ip netns`), removed after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hull_runtime::network;
use hull_runtime::sandbox::TAP_NAME;
use hull_tests::netns::{self, PodNet};
use hull_tests::pod::TestPod;
use hull_tests::spec;

#[test]
fn the_pods_veth_is_read_and_wired_to_a_tap_and_unwired() {
    let net = PodNet::new("10.199.1");
    // Stand-in for the VMM's tap.
    net.pod
        .ip(&["tuntap", "add", "dev", TAP_NAME, "mode", "tap"]);

    let (veth, pod) = network::discover(&net.pod.path())
        .expect("discover")
        .expect("an interface");
    assert_eq!(veth.name, "eth0");
    assert_eq!(veth.mtu, 1400);
    let link = net.pod.ip(&["-o", "link", "show", "eth0"]);
    let mac = hull_protocol::network::format_mac(veth.mac);
    assert!(link.contains(&mac), "{link} lacks {mac}");
    assert_eq!(pod.interfaces.len(), 1);
    let nic = &pod.interfaces[0];
    assert_eq!(nic.mac, veth.mac);
    assert_eq!(nic.mtu, 1400);
    let addresses: Vec<String> = nic.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["10.199.1.2/24"]);
    assert_eq!(pod.routes.len(), 1, "{:?}", pod.routes);
    assert_eq!(pod.routes[0].destination, None);
    assert_eq!(pod.routes[0].gateway, Some("10.199.1.1".parse().unwrap()));

    network::wire(&net.pod.path(), &veth, TAP_NAME, Duration::from_secs(2)).expect("wire");
    let to_tap = net.pod.tc(&["filter", "show", "dev", "eth0", "ingress"]);
    assert!(
        to_tap.contains("mirred") && to_tap.contains(&format!("Redirect to device {TAP_NAME}")),
        "{to_tap}"
    );
    let to_veth = net.pod.tc(&["filter", "show", "dev", TAP_NAME, "ingress"]);
    assert!(to_veth.contains("Redirect to device eth0"), "{to_veth}");
    let tap = net.pod.ip(&["-o", "link", "show", TAP_NAME]);
    assert!(tap.contains("mtu 1400"), "{tap}");

    network::unwire(&net.pod.path(), veth.index).expect("unwire");
    let qdiscs = net.pod.tc(&["qdisc", "show", "dev", "eth0"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    // Unwiring twice, or after CNI removed the namespace, is not an error.
    network::unwire(&net.pod.path(), veth.index).expect("unwire again");
}

#[test]
fn a_namespace_with_only_loopback_gives_no_nic_and_a_missing_one_is_an_error() {
    let empty = netns::TestNetns::new("hull-empty");
    assert!(network::discover(&empty.path())
        .expect("discover")
        .is_none());
    let err =
        network::discover(std::path::Path::new("/var/run/netns/hull-no-such-ns")).unwrap_err();
    assert!(err.to_string().contains("hull-no-such-ns"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_vm_answers_at_the_pod_ip_and_reaches_its_gateway() {
    let net = PodNet::new("10.199.2");
    let pod_ns = net.pod.name().to_owned();
    let Some(pod) = TestPod::boot_in_netns(1, 256, &net.pod.path()).await else {
        return;
    };
    let vmm_pid = pod.vm.vm_pid();

    // The guest NIC has the veth's MAC, address, MTU and default route.
    let veth_mac = net.pod.ip(&["-o", "link", "show", "eth0"]);
    let shown = pod
        .run(
            "ip",
            &spec::spec(&["sh", "-c", "ip -o link; ip -o addr; ip route"]),
        )
        .await;
    assert_eq!(shown.exit.exit_status, 0, "{}", shown.err());
    let out = shown.out();
    assert!(out.contains("10.199.2.2/24"), "{out}");
    assert!(out.contains("default via 10.199.2.1"), "{out}");
    assert!(out.contains("mtu 1400"), "{out}");
    let mac = veth_mac
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("veth MAC");
    assert!(
        out.contains(mac),
        "guest NIC lacks the veth MAC {mac}: {out}"
    );

    // Outside → pod: busybox httpd in a container answers at the pod IP.
    pod.agent()
        .create_container(
            "web",
            spec::to_bytes(&spec::spec(&[
                "sh",
                "-c",
                "echo hull-net-ok > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
            ])),
            hull_tests::rootfs::GUEST_ROOTFS,
            hull_tests::pod::pipes(false),
        )
        .await
        .expect("create web");
    pod.agent().start_container("web").await.expect("start web");
    let pod_ip = net.pod_ip.clone();
    let page = net
        .outside
        .enter(move || fetch(&pod_ip, 8080, Duration::from_secs(60)));
    assert!(page.contains("hull-net-ok"), "{page}");

    // Pod → outside: a TCP server in the outside namespace, reached from a container.
    let listener = net
        .outside
        .enter(|| std::net::TcpListener::bind("10.199.2.1:0").expect("bind outside"));
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(b"from-outside\n").unwrap();
    });
    let got = pod
        .run(
            "client",
            &spec::spec(&["sh", "-c", &format!("nc 10.199.2.1 {port} </dev/null")]),
        )
        .await;
    server.join().unwrap();
    assert_eq!(got.out().trim(), "from-outside", "{}", got.err());

    // The VMM ran in the pod namespace, and its tap is there while it runs.
    let vmm_ns = std::fs::read_link(format!("/proc/{vmm_pid}/ns/net")).unwrap();
    let pod_ns_id = net
        .pod
        .enter(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap());
    assert_eq!(vmm_ns, pod_ns_id);
    assert!(net.pod.ip(&["-o", "link"]).contains(TAP_NAME));

    drop(pod);
    // The VM is gone: its tap with it, and the veth's redirect.
    assert!(!net.pod.ip(&["-o", "link"]).contains(TAP_NAME));
    let qdiscs = net.pod.tc(&["qdisc", "show", "dev", "eth0"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    assert!(netns::exists(&pod_ns));
}

/// `GET /` over plain TCP, retried until `within` (the container needs a moment to listen).
fn fetch(ip: &str, port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut conn = TcpStream::connect_timeout(
                &format!("{ip}:{port}").parse().unwrap(),
                Duration::from_secs(5),
            )?;
            conn.set_read_timeout(Some(Duration::from_secs(10)))?;
            conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            conn.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            Ok(_) => panic!("empty answer from {ip}:{port}"),
            Err(e) => panic!("no answer from {ip}:{port}: {e}"),
        }
    }
}
