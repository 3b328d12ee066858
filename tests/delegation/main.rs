//! A host that is not root moves into a delegated cgroup of its own when
//! its cgroups give no limits (`src/sandbox/linux/delegation.rs`), tested
//! for real: `jobwarden` runs as uid 65534 in a cgroup of root's, and
//! - asks a stand-in for the systemd user manager (`standin.rs`, this
//!   binary's ignored test `standin`) on a real `dbus-daemon` bus for a
//!   transient scope; the stand-in makes the scope's cgroup, chowns it and
//!   moves the pid as systemd does;
//! - or, started alone in a cgroup chowned to it, uses that one;
//! - and says why not, and what to do, when it gets neither.
//!
//! Each test checks what the kernel says: where the host and its jobs are
//! (`/proc/PID/cgroup`), which controllers the job cgroups got, that a
//! setsid escapee dies with its job (`cgroup.kill`), and that a dead host's
//! scope is cleaned by the next host.
//!
//! Not tested here, for want of systemd as PID 1: the real manager's
//! answers (its D-Bus error names, how fast it moves a process, what it
//! delegates), and pids and memory limits in a delegated scope — this
//! machine's cgroup2 hierarchy has no pids or memory controller (cgroup v1
//! holds them); `hugetlb`, which it has, stands in to prove that the
//! controllers are enabled for job cgroups (the hidden
//! `--test-delegate-controller` flag). Everything here needs root (to make
//! cgroups and run as another user) and `dbus-daemon`.

// Linux only: cgroups, setpriv, D-Bus.
#![cfg(target_os = "linux")]

#[macro_use]
#[path = "../support/skip.rs"]
mod skip;

mod lab;
mod standin;

use lab::{Lab, USER};
use serde_json::Value;
use standin::Mode;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The stand-in, run by `Lab` in a process of its own.
#[test]
#[ignore = "the systemd stand-in: started by the tests, serves until killed"]
fn standin() {
    standin::serve();
}

/// A lab or the skip that says why there is none.
macro_rules! lab {
    ($mode:expr) => {
        match Lab::new($mode) {
            Ok(lab) => lab,
            Err((requirement, why)) => skip!(requirement, "{why}"),
        }
    };
}

fn delegation(doctor: &Value) -> &Value {
    &doctor["machine"]["support"]["cgroups"]["delegation"]
}

