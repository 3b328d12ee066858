//! Invariant 1 and the kernel-enforced exec allowlist: a job executes only
//! its program, its loader and its helpers.

use crate::harness::*;

#[test]
fn a_binary_copied_into_the_repo_cannot_be_executed() {
    let fx = Fixture::new("");
    let copy = fx.repo.join("true");
    std::fs::copy("/bin/true", &copy).unwrap();
    let out = fx.probe(&["exec", copy.to_str().unwrap()]);
    out.assert_denied("EACCES");
}

#[test]
fn a_trusted_binary_cannot_start_an_unlisted_one() {
    let fx = Fixture::new("");
    // /usr/bin/id is readable (under /usr) but not executable for this job.
    fx.probe(&["exec", "/usr/bin/id"]).assert_denied("EACCES");
}

#[test]
fn a_declared_helper_can_be_started() {
    let fx = Fixture::new(
        r#"
[binaries.probe-with-helper]
path = "PROBE"
helpers = ["/usr/bin/true"]

[plugins.helpers]
binaries = ["probe-with-helper"]
"#
        .replace("PROBE", PROBE)
        .as_str(),
    );
    let out = run_to_end(
        &fx.host.plugin("helpers"),
        jobwarden::JobSpawnRequest::new("probe-with-helper", ["exec", "/usr/bin/true"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{out:#?}");
    // And still nothing else.
    let out = run_to_end(
        &fx.host.plugin("helpers"),
        jobwarden::JobSpawnRequest::new("probe-with-helper", ["exec", "/usr/bin/false"]),
        std::time::Duration::from_secs(30),
    );
    out.assert_denied("EACCES");
}

#[test]
fn a_shell_script_in_the_repo_cannot_be_run_through_the_shell_either() {
    let fx = Fixture::new("");
    std::fs::write(fx.repo.join("hook.sh"), "#!/bin/sh\necho ran\n").unwrap();
    // sh may read the repo, but it cannot exec anything but itself.
    let out = fx.run(jobwarden::JobSpawnRequest::new(
        "sh",
        ["-c", "./hook.sh; id; echo code=$?"],
    ));
    let all = [out.stdout(), out.stderr()].concat().join("\n");
    assert!(!all.contains("ran"), "{all}");
    assert!(all.contains("Permission denied"), "{all}");
    assert!(!all.contains("uid="), "{all}");
}
