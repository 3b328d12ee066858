//! A weaker machine, simulated on this one: Landlock capped to an older ABI
//! (or off), and no cgroups. Under `best_effort` the job runs and its report
//! names exactly what was not enforced — and the kernel's answers prove the
//! report right (what it calls unenforced really is allowed). Under
//! `required` the job is refused before exec, naming what is missing.

use crate::harness::*;
use jobwarden::JobEnd;
use jobwarden::contract::JobEvent;
use jobwarden::sandbox::Status;
use std::net::TcpListener;

const LIMITS: &str = "\n[binaries.probe.limits]\nprocesses = 20\nmemory = \"256MiB\"\n";

fn never_started(out: &Outcome) {
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, JobEvent::JobStarted { .. })),
        "refused before exec: {out:#?}"
    );
    assert_eq!(out.end, Some(JobEnd::EnforcementUnavailable));
}

#[test]
fn without_landlock_best_effort_runs_and_says_the_filesystem_is_open() {
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(0));
    let out = fx.probe(&["read", "/etc/hostname"]);
    // The report says the filesystem is not confined, and it is not.
    out.assert_ok();
    let report = out.enforcement.as_ref().unwrap();
    for item in ["filesystem", "network", "scopes"] {
        assert_eq!(
            report.item(item).unwrap().status,
            Status::NotEnforced,
            "{report}"
        );
    }
    let line = &out.system()[0];
    assert!(
        line.contains(
            "filesystem NOT enforced: Landlock is switched off by the testing aid `landlock_abi_max = 0`"
        ),
        "{line}"
    );
}

#[test]
fn without_landlock_required_refuses_naming_the_filesystem() {
    let fx = Fixture::with("", |b| b.landlock_abi_max(0));
    let out = fx.probe(&["print", "must not run"]);
    never_started(&out);
    let error = out.error();
    assert!(error.contains("filesystem NOT enforced"), "{error}");
    assert!(
        error.contains("best_effort"),
        "the hint names the way out: {error}"
    );
}

#[test]
fn abi_1_confines_the_filesystem_only_partly_and_says_why() {
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(1));
    let out = fx.probe(&["read", "/etc/hostname"]);
    out.assert_denied("EACCES");
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("filesystem")
        .unwrap()
        .clone();
    assert_eq!(item.status, Status::Partial);
    assert!(
        item.detail
            .contains("truncating files is not restrictable below ABI 3"),
        "{item:?}"
    );

    let required = Fixture::with("", |b| b.landlock_abi_max(1));
    let out = required.probe(&["print", "must not run"]);
    never_started(&out);
    assert!(
        out.error().contains("filesystem partial"),
        "{}",
        out.error()
    );
}

#[test]
fn abi_5_enforces_tcp_but_not_scopes_and_the_kernel_agrees() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(5));

    // TCP rules exist from ABI 4: a connect to a port not allowed is refused.
    let out = fx.probe(&["connect", &format!("127.0.0.1:{port}")]);
    out.assert_denied("EACCES");
    let report = out.enforcement.as_ref().unwrap();
    assert_eq!(
        report.item("network").unwrap().status,
        Status::Enforced,
        "{report}"
    );
    let scopes = report.item("scopes").unwrap();
    assert_eq!(scopes.status, Status::NotEnforced, "{report}");
    assert!(
        scopes.detail.contains("Landlock ABI 5") && scopes.detail.contains("< 6"),
        "{scopes:?}"
    );

    // Scopes come with ABI 6: below it, the job may signal the host (signal
    // 0 only checks permission), exactly as the report says.
    let host_pid = std::process::id().to_string();
    fx.probe(&["kill", &host_pid, "0"]).assert_ok();
    let full = Fixture::new("");
    full.probe(&["kill", &host_pid, "0"]).assert_denied("EPERM");
}

#[test]
fn without_cgroups_required_refuses_naming_the_process_limit() {
    let fx = Fixture::with(LIMITS, |b| b.without_cgroups());
    let out = fx.probe(&["print", "must not run"]);
    never_started(&out);
    let error = out.error();
    // Running as root, RLIMIT_NPROC would not hold either.
    assert!(error.contains("processes NOT enforced"), "{error}");
    assert!(error.contains("no pids cgroup here"), "{error}");
    // A per-process address-space limit is not the whole-tree limit asked.
    assert!(error.contains("memory partial"), "{error}");
    // Without a cgroup, killing the whole tree is best effort.
    assert!(error.contains("tree_cleanup partial"), "{error}");
}

#[test]
fn without_cgroups_best_effort_runs_and_reports_the_weaker_limits() {
    let fx = Fixture::best_effort(LIMITS, |b| b.without_cgroups());
    let out = fx.probe(&["print", "ran"]);
    assert_eq!(out.code(), 0);
    let report = out.enforcement.as_ref().unwrap();
    assert_eq!(
        report.item("memory").unwrap().status,
        Status::Partial,
        "{report}"
    );
    assert!(
        report.item("memory").unwrap().detail.contains("RLIMIT_AS"),
        "{report}"
    );
    assert_eq!(
        report.item("tree_cleanup").unwrap().status,
        Status::Partial,
        "{report}"
    );
    assert!(
        report.item("cgroup").is_none(),
        "no cgroup was attempted: {report}"
    );
    let line = &out.system()[0];
    assert!(line.contains("processes NOT enforced"), "{line}");
    // Landlock is untouched by the missing cgroups.
    assert_eq!(report.item("filesystem").unwrap().status, Status::Enforced);
}

#[test]
fn the_simulate_flag_caps_the_abi_for_explain_too() {
    let explain = |cap: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"));
        command.args(["explain", "--plugin", "cli"]);
        if let Some(cap) = cap {
            command.args(["--simulate-landlock-abi", cap]);
        }
        command.args(["--", "true"]);
        // The variable that once did this is ignored now: a testing aid
        // must never weaken a host implicitly.
        command.env("JOBWARDEN_LANDLOCK_ABI_MAX", "0");
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = explain(Some("3"));
    assert!(
        text.contains("network       NOT enforced: Landlock ABI 3"),
        "{text}"
    );
    assert!(text.contains("would be refused here"), "{text}");
    let text = explain(None);
    assert!(
        text.contains("everything the plan asks is enforced"),
        "{text}"
    );
}