fn check<'a>(doctor: &'a Value, name: &str) -> &'a Value {
    doctor["machine"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {doctor:#}"))
}

#[test]
fn a_host_without_limits_gets_a_delegated_scope_from_the_user_manager() {
    let lab = lab!(Some(Mode::Systemd));
    let doctor = lab.doctor(&lab.start, &lab.test_controllers());
    let taken = &delegation(&doctor)["taken"];
    assert_eq!(taken["via"]["kind"], "systemd_scope", "{doctor:#}");
    let unit = taken["via"]["unit"].as_str().unwrap();
    assert!(unit.starts_with("app-jobwarden-") && unit.ends_with(".scope"));
    let scope = lab.manager.join("app.slice").join(unit);
    assert_eq!(taken["root"], scope.display().to_string(), "{doctor:#}");
    assert_eq!(
        taken["leaf"],
        scope.join("jobwarden.host").display().to_string()
    );
    // The stand-in was asked for a delegated scope holding doctor's pid.
    let calls = lab.standin_calls();
    let pid = unit
        .trim_start_matches("app-jobwarden-")
        .trim_end_matches(".scope");
    assert!(
        calls.contains(&format!(
            "StartTransientUnit name={unit} mode=fail caller={USER} pids=[{pid}] delegate=true"
        )),
        "{calls}"
    );
    // Job cgroups are made in the scope, and a setsid escapee dies with
    // its job: cgroup.kill, which the host's own cgroup did not give.
    assert_eq!(
        doctor["machine"]["support"]["cgroups"]["v2"],
        scope.display().to_string()
    );
    let tree_kill = check(&doctor, "tree_kill");
    assert_eq!(tree_kill["verdict"], "works", "{doctor:#}");
    assert!(
        tree_kill["detail"]
            .as_str()
            .unwrap()
            .contains("cgroup v2 cgroup.kill"),
        "{tree_kill}"
    );
    if lab.hugetlb {
        assert_eq!(taken["controllers"], serde_json::json!(["hugetlb"]));
    } else {
        skipped_part!(
            "cgroup-v2-hugetlb",
            "no spare cgroup2 controller here: enabling controllers in the scope was not tested"
        );
    }
    // The scope is left with the host's leaf only: every job cgroup of
    // doctor's probe jobs was removed.
    assert_eq!(lab::children(&scope), vec!["jobwarden.host".to_string()]);
}

#[test]
fn jobs_run_beside_the_hosts_leaf_with_the_scopes_controllers() {
    let lab = lab!(Some(Mode::Systemd));
    let out = lab.run(&lab.start, &lab.test_controllers(), &lab.cgroup_script());
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let job = lab::field(&stdout, "job 0::");
    let host = lab::field(&stdout, "host 0::");
    // The host sits in the scope's leaf; the job in a job cgroup beside it.
    let scope = Path::new(&host).parent().unwrap();
    assert!(host.ends_with("/jobwarden.host"), "{stdout}");
    assert!(
        scope
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("app-jobwarden-"),
        "{stdout}"
    );
    let job = Path::new(&job);
    assert_eq!(job.parent().unwrap(), scope, "{stdout}");
    assert!(
        job.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("jobwarden-"),
        "{stdout}"
    );
    if lab.hugetlb {
        assert!(stdout.contains("controllers hugetlb"), "{stdout}");
    }
    // The report says what this gave: the tree kill, not the limits this
    // hierarchy has no controller for.
    assert!(stderr.contains("tree cleanup (v2 cgroup.kill)"), "{stderr}");
    assert!(stderr.contains("processes partial"), "{stderr}");
}

#[test]
fn a_host_alone_in_a_cgroup_delegated_to_it_uses_that_cgroup() {
    let lab = lab!(None);
    let own = lab.delegated_cgroup("own");
    // Without a controller it lacks, the cgroup is not worth moving into;
    // with no bus either, the host stays where it is and says why.
    let doctor = lab.doctor(&own, &[]);
    let reasons = delegation(&doctor)["not_taken"].to_string();
    assert!(delegation(&doctor)["taken"].is_null(), "{doctor:#}");
    assert!(
        reasons.contains("is delegated to this user but offers none of pids memory"),
        "{reasons}"
    );
    assert!(reasons.contains("no user D-Bus"), "{reasons}");
    if !lab.hugetlb {
        skip!(
            "cgroup-v2-hugetlb",
            "no spare cgroup2 controller here to make the delegated cgroup worth using"
        );
    }
    let doctor = lab.doctor(&own, &lab.test_controllers());
    let taken = &delegation(&doctor)["taken"];
    assert_eq!(taken["via"]["kind"], "own_cgroup", "{doctor:#}");
    assert_eq!(taken["root"], own.display().to_string());
    assert_eq!(taken["controllers"], serde_json::json!(["hugetlb"]));
    // The host that used it enabled hugetlb for its children: no process
    // can join it now (no internal processes). The next one gets its own,
    // as each `systemd-run --scope` gets a new scope.
    let own = lab.delegated_cgroup("own-for-run");
    let out = lab.run(&own, &lab.test_controllers(), &lab.cgroup_script());
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let relative = format!("/{}", own.strip_prefix(&lab.v2_mount).unwrap().display());
    assert_eq!(
        lab::field(&stdout, "host 0::"),
        format!("{relative}/jobwarden.host")
    );
    assert!(
        lab::field(&stdout, "job 0::").starts_with(&format!("{relative}/jobwarden-")),
        "{stdout}"
    );
    assert!(stdout.contains("controllers hugetlb"), "{stdout}");
}

#[test]
fn a_refusing_or_failing_manager_leaves_the_host_in_place_and_doctor_says_what_to_do() {
    for (mode, expected) in [
        (
            Mode::Refuse,
            "refused the scope app-jobwarden-PID.scope: org.freedesktop.DBus.Error.AccessDenied",
        ),
        (
            Mode::Drop,
            "dropped the scope app-jobwarden-PID.scope without moving this process into it",
        ),
    ] {
        let lab = lab!(Some(mode));
        let (doctor, pid) = lab.doctor_with_pid(&lab.start, &[]);
        let report = delegation(&doctor);
        assert!(report["taken"].is_null(), "{doctor:#}");
        let expected = expected.replace("PID", &pid.to_string());
        assert!(
            report["not_taken"].to_string().contains(&expected),
            "{mode:?}: {report:#}"
        );
        assert!(
            report["hints"]
                .to_string()
                .contains("systemd-run --user --scope -p Delegate=yes"),
            "{report:#}"
        );
        // Still in the cgroup it started in: nothing was moved.
        assert!(lab::children(&lab.manager.join("app.slice")).is_empty());
        assert_eq!(check(&doctor, "tree_kill")["verdict"], "works");
    }
}

#[test]
fn never_keeps_the_host_where_it_is() {
    let lab = lab!(Some(Mode::Systemd));
    let doctor = lab.doctor(&lab.start, &["--no-cgroup-delegation"]);
    let report = delegation(&doctor);
    assert!(report["taken"].is_null(), "{doctor:#}");
    assert!(
        report["not_taken"]
            .to_string()
            .contains("not tried: the embedding program said never"),
        "{report:#}"
    );
    assert_eq!(lab.standin_calls(), "", "the manager was never asked");
}

/// Tells a child test it was started by its parent test.
const CHILD_ROLE: &str = "JOBWARDEN_TEST_DELEGATION_CHILD";

#[test]
fn a_dead_hosts_scope_is_cleaned_by_the_next_host() {
    // In a child process that is a subreaper: the dead host's orphans are
    // re-parented to it, and it reaps them (PID 1 here does not).
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["dead_host_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ROLE, "dead_host_child")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run as a child process by a_dead_hosts_scope_is_cleaned_by_the_next_host"]
fn dead_host_child() {
    assert_eq!(
        std::env::var(CHILD_ROLE).as_deref(),
        Ok("dead_host_child"),
        "runs only as the child of its parent test"
    );
    // SAFETY: prctl with integer arguments only.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    dead_host_scenario();
    // The lab is gone: every child left is an orphan of the dead host.
    // SAFETY: waitpid with WNOHANG on any child of this single-test process.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

fn dead_host_scenario() {
    let lab = lab!(Some(Mode::Systemd));
    // The first host runs a job whose escapee would live a minute, and is
    // killed with SIGKILL: its job's leader dies with it (parent-death
    // signal), the escapee stays contained in its job cgroup.
    let (mut first, escapee) = lab.spawn_escape(&lab.start);
    let scope = lab
        .manager
        .join("app.slice")
        .join(format!("app-jobwarden-{}.scope", first.id()));
    // SAFETY: kill(2) of the child process this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        lab::alive(escapee),
        "control: the escapee outlives its host"
    );
    let stale: Vec<String> = lab::children(&scope)
        .into_iter()
        .filter(|c| c.starts_with("jobwarden-"))
        .collect();
    assert_eq!(stale.len(), 1, "the dead host's job cgroup: {stale:?}");
    // The next host, in a scope of its own, kills it and removes its job
    // cgroup from the dead host's scope.
    let doctor = lab.doctor(&lab.start, &[]);
    assert_eq!(delegation(&doctor)["taken"]["via"]["kind"], "systemd_scope");
    assert!(
        lab::eventually(Duration::from_secs(5), || !lab::alive(escapee)),
        "the escapee {escapee} survived the next host"
    );
    assert!(!scope.join(&stale[0]).exists(), "{} was left", stale[0]);
}
