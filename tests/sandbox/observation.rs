//! Observation's security claims (SECURITY.md, "Observation"): watching a
//! job never lets through a call the confining layers refuse, a job cannot
//! pass its own exec off as the spawner's to go unobserved, it never holds
//! the listener or the socket that carried it, and a job that floods the
//! host with observed calls, or dies in the middle of one, neither stalls
//! the host's other jobs nor leaves a descriptor behind.

use crate::harness::*;
use jobwarden::contract::{JobEvent, JobSpawnRequest};
use jobwarden::host::{JobEnd, PluginHandle};
use jobwarden::sandbox::{BaselineLayer, Status};
use jobwarden::{JobHost, JobId};
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

fn why(extra: &str) -> Fixture {
    Fixture::with(extra, |b| b.explain_denials())
}

fn denied_lines(out: &Outcome) -> Vec<String> {
    out.system()
        .into_iter()
        .filter(|l| l.starts_with("jobwarden: denied "))
        .collect()
}

#[test]
fn what_the_seccomp_filters_refuse_stays_refused_under_observation() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = udp.local_addr().unwrap().to_string();
    let outside = tempfile::tempdir().unwrap();
    let socket = outside.path().join("service.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let socket = socket.to_str().unwrap();
    let attempts: [(&[&str], &str); 3] = [
        (&["ptrace-me"], "EPERM"),
        (&["udp-send", &target], "EACCES"),
        (&["unix-connect", socket], "EACCES"),
    ];
    // The policy's seccomp filter (ptrace) and the kernel baseline's
    // sockets filter (UDP, UNIX paths no key grants).
    let on = "\n[seccomp]\ndeny_dangerous = true\n";
    let plain = Fixture::new(on);
    let observed = why(on);
    // Control: observed, but without those filters, the same calls pass —
    // so the refusals above are the filters', and observation neither
    // lifts them nor adds its own.
    let control = Fixture::best_effort("", |mut b| {
        for layer in BaselineLayer::ALL {
            b = b.without_baseline(layer);
        }
        b.explain_denials()
    });
    for (args, errno) in attempts {
        let a = plain.probe(args);
        let b = observed.probe(args);
        a.assert_denied(errno);
        b.assert_denied(errno);
        assert_eq!(a.stdout(), b.stdout(), "{args:?}");
        assert_eq!(a.end, b.end, "{args:?}");
        let report = b.enforcement.as_ref().unwrap();
        assert_eq!(report.item("observation").unwrap().status, Status::Enforced);
        let c = control.probe(args);
        c.assert_ok();
        assert!(control.plugin().observed(&c.id).is_some(), "{args:?}");
    }
}

#[test]
fn a_job_cannot_pass_its_exec_off_as_the_spawners() {
    // The spawner's own exec carries a per-job random value in an argument
    // register execve ignores; a job that sets that register, to anything
    // it could guess, is still observed — and still refused.
    let fx = why("");
    let env = std::path::Path::new("/usr/bin/env").canonicalize().unwrap();
    for marker in [
        "0",
        "1",
        "0xffffffff",
        "0xffffffffffffffff",
        "0x9e3779b97f4a7c15",
    ] {
        let out = fx.probe(&["exec-marked", marker, "/usr/bin/env", "true"]);
        out.assert_denied("EACCES");
        let lines = denied_lines(&out);
        assert!(
            lines.len() == 1
                && lines[0].starts_with(&format!("jobwarden: denied exec {}", env.display())),
            "marker {marker}: the exec went unobserved: {out:#?}"
        );
    }
    // Control: the same exec, refused the same way, by the plain `exec`.
    fx.probe(&["exec", "/usr/bin/env", "true"])
        .assert_denied("EACCES");
    // And an exec the policy allows runs, marked or not: the marker changes
    // nothing for the kernel.
    let allowed = fx.probe(&["exec-marked", "1", PROBE, "print", "hello"]);
    allowed.assert_ok();
}

#[test]
fn the_job_holds_neither_the_listener_nor_the_socket_that_carried_it() {
    for fx in [why(""), Fixture::best_effort("", |b| b.learn_mode())] {
        let out = fx.probe(&["fds"]);
        out.assert_ok();
        // There was a listener to leak: the job was observed.
        let observed = fx.plugin().observed(&out.id).expect("observed");
        assert!(observed.observed.notifications > 0);
        let fds = out.stdout()[0].clone();
        let listed: Vec<&str> = fds
            .rsplit(": ok: ")
            .next()
            .unwrap()
            .split(' ')
            .map(|entry| entry.split('=').next().unwrap())
            .collect();
        assert_eq!(listed, ["0", "1", "2"], "{fds}");
        assert!(
            !fds.contains("seccomp") && !fds.contains("socket:"),
            "{fds}"
        );
    }
}

