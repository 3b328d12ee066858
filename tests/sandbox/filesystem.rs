//! Invariant 4 (filesystem): a job reads and writes only the policy's paths.

use crate::harness::*;

#[test]
fn read_outside_the_allowed_paths_is_refused() {
    let fx = Fixture::new("");
    // /etc is not in the test policy's read list.
    let out = fx.probe(&["read", "/etc/hostname"]);
    out.assert_denied("EACCES");
    assert_eq!(out.code(), libc::EACCES);
}

#[test]
fn read_inside_the_allowed_paths_works() {
    let fx = Fixture::new("");
    fx.probe(&["read", "/usr/bin/env"]).assert_ok();
}

#[test]
fn write_outside_the_repo_is_refused() {
    let fx = Fixture::new("");
    let outside = fx.dir.path().join("outside.txt");
    let out = fx.probe(&["write", outside.to_str().unwrap()]);
    out.assert_denied("EACCES");
    assert!(!outside.exists(), "the file must not have been created");
}

#[test]
fn write_inside_the_repo_works() {
    let fx = Fixture::new("");
    let inside = fx.repo.join("inside.txt");
    fx.probe(&["write", inside.to_str().unwrap()]).assert_ok();
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "probe\n");
}

#[test]
fn the_job_directory_is_private_and_removed() {
    let fx = Fixture::new("");
    let out = fx.probe(&["env"]);
    let tmpdir = out
        .stdout()
        .iter()
        .find_map(|l| l.strip_prefix("TMPDIR=").map(str::to_string))
        .expect("TMPDIR is set to {tmp}");
    assert!(tmpdir.contains("job-"), "{tmpdir}");
    assert!(
        !std::path::Path::new(&tmpdir).exists(),
        "{{tmp}} is removed when the job ends"
    );
}

#[test]
fn device_nodes_cannot_be_created_in_the_repo() {
    // As root, a device node in a writable tree would open raw devices; the
    // read-write grant never includes MakeChar/MakeBlock.
    let fx = Fixture::new("");
    let node = fx.repo.join("null-copy");
    let out = fx.probe(&["mknod", node.to_str().unwrap()]);
    assert_ne!(out.code(), 0, "{out:#?}");
    assert!(!node.exists());
}

#[test]
fn host_environ_is_not_readable_even_with_proc_readable() {
    // The test policy grants read on /proc; Landlock's ptrace restriction
    // still keeps the job out of the host's /proc/PID/environ.
    let fx = Fixture::new("");
    let environ = format!("/proc/{}/environ", std::process::id());
    fx.probe(&["read", &environ]).assert_denied("EACCES");
    // Its own is fine: /proc is readable.
    fx.probe(&["read", "/proc/self/status"]).assert_ok();
}
