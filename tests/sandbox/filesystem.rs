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
    // read-write grant never includes MakeChar/MakeBlock. Landlock answers
    // EACCES, before the kernel checks CAP_MKNOD (EPERM).
    let fx = Fixture::new("");
    let node = fx.repo.join("null-copy");
    fx.probe(&["mknod", node.to_str().unwrap()])
        .assert_denied("EACCES");
    assert!(!node.exists());
}

#[test]
fn control_without_landlock_mknod_meets_only_the_capability_check() {
    // Landlock off: the dropped CAP_MKNOD still refuses, with its own EPERM,
    // so the EACCES above is Landlock's.
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(0));
    let node = fx.repo.join("null-copy");
    fx.probe(&["mknod", node.to_str().unwrap()])
        .assert_denied("EPERM");
    assert!(!node.exists());
}

#[test]
fn device_ioctls_are_refused_even_on_read_write_devices() {
    // /dev/null is granted read-write; Landlock (ABI 5) still refuses ioctl
    // requests on device files. TCGETS is a harmless request /dev/null
    // itself answers with ENOTTY.
    let fx = Fixture::new("");
    let out = fx.probe(&["dev-ioctl", "/dev/null", "0x5401"]);
    assert!(
        out.stdout().iter().any(|l| l.contains("opened /dev/null")),
        "{out:#?}"
    );
    out.assert_denied("EACCES");
}

#[test]
fn control_below_landlock_abi_5_the_device_answers_its_ioctls() {
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(4));
    let out = fx.probe(&["dev-ioctl", "/dev/null", "0x5401"]);
    out.assert_denied("ENOTTY");
    // And the report says so.
    let filesystem = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("filesystem")
        .unwrap();
    assert!(
        filesystem
            .detail
            .contains("device ioctls not restrictable below ABI 5"),
        "{filesystem:?}"
    );
}

#[test]
fn host_environ_is_not_readable_even_with_proc_readable() {
    // The test policy grants read on /proc; Landlock's ptrace restriction
    // still keeps the job out of the host's /proc/PID/environ. (A root host
    // is also protected by the job's missing capabilities: the test below
    // runs a non-root host, where only Landlock stands in the way.)
    let fx = Fixture::new("");
    let environ = format!("/proc/{}/environ", std::process::id());
    fx.probe(&["read", &environ]).assert_denied("EACCES");
    // Its own is fine: /proc is readable.
    fx.probe(&["read", "/proc/self/status"]).assert_ok();
}

#[test]
fn a_non_root_hosts_environ_is_kept_from_its_jobs_by_landlock_alone() {
    const CHILD: &str = "filesystem::non_root_host_environ_child";
    let mut command = child_test(CHILD);
    if is_root() {
        // The host must not be root: a root host is protected by the job's
        // missing capabilities too, and the control could not tell.
        let test = std::env::current_exe().unwrap();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut setpriv = std::process::Command::new("setpriv");
        setpriv
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(test)
            .args(args)
            .env("JOBWARDEN_TEST_CHILD", CHILD);
        command = setpriv;
    }
    assert_child_passed(&command.output().unwrap());
}

#[test]
#[ignore = "run as a non-root child process by a_non_root_hosts_environ_is_kept_from_its_jobs_by_landlock_alone"]
fn non_root_host_environ_child() {
    child_role("filesystem::non_root_host_environ_child");
    assert!(!is_root());
    let environ = format!("/proc/{}/environ", std::process::id());
    // Without cgroups (a non-root host may not create them) only
    // best_effort runs; Landlock is fully there. The job's mount namespace
    // is switched off: a non-root host makes it inside a user namespace,
    // which keeps the job out of the host's environ too.
    use jobwarden::sandbox::BaselineLayer::Mounts;
    let fx = Fixture::best_effort("", |b| b.without_baseline(Mounts));
    let out = fx.probe(&["read", &environ]);
    assert_eq!(
        out.enforcement
            .as_ref()
            .unwrap()
            .item("filesystem")
            .unwrap()
            .status,
        jobwarden::sandbox::Status::Enforced
    );
    out.assert_denied("EACCES");
    // Control: the same job without Landlock reads it (same user, no
    // capabilities on either side).
    let fx = Fixture::best_effort("", |b| b.landlock_abi_max(0).without_baseline(Mounts));
    fx.probe(&["read", &environ]).assert_ok();
    // And as jobs run, with the user namespace too: refused.
    Fixture::best_effort("", |b| b)
        .probe(&["read", &environ])
        .assert_denied("EACCES");
}