#[test]
fn a_flooding_or_dying_job_neither_stalls_the_host_nor_leaks() {
    // In a process of its own: it counts the host process's descriptors.
    let output = child_test("observation::flood_child").output().unwrap();
    assert_child_passed(&output);
}

/// What the host process holds open, by target (numbers move when a
/// descriptor is closed and another opened). Left out: the listing's own
/// directory, `/proc` and what is beneath it, which a host without job
/// cgroups opens only while it scans for escaped processes (its thread may
/// be in a scan when either snapshot is taken), and a descriptor closed
/// between the listing and its `readlink` (the same scan's, seen in CI as
/// an empty target). The spare job cgroups the host keeps ready count by
/// number, not name (which set is spare changes with every job). A leaked
/// socket, pipe, eventfd or file still shows.
fn descriptors() -> Vec<String> {
    let own = format!("/proc/{}/fd", std::process::id());
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| *target != own && target != "/proc" && !target.starts_with("/proc/"))
        // The host keeps spare job cgroups open; which ones changes.
        .map(|target| match target.split_once("-spare-") {
            Some((head, tail)) => {
                let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
                format!("{head}-spare-N{rest}")
            }
            None => target,
        })
        .collect();
    fds.sort();
    fds
}

/// Waits for the terminal event of `id`, keeping every job's events.
fn until_end(
    plugin: &PluginHandle,
    seen: &mut Vec<JobEvent>,
    id: &JobId,
    limit: Duration,
) -> JobEvent {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(end) = seen.iter().find(|e| e.job_id() == id && e.is_terminal()) {
            return end.clone();
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {seen:#?}");
        seen.extend(plugin.wait_events(Duration::from_millis(200)));
    }
}

#[test]
#[ignore = "run by a_flooding_or_dying_job_neither_stalls_the_host_nor_leaks"]
fn flood_child() {
    child_role("observation::flood_child");
    let fx = why("");
    let plugin = fx.plugin();
    let file = fx.repo.join("inside.txt");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap();
    // Warm up: one observed job, so what the host opens once is open, and
    // the spare job cgroups it then makes are made.
    fx.probe(&["read", file]).assert_ok();
    let mut before = descriptors();
    assert!(
        eventually(Duration::from_secs(5), || {
            std::thread::sleep(Duration::from_millis(50));
            let now = descriptors();
            std::mem::replace(&mut before, now) == before
        }),
        "the host's descriptors never settled"
    );

    let mut seen = Vec::new();
    // A job that does nothing but observed opens, without end.
    let flood = plugin.spawn(JobSpawnRequest::new(
        "probe",
        ["reopen", file, "1000000000"],
    ));
    // Another job of the same host is served to its end meanwhile.
    let other = plugin.spawn(JobSpawnRequest::new("probe", ["read", file]));
    let end = until_end(&plugin, &mut seen, &other, Duration::from_secs(60));
    assert!(matches!(end, JobEvent::JobCompleted { .. }), "{end:?}");
    assert_eq!(
        plugin.end(&flood),
        None,
        "the flood ended before the other job"
    );

    // A flooding job killed by its timeout, mid-call.
    let timed = plugin
        .spawn(JobSpawnRequest::new("probe", ["reopen", file, "1000000000"]).with_timeout_secs(1));
    until_end(&plugin, &mut seen, &timed, Duration::from_secs(60));
    assert_eq!(plugin.end(&timed), Some(JobEnd::TimedOut));

    // The first one cancelled, mid-call.
    assert!(plugin.cancel(&flood));
    let end = until_end(&plugin, &mut seen, &flood, Duration::from_secs(60));
    assert!(matches!(end, JobEvent::JobCancelled { .. }), "{end:?}");
    let observed = plugin.observed(&flood).expect("observed");
    // More than one round of the host's budget per job (256 answers
    // before serving the others, notify.rs). Not a fixed larger number:
    // the flood lives about a second, and under a parallel test run on
    // two cores it made 448 calls in that time once (.ci/user-runs).
    assert!(
        observed.observed.notifications > 256,
        "{:?}",
        observed.observed
    );
    // One distinct access, however many calls: what is kept is bounded
    // (`MAX_DISTINCT_ACCESSES`), not the number of calls.
    assert_eq!(observed.observed.len(), observed.observed.accesses().len());
    assert!(
        observed.observed.len() < 10,
        "{:?}",
        observed.observed.accesses()
    );

    // The host still serves, and holds what it held before.
    fx.probe(&["read", file]).assert_ok();
    assert!(
        eventually(Duration::from_secs(5), || descriptors() == before),
        "descriptors left behind:\nbefore {before:#?}\nafter {:#?}",
        descriptors()
    );
}
