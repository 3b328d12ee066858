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

/// Writes an executable `hook.sh` into the repo.
fn executable_hook(fx: &Fixture) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = fx.repo.join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

#[test]
fn an_executable_repo_script_cannot_be_executed_from_an_allowed_shell() {
    let fx = Fixture::new("");
    let hook = executable_hook(&fx);
    // Control: the file itself runs (its mode allows it), outside jobwarden.
    // (A freshly written file may be briefly "busy" while another test's
    // process start holds a copy of the writer's descriptor.)
    let direct = (0..50)
        .find_map(|_| match std::process::Command::new(&hook).output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            other => Some(other.unwrap()),
        })
        .expect("the script stayed busy");
    assert_eq!(String::from_utf8_lossy(&direct.stdout), "ran\n");
    // sh may read the repo, but it cannot exec anything but itself: not
    // the script, not another system binary.
    let out = fx.run(jobwarden::JobSpawnRequest::new(
        "sh",
        ["-c", "./hook.sh; echo hook=$?; id; echo id=$?"],
    ));
    let all = [out.stdout(), out.stderr()].concat().join("\n");
    assert!(!all.contains("ran"), "{all}");
    assert!(all.contains("hook.sh: Permission denied"), "{all}");
    assert!(all.contains("hook=126"), "{all}");
    assert!(!all.contains("uid="), "{all}");
    assert!(all.contains("id=126"), "{all}");
}

#[test]
fn an_allowed_shell_may_still_interpret_a_repo_script_by_design() {
    // What the exec allowlist does not claim: a shell the policy allows
    // reads and interprets any script it can read (`sh hook.sh`): no exec
    // happens. Policies that allow an interpreter allow what it reads.
    let fx = Fixture::new("");
    executable_hook(&fx);
    let out = fx.run(jobwarden::JobSpawnRequest::new("sh", ["hook.sh"]));
    assert_eq!(out.stdout(), ["ran"], "{out:#?}");
    assert_eq!(out.code(), 0);
}
