//! Invariant 4 (network): TCP connect and bind only to the policy's ports,
//! and no abstract UNIX socket outside the job (Landlock's scope, ABI 6).

use crate::harness::*;
use jobwarden::sandbox::BaselineLayer;
use std::net::TcpListener;

#[test]
fn connect_to_an_allowed_port_works_and_others_are_refused() {
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    let fx = Fixture::new(&format!(
        "\n[plugins.tests.network]\nconnect = [{allowed_port}]\n"
    ));
    fx.probe(&["connect", &format!("127.0.0.1:{allowed_port}")])
        .assert_ok();
    let out = fx.probe(&["connect", &format!("127.0.0.1:{other_port}")]);
    out.assert_denied("EACCES");
    // The refused connection never reached the listener.
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err());
}

#[test]
fn no_network_by_default() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::new("");
    fx.probe(&["connect", &format!("127.0.0.1:{port}")])
        .assert_denied("EACCES");
}

#[test]
fn bind_only_allowed_ports() {
    // Find two free ports, then release them for the job.
    let (a, b) = {
        let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        (
            l1.local_addr().unwrap().port(),
            l2.local_addr().unwrap().port(),
        )
    };
    let fx = Fixture::new(&format!("\n[plugins.tests.network]\nbind = [{a}]\n"));
    fx.probe(&["bind", &a.to_string()]).assert_ok();
    fx.probe(&["bind", &b.to_string()]).assert_denied("EACCES");
}

#[test]
fn unrestricted_network_is_reported_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::new("\n[plugins.tests.network]\nunrestricted = true\n");
    let out = fx.probe(&["connect", &format!("127.0.0.1:{port}")]);
    out.assert_ok();
    let report = out.enforcement.unwrap();
    assert_eq!(
        report.item("network").unwrap().status,
        jobwarden::sandbox::Status::NotRequested
    );
}

/// A listening abstract UNIX socket (`@name`) in the host.
fn abstract_listener() -> (std::os::unix::net::UnixListener, String) {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("jobwarden-test-{}-{}", std::process::id(), unique());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    (
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap(),
        name,
    )
}

#[test]
fn abstract_unix_sockets_of_the_host_are_out_of_reach() {
    let (_listener, name) = abstract_listener();
    // As jobs run, the sockets layer refuses AF_UNIX before anything else.
    Fixture::new("")
        .probe(&["abstract-connect", &name])
        .assert_denied("EACCES");
    // Landlock's scope on its own (the sockets layer off, as for a policy
    // that grants UNIX sockets): EPERM.
    Fixture::without("", &[BaselineLayer::Sockets])
        .probe(&["abstract-connect", &name])
        .assert_denied("EPERM");
}

#[test]
fn control_below_landlock_abi_6_the_abstract_socket_is_reachable() {
    let (listener, name) = abstract_listener();
    let fx = Fixture::best_effort("", |b| {
        b.landlock_abi_max(5)
            .without_baseline(BaselineLayer::Sockets)
    });
    let out = fx.probe(&["abstract-connect", &name]);
    out.assert_ok();
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_ok(), "the connection arrived");
    let scopes = out.enforcement.as_ref().unwrap().item("scopes").unwrap();
    assert_eq!(scopes.status, jobwarden::sandbox::Status::NotEnforced);
}
