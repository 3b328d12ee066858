//! Invariant: no per-job directory outlives its host. `jobwarden run`
//! stopped by SIGHUP (a closed terminal) or SIGTERM cancels its job
//! gracefully, removes its directories and exits 128 + the signal; a host
//! killed with SIGKILL cannot, and the next host removes what it left,
//! never the directory of a host that still runs.

// Linux only: runs jobs under Linux policies, reads /proc.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A policy trusting `sleep` and `true`.
fn policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{repo}"]
read_write = ["{tmp}", "/dev/null"]
[limits]
timeout_secs = 600
kill_grace_secs = 1
[binaries.sleep]
path = "/usr/bin/sleep"
[binaries.true]
path = "/usr/bin/true"
[plugins.cli]
binaries = ["sleep", "true"]
"#,
    )
    .unwrap();
    path
}

/// `jobwarden run -- COMMAND` with its temporary directory in `tmp`.
fn run(repo: &Path, tmp: &Path, command: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobwarden"));
    cmd.arg("run")
        .arg("--policy")
        .arg(policy(repo))
        .arg("--repo")
        .arg(repo)
        .arg("--")
        .args(command)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Everything under `dir`, as paths relative to it.
fn contents(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            for inner in std::fs::read_dir(entry.path()).unwrap().flatten() {
                found.push(format!("{name}/{}", inner.file_name().to_string_lossy()));
            }
        }
        found.push(name);
    }
    found.sort();
    found
}

/// Waits until the host in `tmp` has made a job directory: the job runs.
fn wait_for_job_dir(tmp: &Path, child: &mut Child) {
    let started = Instant::now();
    while !contents(tmp).iter().any(|p| p.contains('/')) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run ended before its job started: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no job directory appeared in {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sighup_and_sigterm_cancel_run_and_leave_no_directory() {
    for (sig, code) in [(libc::SIGHUP, 129), (libc::SIGTERM, 143)] {
        let repo = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut child = run(repo.path(), tmp.path(), &["sleep", "600"])
            .spawn()
            .unwrap();
        wait_for_job_dir(tmp.path(), &mut child);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "signal {sig}: {stderr}");
        assert!(stderr.contains("cancelling the job"), "{stderr}");
        assert_eq!(contents(tmp.path()), Vec::<String>::new(), "signal {sig}");
    }
}

#[test]
fn the_next_host_removes_what_a_killed_host_left_and_nothing_of_a_live_one() {
    let repo = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut killed = run(repo.path(), tmp.path(), &["sleep", "600"])
        .spawn()
        .unwrap();
    wait_for_job_dir(tmp.path(), &mut killed);
    signal(&killed, libc::SIGKILL);
    killed.wait().unwrap();
    let left = contents(tmp.path());
    assert!(
        left.iter().any(|p| p.contains('/')),
        "control: SIGKILL leaves the job directory: {left:?}"
    );

    // A live host's directory (this test's process, with its real start
    // time) and one whose pid is this process's but whose start time is
    // not (the pid was reused): only the second is stale.
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start: u64 = stat[stat.rfind(')').unwrap() + 1..]
        .split_ascii_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    let live = format!("jobwarden-{me}-{start}-live");
    let reused = format!("jobwarden-{me}-{}-reused", start + 1);
    std::fs::create_dir_all(tmp.path().join(&live).join("job-1")).unwrap();
    std::fs::create_dir_all(tmp.path().join(&reused).join("job-1")).unwrap();
    // Not a host's directory at all.
    std::fs::create_dir(tmp.path().join("jobwarden-doctor-job")).unwrap();

    let out = run(repo.path(), tmp.path(), &["true"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut expected = [
        "jobwarden-doctor-job".to_string(),
        live.clone(),
        format!("{live}/job-1"),
    ];
    expected.sort();
    assert_eq!(contents(tmp.path()), expected);
}
