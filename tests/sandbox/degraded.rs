//! A weaker machine, simulated on this one: Landlock capped to an older ABI
//! (or off), and no cgroups. Under `best_effort` the job runs and its report
//! names exactly what was not enforced — and the kernel's answers prove the
//! report right (what it calls unenforced really is allowed). Under
//! `required` the job is refused before exec, naming what is missing.

use crate::harness::*;
use jobwarden::JobEnd;
use jobwarden::contract::JobEvent;
use jobwarden::sandbox::{EnforcementReport, Status};
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
    let fx = Fixture::all_required(LIMITS, |b| b.without_cgroups());
    let out = fx.probe(&["print", "must not run"]);
    never_started(&out);
    let error = out.error();
    if is_root() {
        // Running as root, RLIMIT_NPROC would not hold either.
        assert!(error.contains("processes NOT enforced"), "{error}");
    } else {
        // RLIMIT_NPROC counts every process of the user: not the tree's.
        assert!(error.contains("processes partial"), "{error}");
    }
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
    if is_root() {
        assert!(line.contains("processes NOT enforced"), "{line}");
    } else {
        assert!(line.contains("processes partial"), "{line}");
        assert!(line.contains("RLIMIT_NPROC"), "{line}");
    }
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
    // Uncapped, nothing of Landlock is missing. The only items that may be
    // weaker are the limits and cleanup a host without a delegated cgroup
    // cannot give (a regular user), which the default policy runs anyway.
    let text = explain(None);
    assert!(!text.contains("would be refused here"), "{text}");
    let weaker: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("on this machine"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    if weaker.is_empty() {
        assert!(
            text.contains("everything the plan asks is enforced"),
            "{text}"
        );
    }
    for line in weaker {
        let item = line.split_whitespace().next().unwrap_or_default();
        assert!(
            ["memory", "processes", "tree_cleanup"].contains(&item) && line.contains("cgroup"),
            "only limits and cleanup may be weaker, for want of a cgroup: {text}"
        );
    }
}

/// A fixture at Landlock ABI `abi` (best effort) whose jobs may read, but
/// not write, `ro/file` in a directory of the test's own.
fn capped_with_read_only_file(abi: u32) -> (Fixture, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("read-only.txt");
    std::fs::write(&file, "keep me").unwrap();
    let extra = format!(
        "\n[plugins.tests.filesystem]\nread = [\"{}\"]\n",
        dir.path().display()
    );
    let fx = Fixture::best_effort(&extra, |b| b.landlock_abi_max(abi));
    (fx, file, dir)
}

/// What the kernel lets a job do at a capped ABI, next to what the report
/// says: filesystem reads outside the list, truncation of a read-only
/// file, TCP to a port not allowed, signalling the host.
fn kernel_answers_at(abi: u32) -> (Vec<&'static str>, EnforcementReport) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (fx, file, _dir) = capped_with_read_only_file(abi);
    let mut open = Vec::new();
    let read = fx.probe(&["read", "/etc/hostname"]);
    if read.code() == 0 {
        open.push("read outside");
    }
    let truncate = fx.probe(&["truncate", file.to_str().unwrap()]);
    if truncate.code() == 0 {
        open.push("truncate");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
    } else {
        truncate.assert_denied("EACCES");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
    if fx.probe(&["connect", &format!("127.0.0.1:{port}")]).code() == 0 {
        open.push("tcp");
    }
    let host = std::process::id().to_string();
    if fx.probe(&["kill", &host, "0"]).code() == 0 {
        open.push("signal host");
    }
    (open, read.enforcement.unwrap())
}

#[test]
fn at_abi_1_the_kernel_allows_exactly_what_the_report_calls_unenforced() {
    let (open, report) = kernel_answers_at(1);
    // Reads stay confined; truncation, TCP and signals are open.
    assert_eq!(open, ["truncate", "tcp", "signal host"], "{report}");
    let filesystem = report.item("filesystem").unwrap();
    assert_eq!(filesystem.status, Status::Partial, "{report}");
    assert!(filesystem.detail.contains("truncat"), "{filesystem:?}");
    assert_eq!(report.item("network").unwrap().status, Status::NotEnforced);
    assert_eq!(report.item("scopes").unwrap().status, Status::NotEnforced);
}

#[test]
fn at_abi_3_truncation_is_confined_and_tcp_and_signals_are_not() {
    let (open, report) = kernel_answers_at(3);
    assert_eq!(open, ["tcp", "signal host"], "{report}");
    assert_eq!(report.item("filesystem").unwrap().status, Status::Enforced);
    assert_eq!(report.item("network").unwrap().status, Status::NotEnforced);
    assert_eq!(report.item("scopes").unwrap().status, Status::NotEnforced);
}

#[test]
fn control_at_the_full_abi_the_kernel_refuses_all_four() {
    if kernel_abi() < 6 {
        skip!(
            "landlock-abi-6",
            "this kernel has Landlock ABI {}",
            kernel_abi()
        );
    }
    let (open, report) = kernel_answers_at(kernel_abi());
    assert_eq!(open, Vec::<&str>::new(), "{report}");
}

/// The kernel's Landlock ABI, asked directly.
pub(crate) fn kernel_abi() -> u32 {
    // SAFETY: the version query of landlock_create_ruleset reads nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    ret.max(0) as u32
}

#[test]
fn without_cgroups_the_process_limit_is_as_weak_as_reported() {
    // processes = 20, tried with 30 children.
    let weak = Fixture::best_effort(LIMITS, |b| b.without_cgroups());
    let out = weak.probe(&["fork", "30"]);
    let processes = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("processes")
        .unwrap()
        .clone();
    if is_root() {
        // RLIMIT_NPROC does not bind root: not enforced, and indeed not.
        assert_eq!(processes.status, Status::NotEnforced, "{processes:?}");
        out.assert_ok();
    } else {
        // RLIMIT_NPROC counts every process of the user: partial.
        assert_eq!(processes.status, Status::Partial, "{processes:?}");
    }
    // Control: with the pids cgroup the same job stops at the limit.
    let full = Fixture::best_effort(LIMITS, |b| b);
    let out = full.probe(&["fork", "30"]);
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("processes")
        .unwrap()
        .clone();
    if item.status != Status::Enforced {
        skip!("cgroup-pids", "no pids cgroup here: {}", item.detail);
    }
    out.assert_denied("EAGAIN");
}

#[test]
fn without_cgroups_the_memory_limit_still_binds_each_process() {
    // memory = 256 MiB as address space per process (RLIMIT_AS): one
    // process cannot touch 512 MiB.
    let fx = Fixture::best_effort(LIMITS, |b| b.without_cgroups());
    let out = fx.probe(&["alloc", "512"]);
    let memory = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("memory")
        .unwrap()
        .clone();
    assert_eq!(memory.status, Status::Partial, "{memory:?}");
    assert!(
        !out.stdout().join("").contains("512 MiB touched"),
        "{out:#?}"
    );
    assert_ne!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
    // Control: the limit is what stopped it.
    Fixture::best_effort("", |b| b.without_cgroups())
        .probe(&["alloc", "512"])
        .assert_ok();
}
