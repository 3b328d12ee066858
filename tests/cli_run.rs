//! `jobwarden run`: output routing, `--json`, and the exit codes scripts
//! rely on (job's own, 124 timeout, 125 own error, 126 denied, 128+N, 130).

// Linux only: runs jobs under Linux policies.
#![cfg(target_os = "linux")]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn jobwarden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
}

fn run(args: &[&str]) -> Output {
    jobwarden().arg("run").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A policy that also trusts /bin/sh, written to a temp dir.
fn sh_policy(dir: &std::path::Path) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        r#"
version = 1
search_path = ["/usr/bin", "/bin"]
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache"]
read_write = ["{repo}", "{tmp}", "/dev/null"]
[limits]
kill_grace_secs = 1
[binaries.sh]
path = "/bin/sh"
[plugins.cli]
binaries = ["sh"]
"#,
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn exit_codes_pass_through() {
    let out = run(&["--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["--", "false"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("jobwarden: exited with status 1"));
}

#[test]
fn stdout_and_stderr_go_to_their_streams() {
    let out = run(&["--", "echo", "hello"]);
    assert_eq!(text(&out.stdout), "hello\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("jobwarden: enforced: "), "{stderr}");
    assert!(
        !text(&out.stdout).contains("jobwarden:"),
        "jobwarden's own lines stay on stderr"
    );
}

#[test]
fn a_timeout_exits_124() {
    let out = run(&["--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(text(&out.stderr).contains("timeout after 1 s"));
}

#[test]
fn a_denial_exits_126_and_names_the_rule() {
    let out = run(&["--", "definitely-not-trusted"]);
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("denied by `plugins.cli.binaries`"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_broken_policy_exits_125() {
    let out = run(&[
        "--policy",
        "tests/fixtures/broken/typo_key.toml",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("error[unknown-key]"));
}

#[test]
fn death_by_signal_exits_128_plus_n() {
    let dir = tempfile::tempdir().unwrap();
    let policy = sh_policy(dir.path());
    let out = run(&[
        "--policy",
        &policy,
        "--repo",
        dir.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("killed by signal 9 (SIGKILL)"));
}

#[test]
fn json_mode_prints_the_contract_wire_format() {
    let out = run(&["--json", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0));
    // jobwarden's own lines (`jobwarden.enforcement`, `jobwarden.usage`)
    // are told apart by their type; the rest is the contract's stream.
    let stdout = text(&out.stdout);
    let contract: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(r#"{"type":"jobwarden."#))
        .collect();
    assert!(contract.len() < stdout.lines().count(), "{stdout}");
    let events: Vec<serde_json::Value> = contract
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "job_started");
    assert_eq!(events.last().unwrap()["type"], "job_completed");
    assert!(events.iter().any(|e| e["type"] == "job_log_line"
        && e["data"]["line"] == "hi"
        && e["data"]["stream"] == "stdout"));
    // The payload is nested under `data`, as progit-plugin-sdk 0.4 writes it.
    assert!(events.iter().all(|e| e["data"].is_object()), "{events:?}");
    assert!(events[0]["data"]["pid"].is_u64(), "{}", events[0]);
    let back: Vec<jobwarden::JobEvent> = contract
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back.len(), events.len());
}

#[test]
fn json_mode_prints_a_refusal_as_the_one_job_failed_a_plugin_gets() {
    let out = run(&["--json", "--", "bash", "-c", "id"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: jobwarden::JobEvent = serde_json::from_str(&lines[0]).unwrap();
    let jobwarden::JobEvent::JobFailed { data, .. } = event else {
        panic!("{}", lines[0])
    };
    assert_eq!(data.exit_code, None);
    assert!(
        data.error.contains("plugins.cli.binaries"),
        "{}",
        data.error
    );
    assert!(data.error.contains("hint"), "{}", data.error);
}

#[test]
fn git_status_from_the_readme_works() {
    let out = run(&["--", "git", "status", "--short"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn ctrl_c_cancels_the_job_gracefully_and_exits_130() {
    let child = jobwarden()
        .args(["run", "--", "sleep", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // SAFETY: SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(text(&out.stderr).contains("cancelling the job"));
}

#[test]
fn outside_a_git_work_tree_run_and_explain_refuse_without_repo() {
    let dir = tempfile::tempdir().unwrap();
    let out = jobwarden()
        .args(["run", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is not inside a git work tree") && stderr.contains("--repo DIR"),
        "{stderr}"
    );
    let out = jobwarden()
        .args(["explain", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Given explicitly, the directory is the repository.
    let out = jobwarden()
        .args(["run", "--repo", ".", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn the_root_a_home_or_a_system_directory_is_never_the_repository() {
    for repo in ["/", "/usr", "/etc"] {
        let out = run(&["--repo", repo, "--", "true"]);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{repo}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("is a system directory"),
            "{}",
            text(&out.stderr)
        );
    }
    let home = tempfile::tempdir().unwrap();
    let out = jobwarden()
        .args(["run", "--repo"])
        .arg(home.path())
        .args(["--", "true"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("home directory"),
        "{}",
        text(&out.stderr)
    );
}
