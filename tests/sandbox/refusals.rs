//! Requests refused before anything runs: untrusted binaries, cwd escapes,
//! unknown plugins, and confinement this machine cannot give.

use crate::harness::*;
use jobwarden::contract::{JobEvent, JobStatus};
use jobwarden::{JobEnd, JobHost, JobSpawnRequest};

#[test]
fn an_untrusted_binary_is_refused_with_one_event() {
    let fx = Fixture::new("");
    let plugin = fx.plugin();
    let id = plugin.spawn(JobSpawnRequest::new("bash", ["-c", "id"]));
    let out = collect(&plugin, &id, std::time::Duration::from_secs(5));
    assert_eq!(out.len(), 1);
    let JobEvent::JobFailed { data, .. } = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        data.error.contains("plugins.tests.binaries"),
        "{}",
        data.error
    );
    assert!(data.error.contains("hint"), "{}", data.error);
    assert!(matches!(
        plugin.status(&id),
        Some(JobStatus::Failed {
            exit_code: None,
            ..
        })
    ));
    assert_eq!(
        plugin.end(&id),
        Some(JobEnd::Denied {
            rule: "plugins.tests.binaries".into()
        })
    );
    // try_spawn gives the denial itself.
    let denial = plugin
        .try_spawn(JobSpawnRequest::new("bash", ["-c", "id"]))
        .unwrap_err();
    assert_eq!(denial.rule, "plugins.tests.binaries");
}

#[test]
fn a_cwd_symlink_pointing_outside_is_refused() {
    let fx = Fixture::new("");
    std::os::unix::fs::symlink("/etc", fx.repo.join("etc-link")).unwrap();
    let out = fx.run(JobSpawnRequest::new("probe", ["cwd"]).with_cwd("etc-link"));
    let error = out.error();
    assert!(
        error.contains("request.cwd") && error.contains("outside the repository"),
        "{error}"
    );
}

#[test]
fn a_cwd_inside_the_repo_is_the_jobs_cwd() {
    let fx = Fixture::new("");
    std::fs::create_dir(fx.repo.join("sub")).unwrap();
    let out = fx.run(JobSpawnRequest::new("probe", ["cwd"]).with_cwd("sub"));
    assert_eq!(out.code(), 0);
    assert!(
        out.stdout()[0].ends_with(&format!("{}/sub", fx.repo.display())),
        "{:?}",
        out.stdout()
    );
}

#[test]
fn an_unknown_plugin_is_refused() {
    let fx = Fixture::new("");
    let stranger = fx.host.plugin("stranger");
    let out = run_to_end(
        &stranger,
        JobSpawnRequest::new("probe", ["print", "x"]),
        std::time::Duration::from_secs(5),
    );
    assert!(out.error().contains("`plugins`"), "{}", out.error());
}

#[test]
fn required_enforcement_refuses_what_this_kernel_cannot_give() {
    // Pretend Landlock ABI 3: no TCP rules, no scopes.
    let fx = Fixture::with("", |b| b.landlock_abi_max(3));
    let out = fx.probe(&["print", "must not run"]);
    let error = out.error();
    assert!(error.contains("network NOT enforced"), "{error}");
    assert!(error.contains("Landlock ABI 3 (kernel"), "{error}");
    assert!(error.contains("scopes NOT enforced"), "{error}");
    assert!(
        !out.events
            .iter()
            .any(|e| matches!(e, JobEvent::JobStarted { .. })),
        "refused before exec"
    );
    assert_eq!(out.end, Some(JobEnd::EnforcementUnavailable));
    assert!(out.enforcement.is_some(), "the refusal keeps its report");
}

#[test]
fn best_effort_runs_and_reports_what_was_missing() {
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(3));
    let out = fx.probe(&["read", "/etc/hostname"]);
    // Filesystem rules still hold at ABI 3.
    out.assert_denied("EACCES");
    let line = out.system()[0].clone();
    assert!(
        line.contains("network NOT enforced: Landlock ABI 3"),
        "{line}"
    );
    assert!(line.contains("scopes NOT enforced"), "{line}");
}

#[test]
fn a_pinned_binary_with_the_wrong_hash_is_refused_at_start() {
    let fx = Fixture::new(&format!(
        "\n[binaries.pinned]\npath = \"{PROBE}\"\nsha256 = \"{}\"\n[plugins.pin]\nbinaries = [\"pinned\"]\n",
        "00".repeat(32)
    ));
    let out = run_to_end(
        &fx.host.plugin("pin"),
        JobSpawnRequest::new("pinned", ["print", "x"]),
        std::time::Duration::from_secs(10),
    );
    assert!(
        out.error().contains("binaries.pinned.sha256"),
        "{}",
        out.error()
    );
    assert_eq!(
        out.end,
        Some(JobEnd::Denied {
            rule: "binaries.pinned.sha256".into()
        })
    );
}

#[test]
fn a_pinned_binary_with_the_right_hash_runs() {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(PROBE).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let fx = Fixture::new(&format!(
        "\n[binaries.pinned]\npath = \"{PROBE}\"\nsha256 = \"{hex}\"\n[plugins.pin]\nbinaries = [\"pinned\"]\n"
    ));
    let out = run_to_end(
        &fx.host.plugin("pin"),
        JobSpawnRequest::new("pinned", ["print", "pinned ok"]),
        std::time::Duration::from_secs(10),
    );
    assert_eq!(out.code(), 0, "{out:#?}");
}
