//! Learn mode (`HostBuilder::learn_mode`, `jobwarden learn`): the job runs
//! without the path and port restrictions that would stop it, so what it
//! needs is seen rather than refused — and keeps everything else: it still
//! cannot signal the host, plant a git hook, or gain a privilege, and its
//! report says item by item what was lifted.

use crate::harness::*;
use jobwarden::observe::Access;
use jobwarden::sandbox::BaselineLayer::Mounts;
use jobwarden::sandbox::Status;
use std::net::TcpListener;

fn learning() -> Fixture {
    // Best effort: a required policy refuses the lifted items, as it must.
    Fixture::best_effort("", |b| b.learn_mode())
}

#[test]
fn paths_and_ports_are_seen_not_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = learning();
    let outside = fx.dir.path().join("outside.txt");
    std::fs::write(&outside, "x").unwrap();
    let outside = outside.canonicalize().unwrap();
    // The same attempts a confined job is refused (see `why.rs`) succeed.
    fx.probe(&["read", outside.to_str().unwrap()]).assert_ok();
    let out = fx.probe(&["connect", &format!("127.0.0.1:{port}")]);
    out.assert_ok();
    let observed = fx.plugin().observed(&out.id).expect("observed");
    assert!(
        observed.observed.accesses().contains(&&Access::Connect {
            address: ([127, 0, 0, 1], port).into()
        }),
        "{:?}",
        observed.observed.accesses()
    );
    let report = out.enforcement.unwrap();
    for lifted in ["filesystem", "network", "sockets", "write_xor_execute"] {
        let item = report.item(lifted).unwrap();
        assert_eq!(item.status, Status::NotEnforced, "{item:?}");
        assert!(item.detail.contains("learn mode"), "{item:?}");
    }
    for kept in [
        "protected_paths",
        "no_new_privs",
        "setuid_bits",
        "namespaces",
        "observation",
    ] {
        assert_eq!(
            report.item(kept).unwrap().status,
            Status::Enforced,
            "{kept}"
        );
    }
    // The signal scope stays where the kernel has it (Landlock ABI 6).
    let scopes = report.item("scopes").unwrap();
    assert_eq!(
        scopes.status == Status::Enforced,
        crate::degraded::kernel_abi() >= 6,
        "{scopes:?}"
    );
    // Learn mode is not an observation of a confined job: refusals are
    // judged later, against the policy being written.
    let control = Fixture::new("");
    control
        .probe(&["read", outside.to_str().unwrap()])
        .assert_denied("EACCES");
}

#[test]
fn a_learning_job_still_cannot_signal_the_host() {
    if crate::degraded::kernel_abi() < 6 {
        skip!(
            "landlock-abi-6",
            "this kernel has Landlock ABI {}: no signal scope to keep",
            crate::degraded::kernel_abi()
        );
    }
    let host = std::process::id().to_string();
    let out = learning().probe(&["kill", &host, "0"]);
    out.assert_denied("EPERM");
    // Control: learn mode without the scope (Landlock below ABI 6), the
    // same job may signal the host; the scope is what refused.
    let control = Fixture::best_effort("", |b| b.learn_mode().landlock_abi_max(5));
    let out = control.probe(&["kill", &host, "0"]);
    out.assert_ok();
    assert_eq!(
        out.enforcement.unwrap().item("scopes").unwrap().status,
        Status::NotEnforced
    );
}

#[test]
fn a_learning_job_cannot_plant_a_hook_and_its_attempt_is_recorded() {
    let fx = learning();
    std::fs::create_dir_all(fx.repo.join(".git/hooks")).unwrap();
    let hook = fx.repo.join(".git/hooks/pre-commit");
    let out = fx.probe(&["write", hook.to_str().unwrap()]);
    out.assert_denied("EROFS");
    assert!(!hook.exists());
    // Its attempt was recorded, for `learn` to report and not grant.
    let observed = fx.plugin().observed(&out.id).unwrap();
    assert!(
        observed.observed.accesses().iter().any(
            |a| matches!(a, Access::Create { path } if path.ends_with(".git/hooks/pre-commit"))
        ),
        "{:?}",
        observed.observed.accesses()
    );
    // Control: learn mode without the mount layer, the same write lands —
    // nothing else of learn mode protects the repository's hooks.
    let control = Fixture::best_effort("", |b| b.learn_mode().without_baseline(Mounts));
    std::fs::create_dir_all(control.repo.join(".git/hooks")).unwrap();
    let hook = control.repo.join(".git/hooks/pre-commit");
    control
        .probe(&["write", hook.to_str().unwrap()])
        .assert_ok();
    assert!(hook.exists());
}
