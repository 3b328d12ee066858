//! Network means network: without a grant a job cannot send UDP, reach a
//! pathname UNIX socket (even in a directory it was granted nothing in), or
//! open netlink, packet, vsock or SCTP sockets. Each attempt is made for
//! real, and again with the sockets layer switched off to show the layer is
//! what refused.

use crate::harness::*;
use jobwarden::sandbox::{BaselineLayer, Status};
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::time::Duration;

fn control() -> Fixture {
    Fixture::without("", &[BaselineLayer::Sockets])
}

/// The errno name the probe reported, or `ok`.
fn answer(out: &Outcome) -> String {
    let line = out.stdout().join("\n");
    match line.split_once(": denied: ") {
        Some((_, rest)) => rest.split_whitespace().next().unwrap_or("").to_string(),
        None if line.contains(": ok") => "ok".into(),
        None => line,
    }
}

#[test]
fn a_udp_datagram_to_a_loopback_listener_never_leaves_the_job() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let mut buf = [0u8; 64];

    let out = Fixture::new("").probe(&["udp-send", &target]);
    out.assert_denied("EACCES");
    assert!(
        listener.recv_from(&mut buf).is_err(),
        "nothing may arrive from a job without `network.udp`"
    );
    let item = out.enforcement.as_ref().unwrap().item("sockets").unwrap();
    assert_eq!(item.status, Status::Enforced, "{item:?}");

    control().probe(&["udp-send", &target]).assert_ok();
    let (n, _) = listener
        .recv_from(&mut buf)
        .expect("the control's datagram");
    assert_eq!(&buf[..n], b"hello from the job");
}

#[test]
fn a_unix_socket_in_a_directory_granted_nothing_cannot_be_reached() {
    let outside = tempfile::tempdir().unwrap();
    let path = outside.path().join("service.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let path = path.to_str().unwrap();

    let out = Fixture::new("").probe(&["unix-connect", path]);
    out.assert_denied("EACCES");
    assert!(listener.accept().is_err(), "no connection may arrive");
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("unix_sockets")
        .unwrap();
    assert_eq!(item.status, Status::Enforced, "{item:?}");

    // Without the layer, Landlock alone lets the job in: path lookup needs
    // no right, and connect() is not mediated.
    control().probe(&["unix-connect", path]).assert_ok();
    listener.set_nonblocking(false).unwrap();
    let (stream, _) = listener.accept().expect("the control's connection");
    drop(stream);
}

#[test]
fn netlink_packet_vsock_and_sctp_sockets_are_refused_by_the_filter() {
    let fx = Fixture::new("");
    let off = control();
    // (probe socket arguments, what this machine answers without the layer:
    // an answer, "not" for anything but EACCES, or "any" where the kernel
    // itself may refuse with EACCES — ping sockets outside
    // `net.ipv4.ping_group_range` — so only the filter's answer is checked)
    let cases: &[(&[&str], &str)] = &[
        (&["16", "3", "0"], "ok"),      // AF_NETLINK, NETLINK_ROUTE
        (&["16", "3", "9"], "not"),     // AF_NETLINK, NETLINK_AUDIT
        (&["17", "3", "768"], "EPERM"), // AF_PACKET: no CAP_NET_RAW
        (&["40", "1", "0"], "not"),     // AF_VSOCK
        (&["2", "1", "132"], "not"),    // SCTP over a stream socket
        (&["10", "5", "132"], "not"),   // SCTP seqpacket over IPv6
        (&["2", "3", "1"], "EPERM"),    // raw ICMP: no CAP_NET_RAW
        (&["2", "2", "1"], "any"),      // ICMP datagram (ping) socket
    ];
    for (args, without) in cases {
        let mut full = vec!["socket"];
        full.extend_from_slice(args);
        let filtered = fx.probe(&full);
        assert_eq!(answer(&filtered), "EACCES", "{args:?}: {filtered:#?}");
        let plain = answer(&off.probe(&full));
        if *without == "any" {
            continue;
        }
        if *without == "not" {
            assert_ne!(plain, "EACCES", "{args:?} without the layer");
        } else {
            assert_eq!(plain, *without, "{args:?} without the layer");
        }
    }
}

#[test]
fn tcp_and_socketpairs_still_work() {
    let fx = Fixture::new("");
    // A TCP socket may be created (Landlock decides where it connects).
    fx.probe(&["socket", "2", "1", "0"]).assert_ok();
    fx.probe(&["socket", "10", "1", "6"]).assert_ok();
    // A connected pair reaches nothing outside the job.
    fx.probe(&["socketpair", "1"]).assert_ok();
}

#[test]
fn an_unrestricted_network_is_not_filtered() {
    let fx = Fixture::new("\n[binaries.probe.network]\nunrestricted = true\n");
    let out = fx.probe(&["socket", "16", "3", "0"]);
    out.assert_ok();
    let item = out.enforcement.as_ref().unwrap().item("sockets").unwrap();
    assert_eq!(item.status, Status::NotRequested);
}

#[test]
fn udp_and_unix_sockets_flow_where_the_policy_grants_them() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let fx = Fixture::new("\n[binaries.probe.network]\nudp = true\nunix_any = true\n");
    let out = fx.probe(&["udp-send", &target]);
    out.assert_ok();
    let mut buf = [0u8; 64];
    let (n, _) = listener.recv_from(&mut buf).expect("the granted datagram");
    assert_eq!(&buf[..n], b"hello from the job");
    let report = out.enforcement.as_ref().unwrap();
    assert!(
        report
            .item("sockets")
            .unwrap()
            .detail
            .contains("binaries.probe.network.udp"),
        "{report}"
    );
    assert_eq!(
        report.item("unix_sockets").unwrap().status,
        Status::Enforced
    );

    let outside = tempfile::tempdir().unwrap();
    let path = outside.path().join("granted.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    fx.probe(&["unix-connect", path.to_str().unwrap()])
        .assert_ok();
}

#[test]
fn a_listed_unix_socket_is_reported_partial_because_the_kernel_cannot_single_it_out() {
    let outside = tempfile::tempdir().unwrap();
    let path = outside.path().join("listed.sock");
    let _listener = UnixListener::bind(&path).unwrap();
    let grant = format!(
        "\n[binaries.probe.network]\nunix = [\"{}\"]\n",
        path.display()
    );
    // Under `required`, the job is refused, naming the item.
    let error = Fixture::new(&grant).probe(&["print", "never"]).error();
    assert!(error.contains("unix_sockets partial"), "{error}");
    // Under best effort it runs, and the socket it names is reachable.
    let out = Fixture::best_effort(&grant, |b| b).probe(&["unix-connect", path.to_str().unwrap()]);
    out.assert_ok();
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("unix_sockets")
        .unwrap();
    assert_eq!(item.status, Status::Partial);
    assert!(
        item.detail.contains("every pathname UNIX socket"),
        "{item:?}"
    );
}
