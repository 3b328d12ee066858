//! The sockets layer: "no network" means no socket of any family reaches
//! anything, except what the policy grants.
//!
//! Landlock (ABI 4–7) restricts TCP `bind` and `connect` by port, and
//! nothing else: a job could still send UDP (exfiltration, DNS tunnelling,
//! local UDP services), open raw, packet, netlink or vsock sockets, or
//! connect to a pathname UNIX socket in a directory it was granted nothing
//! in (path lookup needs no Landlock right) — `/var/run/docker.sock` is a
//! full escape. So `socket()` is filtered by family, type and protocol:
//!
//! - IPv4/IPv6 stream sockets only with protocol 0 or TCP (SCTP and MPTCP
//!   stream sockets are not TCP to Landlock), and only where Landlock ABI ≥ 4
//!   governs their ports;
//! - IPv4/IPv6 datagram sockets (UDP, protocol 0 or UDP) only with
//!   `network.udp` — a filter cannot see the address, so UDP is all ports;
//! - `AF_UNIX` only when the policy grants UNIX sockets. No Landlock ABI up to
//!   7 can restrict `connect()` by path, so on such kernels a granted list
//!   means every pathname socket, and the report says so; `socketpair()`
//!   stays (it reaches nothing outside the job);
//! - `AF_NETLINK` only `NETLINK_ROUTE`, and only with `network.netlink_route`;
//! - every other family (packet, vsock, bluetooth, CAN, …) is refused.
//!
//! io_uring can create sockets without calling `socket()`, so its system
//! calls fail with ENOSYS (callers fall back to ordinary system calls).
//! Refused calls fail with EACCES, as a Landlock-refused connect does.

use super::filter::{self, Cond, Rule};
use super::spec::Spec;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind, Requirement, Status};
use crate::sandbox::{BaselineLayer, PrepareError};

pub(crate) struct Sockets;

/// The type part of `socket`'s second argument (the rest are flags).
const SOCK_TYPE_MASK: u64 = 0xf;

/// What the job may create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The filter exists on this architecture, or why not.
    filter: Result<(), String>,
    unrestricted: bool,
    udp: bool,
    netlink_route: bool,
    unix: Unix,
}

/// UNIX sockets as granted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unix {
    None,
    /// `*`: any pathname socket.
    Any,
    /// These sockets, which the kernel cannot single out: every pathname
    /// socket is reachable once `AF_UNIX` is allowed.
    Listed(Vec<String>),
}

