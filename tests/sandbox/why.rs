//! `run --why` (the host's `explain_denials`): a job confined as usual,
//! whose refused accesses are named at its end with the policy key that
//! would allow each — for a read, a write, an exec and a TCP connect the
//! policy refuses — while the kernel's answers stay exactly those of an
//! unobserved job.

use crate::harness::*;
use std::net::TcpListener;

/// A host that explains denials, over the harness's policy.
fn why(extra: &str) -> Fixture {
    Fixture::with(extra, |b| b.explain_denials())
}

/// The `jobwarden: denied …` lines of a job's end.
fn denied_lines(out: &Outcome) -> Vec<String> {
    out.system()
        .into_iter()
        .filter(|l| l.starts_with("jobwarden: denied "))
        .collect()
}

#[test]
fn a_refused_read_names_the_path_and_the_key() {
    let fx = why("");
    let outside = fx.dir.path().join("outside.txt");
    std::fs::write(&outside, "secret").unwrap();
    let outside = outside.canonicalize().unwrap();
    let out = fx.probe(&["read", outside.to_str().unwrap()]);
    out.assert_denied("EACCES");
    let expected = format!(
        "jobwarden: denied read {p} — not under filesystem.read; add \"{p}\" there (or to binaries.probe.filesystem.read)",
        p = outside.display()
    );
    assert_eq!(denied_lines(&out), vec![expected], "{out:#?}");
    let observed = fx.plugin().observed(&out.id).expect("the job was observed");
    assert_eq!(observed.refusals.len(), 1);
    // The line comes before the exit summary and the terminal event.
    let system = out.system();
    let denied = system
        .iter()
        .position(|l| l.starts_with("jobwarden: denied"))
        .unwrap();
    let summary = system
        .iter()
        .position(|l| l.contains("finished in"))
        .unwrap();
    assert!(denied < summary, "{system:#?}");
}

#[test]
fn a_refused_write_and_create_name_the_read_write_key() {
    let fx = why("");
    let existing = fx.dir.path().join("existing.txt");
    std::fs::write(&existing, "old").unwrap();
    let existing = existing.canonicalize().unwrap();
    let out = fx.probe(&["write", existing.to_str().unwrap()]);
    out.assert_denied("EACCES");
    assert_eq!(
        denied_lines(&out),
        vec![format!(
            "jobwarden: denied write {p} — not under filesystem.read_write; add \"{p}\" there (or to binaries.probe.filesystem.read_write)",
            p = existing.display()
        )],
        "{out:#?}"
    );
    // A new file needs its directory writable: the fix names the directory.
    let dir = fx.dir.path().canonicalize().unwrap();
    let new = dir.join("new.txt");
    let out = fx.probe(&["write", new.to_str().unwrap()]);
    out.assert_denied("EACCES");
    assert_eq!(
        denied_lines(&out),
        vec![format!(
            "jobwarden: denied create {n} — its directory {d} is not under filesystem.read_write; add \"{d}\" there (or to binaries.probe.filesystem.read_write)",
            n = new.display(),
            d = dir.display()
        )],
        "{out:#?}"
    );
}

#[test]
fn a_refused_exec_names_the_helpers_key() {
    let fx = why("");
    let out = fx.probe(&["exec", "/usr/bin/env", "true"]);
    out.assert_denied("EACCES");
    let env = std::path::Path::new("/usr/bin/env").canonicalize().unwrap();
    assert_eq!(
        denied_lines(&out),
        vec![format!(
            "jobwarden: denied exec /usr/bin/env — not in binaries.probe.helpers or filesystem.execute; add \"{}\" to binaries.probe.helpers (or to filesystem.execute)",
            env.display()
        )],
        "{out:#?}"
    );
}

#[test]
fn a_refused_tcp_connect_names_the_port_and_the_key() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = why("");
    let out = fx.probe(&["connect", &format!("127.0.0.1:{port}")]);
    out.assert_denied("EACCES");
    assert_eq!(
        denied_lines(&out),
        vec![format!(
            "jobwarden: denied connect 127.0.0.1:{port} (TCP) — port {port} is not in network.connect; add {port} there (or to binaries.probe.network.connect)"
        )],
        "{out:#?}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the refused connection arrived");
}

#[test]
fn granted_accesses_are_not_reported_and_the_job_is_not_changed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let extra = format!("\n[plugins.tests.network]\nconnect = [{port}]\n");
    let fx = why(&extra);
    let inside = fx.repo.join("inside.txt");
    std::fs::write(&inside, "x").unwrap();
    for args in [
        vec!["read".to_string(), inside.display().to_string()],
        vec![
            "write".to_string(),
            fx.repo.join("new.txt").display().to_string(),
        ],
        vec!["connect".to_string(), format!("127.0.0.1:{port}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = fx.probe(&args);
        out.assert_ok();
        assert!(denied_lines(&out).is_empty(), "{out:#?}");
        let observed = fx.plugin().observed(&out.id).unwrap();
        assert!(observed.observed.notifications > 0, "nothing was observed");
        assert_eq!(
            out.enforcement
                .as_ref()
                .unwrap()
                .item("observation")
                .unwrap()
                .status,
            jobwarden::sandbox::Status::Enforced
        );
    }
    // The same refusals with and without observation: the kernel answers,
    // observation only watches.
    let plain = Fixture::new("");
    let observed = why("");
    for args in [["read", "/etc/hostname"], ["exec", "/usr/bin/env"]] {
        let a = plain.probe(&args);
        let b = observed.probe(&args);
        assert_eq!(a.stdout(), b.stdout());
        assert_eq!(a.end, b.end);
        assert!(plain.plugin().observed(&a.id).is_none());
    }
}
