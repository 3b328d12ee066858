//! The seccomp filter (the opt-in list and the namespace part of the kernel
//! baseline): each denied call, attempted for real, fails with EPERM under
//! the filter, and the same attempt with the filter off (the baseline
//! switched off, the opt-in list not asked for) gets another answer from
//! this kernel (success, or an argument error the kernel reports before any
//! privilege check), so the EPERM is the filter's. Ordinary work (fork,
//! threads, exec) still runs.
//!
//! Some calls are refused for lack of privilege before the kernel looks at
//! their arguments (`pivot_root`, `fsopen`, `fsmount`, `fspick`,
//! `move_mount`, and `clone`/`unshare` with namespace flags other than
//! `CLONE_NEWUSER`). Their control runs in a fresh user and mount
//! namespace (the probe's `in-userns`, or `CLONE_NEWUSER` added to the
//! flags), where the job holds the privilege; under the filter the job can
//! make no such namespace, so these attempts show the layer as a whole
//! holding, not each entry on its own. That each entry is in the compiled
//! program is proven separately, without the kernel, by the BPF
//! interpreter in `src/sandbox/linux/filter_tests.rs`.

use crate::harness::*;
use jobwarden::sandbox::Status;

const ON: &str = "\n[seccomp]\ndeny_dangerous = true\n";

/// One denied call: the attempt under the filter, the control attempt
/// without it, and the answers this kernel may give the control.
struct Call {
    filtered: Vec<String>,
    control: Vec<String>,
    without: Vec<&'static str>,
}

fn call(filtered: &[&str], control: &[&str], without: &[&'static str]) -> Call {
    Call {
        filtered: filtered.iter().map(|s| s.to_string()).collect(),
        control: control.iter().map(|s| s.to_string()).collect(),
        without: without.to_vec(),
    }
}

fn same(args: &[&str], without: &[&'static str]) -> Call {
    call(args, args, without)
}

fn calls() -> Vec<Call> {
    // perf_event_paranoid ≤ 2 lets a process count its own user-space events.
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    let perf = if paranoid <= 2 { "ok" } else { "EACCES" };
    let mut calls = vec![
        same(&["ptrace-me"], &["ok"]),
        same(&["vm-read"], &["ok"]),
        same(&["vm-write"], &["ok"]),
        same(&["process-madvise"], &["ok"]),
        same(&["pidfd-getfd"], &["ok"]),
        same(&["perf"], &[perf]),
        same(&["bpf"], &["EFAULT"]),
        same(&["userfaultfd"], &["ok"]),
        same(&["keyctl"], &["EOPNOTSUPP"]),
        same(&["add-key"], &["EFAULT"]),
        same(&["request-key"], &["EFAULT"]),
        same(&["mount", "/tmp"], &["EFAULT"]),
        same(&["umount2"], &["EINVAL"]),
        same(&["fsconfig"], &["EINVAL"]),
        same(&["open-tree"], &["ok"]),
        same(&["mount-setattr"], &["EINVAL"]),
        same(&["unshare", "0"], &["ok"]),
        same(&["unshare"], &["ok"]),
        same(&["setns"], &["EINVAL"]),
        // TIOCSTI, TIOCSTI with a high bit the kernel ignores, TIOCLINUX.
        same(&["ioctl", "0x5412"], &["ENOTTY"]),
        same(&["ioctl", "0x100005412"], &["ENOTTY"]),
        same(&["ioctl", "0x541C"], &["ENOTTY"]),
        // Privilege first: the control runs where the job holds it.
        call(&["pivot-root"], &["in-userns", "pivot-root"], &["ENOENT"]),
        call(&["fsopen"], &["in-userns", "fsopen"], &["ok"]),
        call(&["fsmount"], &["in-userns", "fsmount"], &["EBADF"]),
        call(&["fspick"], &["in-userns", "fspick"], &["EINVAL"]),
        call(&["move-mount"], &["in-userns", "move-mount"], &["EINVAL"]),
    ];
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ] {
        calls.push(Call {
            filtered: vec!["clone".into(), format!("{flag:#x}")],
            control: vec!["clone".into(), format!("{:#x}", flag | libc::CLONE_NEWUSER)],
            without: vec!["ok"],
        });
    }
    calls
}

/// The kernel's answer to the probe's action: `ok`, an errno name, or the
/// signal that killed it.
fn answer(out: &Outcome) -> String {
    if let Some(jobwarden::JobEnd::Signaled { signal }) = out.end {
        return format!("killed by signal {signal}");
    }
    let line = out
        .stdout()
        .into_iter()
        .rfind(|l| l.starts_with("probe: ") && (l.contains(": denied: ") || l.contains(": ok")))
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
    let mut userns_missing = Vec::new();
    for call in calls() {
        let filtered: Vec<&str> = call.filtered.iter().map(String::as_str).collect();
        let control: Vec<&str> = call.control.iter().map(String::as_str).collect();
        let out = on.probe(&filtered);
        assert_eq!(
            answer(&out),
            "EPERM",
            "{filtered:?} under the filter: {out:#?}"
        );
        let plain = off.probe(&control);
        let needs_userns = control[0] == "in-userns";
        if needs_userns && !plain.stdout().iter().any(|l| l.ends_with("unshare ok")) {
            // This kernel gives the job no user namespace: the control
            // cannot reach the call's arguments.
            userns_missing.push(control.join(" "));
            continue;
        }
        let got = answer(&plain);
        assert!(
            call.without.contains(&got.as_str()),
            "{control:?} without the filter: expected {:?}, got {got}: {plain:#?}",
            call.without
        );
    }
    if !userns_missing.is_empty() {
        skipped_part!(
            "user-namespaces",
            "a job cannot create a user namespace here; controls not run: {}",
            userns_missing.join(", ")
        );
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
    // Without the filter the kernel answers itself: ENOSYS where x32 is
    // not built in, success where it is.
    let plain = Fixture::without_baseline("").probe(&["x32-getpid"]);
    assert!(
        ["ENOSYS", "ok"].contains(&answer(&plain).as_str()),
        "{plain:#?}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_system_call_of_another_architecture_kills_the_job() {
    // getpid through the 32-bit entry: the filter's architecture check
    // kills the process (SIGSYS) before the kernel runs the call.
    let out = Fixture::new(ON).probe(&["i386-getpid"]);
    assert_eq!(
        out.end,
        Some(jobwarden::JobEnd::Signaled {
            signal: libc::SIGSYS
        }),
        "{out:#?}"
    );
    let plain = Fixture::without_baseline("").probe(&["i386-getpid"]);
    if plain.end != Some(jobwarden::JobEnd::Exited { code: 0 }) {
        skip!(
            "ia32-emulation",
            "this kernel runs no 32-bit system calls (the control died: {:?})",
            plain.end
        );
    }
    plain.assert_ok();
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
