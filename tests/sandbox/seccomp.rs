//! The seccomp filter (the opt-in list and the namespace part of the kernel
//! baseline): each denied call, attempted for real, fails with EPERM under
//! the filter — and where the kernel answers differently without it, the
//! same attempt is made with the filter off (the baseline switched off, the
//! opt-in list not asked for) to prove the filter is what refused.
//! Ordinary work (fork, threads, exec) still runs.

use crate::harness::*;
use jobwarden::sandbox::Status;

const ON: &str = "\n[seccomp]\ndeny_dangerous = true\n";

/// (probe arguments, the answer without the filter on this kind of
/// machine, or `None` where it varies with sysctls and capabilities).
const CALLS: &[(&[&str], Option<&str>)] = &[
    (&["ptrace-me"], Some("ok")),
    (&["vm-read"], Some("ok")),
    (&["pidfd-getfd"], Some("ok")),
    (&["perf"], None),
    (&["bpf"], None),
    (&["userfaultfd"], None),
    (&["keyctl"], None),
    (&["add-key"], None),
    (&["unshare"], None),
    (&["clone-newuser"], None),
    (&["setns"], Some("EINVAL")),
    (&["mount", "/tmp"], None),
    // TIOCSTI, TIOCSTI with a high bit the kernel ignores, TIOCLINUX.
    (&["ioctl", "0x5412"], Some("ENOTTY")),
    (&["ioctl", "0x100005412"], Some("ENOTTY")),
    (&["ioctl", "0x541C"], Some("ENOTTY")),
];

fn answer(out: &Outcome) -> String {
    let line = out
        .stdout()
        .into_iter()
        .find(|l| l.starts_with("probe: "))
        .unwrap_or_default();
    match line.split_once(": denied: ") {
        Some((_, rest)) => rest.split_whitespace().next().unwrap_or("").to_string(),
        None if line.contains(": ok") => "ok".into(),
        None => line,
    }
}

#[test]
fn every_denied_call_fails_with_eperm_and_the_filter_is_why() {
    let on = Fixture::new(ON);
    let off = Fixture::without_baseline("");
    for (args, without) in CALLS {
        let filtered = on.probe(args);
        assert_eq!(
            answer(&filtered),
            "EPERM",
            "{args:?} under the filter: {filtered:#?}"
        );
        let plain = off.probe(args);
        if let Some(expected) = without {
            assert_eq!(
                answer(&plain),
                *expected,
                "{args:?} without the filter: {plain:#?}"
            );
        }
    }
}

#[test]
fn clone3_says_enosys_so_libc_falls_back_to_a_checked_clone() {
    let on = Fixture::new(ON);
    assert_eq!(answer(&on.probe(&["clone3"])), "ENOSYS");
    assert_eq!(
        answer(&Fixture::without_baseline("").probe(&["clone3"])),
        "EINVAL"
    );
    // fork (glibc tries clone3 first) and a tree of children still work.
    on.probe(&["fork", "3"]).assert_ok();
    on.probe(&["tree", "2", "0.1"]).assert_ok();
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_system_calls_cannot_slip_past_the_list() {
    let out = Fixture::new(ON).probe(&["x32-getpid"]);
    assert_eq!(answer(&out), "EPERM", "{out:#?}");
}

#[test]
fn the_filter_is_installed_and_reported() {
    let out = Fixture::new(ON).probe(&["seccomp-status"]);
    out.assert_ok();
    assert!(
        out.stdout()[0].contains("Seccomp:\t2"),
        "{:?}",
        out.stdout()
    );
    let report = out.enforcement.as_ref().unwrap();
    let item = report.item("seccomp").unwrap();
    assert_eq!(item.status, Status::Enforced);
    assert!(
        item.detail.contains("ptrace") && item.detail.contains("TIOCSTI"),
        "{item:?}"
    );
    assert!(out.system()[0].contains("seccomp"), "{:?}", out.system());

    let off = Fixture::without_baseline("").probe(&["seccomp-status"]);
    assert!(
        off.stdout()[0].contains("Seccomp:\t0"),
        "{:?}",
        off.stdout()
    );
    let item = off
        .enforcement
        .as_ref()
        .unwrap()
        .item("seccomp")
        .unwrap()
        .clone();
    assert_eq!(item.status, Status::NotRequested);
}

#[test]
fn a_plugin_can_turn_the_filter_on_for_its_jobs_only() {
    let fx = Fixture::new(
        "\n[plugins.strict]\nbinaries = [\"probe\"]\nseccomp = { deny_dangerous = true }\n",
    );
    let strict = run_to_end(
        &fx.host.plugin("strict"),
        jobwarden::JobSpawnRequest::new("probe", ["ptrace-me"]),
        std::time::Duration::from_secs(30),
    );
    strict.assert_denied("EPERM");
    fx.probe(&["ptrace-me"]).assert_ok();
}