/// The rules for an outcome (nothing when the network is unrestricted).
fn rules(outcome: &Outcome) -> Vec<Rule> {
    let mut rules = io_uring_rules();
    if outcome.unrestricted {
        return rules;
    }
    let deny = |conds| Rule::when(libc::SYS_socket, libc::EACCES, conds);
    // Every family but the allowed ones, as one rule ("not this one, nor
    // that one"): one short chain in the filter, whose length the kernel
    // pays for at every spawn (see `filter.rs`).
    let mut allowed = vec![libc::AF_INET, libc::AF_INET6];
    if outcome.unix != Unix::None {
        allowed.push(libc::AF_UNIX);
    }
    if outcome.netlink_route {
        allowed.push(libc::AF_NETLINK);
    }
    rules.push(deny(
        allowed.into_iter().map(|f| Cond::ne(0, f as u64)).collect(),
    ));
    for family in [libc::AF_INET, libc::AF_INET6] {
        let family = family as u64;
        // Stream sockets, and datagram sockets with `network.udp`; no
        // other type (raw, seqpacket, …).
        let mut conds = vec![
            Cond::eq(0, family),
            Cond::masked_ne(1, SOCK_TYPE_MASK, libc::SOCK_STREAM as u64),
        ];
        if outcome.udp {
            conds.push(Cond::masked_ne(1, SOCK_TYPE_MASK, libc::SOCK_DGRAM as u64));
        }
        rules.push(deny(conds));
        // Stream sockets are TCP, datagram sockets UDP, or nothing.
        for (kind, protocol) in [
            (libc::SOCK_STREAM, libc::IPPROTO_TCP),
            (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        ] {
            rules.push(deny(vec![
                Cond::eq(0, family),
                Cond::masked(1, SOCK_TYPE_MASK, kind as u64),
                Cond::ne(2, 0),
                Cond::ne(2, protocol as u64),
            ]));
        }
    }
    if outcome.netlink_route {
        rules.push(deny(vec![
            Cond::eq(0, libc::AF_NETLINK as u64),
            Cond::ne(2, libc::NETLINK_ROUTE as u64),
        ]));
    }
    // A pair of connected sockets reaches nothing outside the job, but only
    // AF_UNIX makes them.
    rules.push(Rule::when(
        libc::SYS_socketpair,
        libc::EACCES,
        vec![Cond::ne(0, libc::AF_UNIX as u64)],
    ));
    rules
}

/// io_uring creates sockets and opens files without the system calls the
/// filter sees; callers fall back to those on ENOSYS.
pub(crate) fn io_uring_rules() -> Vec<Rule> {
    [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
    .into_iter()
    .map(|n| Rule::always(n, libc::ENOSYS))
    .collect()
}

impl Layer for Sockets {
    type Outcome = Outcome;

    fn predict(&self, job: &mut Job<'_>) -> Outcome {
        let network = &job.plan.network;
        let unix = if network.unix.is_empty() {
            Unix::None
        } else if network.any_unix_socket() {
            Unix::Any
        } else {
            Unix::Listed(
                network
                    .unix
                    .iter()
                    .map(|p| p.path.display().to_string())
                    .collect(),
            )
        };
        Outcome {
            filter: filter::usable(job.support, BaselineLayer::Sockets),
            unrestricted: network.unrestricted,
            udp: network.udp.value,
            netlink_route: network.netlink_route.value,
            unix,
        }
    }

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<Outcome, PrepareError> {
        let outcome = self.predict(job);
        if outcome.filter.is_ok() {
            spec.seccomp_rules.extend(rules(&outcome));
        }
        Ok(outcome)
    }

    fn report(&self, job: &Job<'_>, outcome: &Outcome, report: &mut EnforcementReport) {
        if outcome.unrestricted {
            for kind in [ItemKind::Sockets, ItemKind::UnixSockets] {
                report.push(Item::new(
                    kind,
                    Status::NotRequested,
                    format!("{kind} unrestricted"),
                    "unrestricted by the policy (`network.unrestricted`)",
                    Requirement::Advisory,
                ));
            }
            return;
        }
        if let Err(why) = &outcome.filter {
            report.push(Item::not_enforced(ItemKind::Sockets, why.clone()));
            report.push(Item::not_enforced(ItemKind::UnixSockets, why.clone()));
            return;
        }
        let mut kinds = vec!["TCP"];
        if outcome.udp {
            kinds.push("UDP (any port)");
        }
        if outcome.netlink_route {
            kinds.push("netlink route");
        }
        let network = &job.plan.network;
        report.push(Item::enforced(
            ItemKind::Sockets,
            format!("sockets: {}", kinds.join(", ").to_lowercase()),
            format!(
                "socket() only for {}; raw, packet, vsock and every other family refused (EACCES){}",
                kinds.join(", "),
                if outcome.udp {
                    format!(" — UDP granted by `{}`", network.udp.key)
                } else {
                    "; UDP refused (`network.udp`)".into()
                }
            ),
        ));
        report.push(match &outcome.unix {
            Unix::None => Item::enforced(
                ItemKind::UnixSockets,
                "no unix sockets",
                "AF_UNIX sockets refused (socketpair only); grant paths in `network.unix`",
            ),
            Unix::Any => Item::enforced(
                ItemKind::UnixSockets,
                "unix sockets: any",
                "every pathname UNIX socket, as `network.unix = [\"*\"]` asks (abstract ones stay confined by the socket scope)",
            ),
            Unix::Listed(paths) => Item::new(
                ItemKind::UnixSockets,
                Status::Partial,
                "unix sockets (all)",
                format!(
                    "the policy grants {} only, but this kernel's Landlock cannot restrict connect() to pathname sockets: every pathname UNIX socket is reachable; grant `*` to accept that, or remove the list",
                    paths.join(", ")
                ),
                Requirement::Required,
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(udp: bool, unix: Unix) -> Outcome {
        Outcome {
            filter: Ok(()),
            unrestricted: false,
            udp,
            netlink_route: false,
            unix,
        }
    }

    #[test]
    fn an_unrestricted_network_adds_only_the_io_uring_rules() {
        let mut open = outcome(false, Unix::None);
        open.unrestricted = true;
        assert_eq!(rules(&open), io_uring_rules());
    }

    /// Whether `rules` refuse `socket(family, kind, protocol)`, read from
    /// the rules themselves (the filter's agreement with its rules is
    /// `filter_tests.rs`'s business).
    fn refused(rules: &[Rule], family: i32, kind: i32, protocol: i32) -> bool {
        let args = [family as u64, kind as u64, protocol as u64];
        rules
            .iter()
            .filter(|r| r.syscall == libc::SYS_socket)
            .any(|r| {
                r.conds.iter().all(|c| {
                    let arg = args[c.arg as usize];
                    match c.op {
                        filter::Op::Eq => arg == c.value,
                        filter::Op::Ne => arg != c.value,
                        filter::Op::MaskedEq(m) => arg & m == c.value,
                        filter::Op::MaskedNe(m) => arg & m != c.value,
                    }
                })
            })
    }

    #[test]
    fn udp_and_unix_grants_open_exactly_their_sockets() {
        use libc::*;
        let closed = rules(&outcome(false, Unix::None));
        let udp = rules(&outcome(true, Unix::None));
        let unix = rules(&outcome(false, Unix::Any));
        let mut route = outcome(false, Unix::None);
        route.netlink_route = true;
        let route = rules(&route);
        let nonblocking_stream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
        for family in [AF_INET, AF_INET6] {
            for rules in [&closed, &udp, &unix] {
                assert!(!refused(rules, family, nonblocking_stream, 0));
                assert!(!refused(rules, family, SOCK_STREAM, IPPROTO_TCP));
                assert!(refused(rules, family, SOCK_STREAM, IPPROTO_SCTP));
                assert!(refused(rules, family, SOCK_RAW, 0));
                assert!(refused(rules, family, SOCK_SEQPACKET, 0));
            }
            assert!(refused(&closed, family, SOCK_DGRAM, 0));
            assert!(refused(&unix, family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            assert!(!refused(&udp, family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            assert!(!refused(&udp, family, SOCK_DGRAM, IPPROTO_UDP));
            assert!(refused(&udp, family, SOCK_DGRAM, IPPROTO_ICMP));
        }
        for rules in [&closed, &udp, &route] {
            assert!(refused(rules, AF_UNIX, SOCK_STREAM, 0));
        }
        assert!(!refused(&unix, AF_UNIX, SOCK_STREAM, 0));
        assert!(!refused(&unix, AF_UNIX, SOCK_DGRAM, 0));
        for rules in [&closed, &udp, &unix] {
            assert!(refused(rules, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
        }
        assert!(!refused(&route, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
        assert!(refused(&route, AF_NETLINK, SOCK_RAW, NETLINK_AUDIT));
        // Every other family, including numbers no kernel knows yet.
        for family in (0..=64).chain([1000, i32::MAX, -1]) {
            if ![AF_INET, AF_INET6, AF_UNIX, AF_NETLINK].contains(&family) {
                for rules in [&closed, &udp, &unix, &route] {
                    assert!(refused(rules, family, SOCK_STREAM, 0), "{family}");
                    assert!(refused(rules, family, SOCK_DGRAM, 0), "{family}");
                }
            }
        }
        // One rule refuses the families (the filter stays short).
        assert_eq!(closed.len(), udp.len());
        filter::compile(closed).unwrap();
    }
}
