//! The CLI contract for scripts and CI: `check` and `explain` flags, output
//! and exit codes.

use std::process::{Command, Output};

/// Runs the CLI in the package directory. `explain` is given `--repo .`
/// where a test does not name a repository: the package directory need not
/// be a git work tree (cargo-mutants tests a copy of it that is not).
fn jobwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(args)
        .output()
        .expect("the jobwarden binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_every_shipped_policy() {
    let mut shipped: Vec<String> = std::fs::read_dir("policy")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.display().to_string())
        .collect();
    shipped.sort();
    assert!(shipped.iter().any(|p| p.ends_with("default.toml")));
    let args: Vec<&str> = std::iter::once("check")
        .chain(shipped.iter().map(String::as_str))
        .collect();
    let out = jobwarden(&args);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for policy in &shipped {
        assert!(
            text(&out.stdout).contains(&format!("{policy}: valid")),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn check_rejects_a_broken_policy_with_line_and_column() {
    let out = jobwarden(&["check", "tests/fixtures/broken/typo_key.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("tests/fixtures/broken/typo_key.toml:4:1: error[unknown-key]"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `timeout_secs`?"), "{stderr}");
}

#[test]
fn check_reports_all_files_even_after_a_bad_one() {
    let out = jobwarden(&[
        "check",
        "tests/fixtures/broken/zero_limit.toml",
        "policy/default.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("zero_limit.toml: invalid"), "{stdout}");
    assert!(stdout.contains("policy/default.toml: valid"), "{stdout}");
}

#[test]
fn explain_names_the_rule_for_an_untrusted_binary() {
    let out = jobwarden(&["explain", "--repo", ".", "--", "definitely-not-trusted"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rule  plugins.cli.binaries"), "{stdout}");
    assert!(stdout.contains("hint"), "{stdout}");
}

#[test]
fn explain_allows_git_status_with_the_embedded_policy() {
    let out = jobwarden(&["explain", "--repo", ".", "--", "git", "status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("allowed: plugin `cli` may run `git`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("network   no TCP connect or bind"),
        "{stdout}"
    );
}

#[test]
fn explain_denial_as_json() {
    let out = jobwarden(&[
        "explain",
        "--repo",
        ".",
        "--json",
        "--",
        "git",
        "-c",
        "core.pager=sh",
        "log",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let denial: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(denial["rule"], "binaries.git.args.deny[0]");
}

#[test]
fn explain_plan_as_json() {
    let out = jobwarden(&[
        "explain",
        "--repo",
        ".",
        "--json",
        "--env",
        "RUST_LOG=debug",
        "--timeout",
        "30",
        "--",
        "git",
        "log",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let explained: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(explained["decision"], "allowed");
    assert_eq!(explained["rule"], "plugins.cli.binaries[0]");
    let plan = &explained["plan"];
    assert_eq!(plan["env"]["RUST_LOG"], "debug");
    assert_eq!(plan["env_keys"]["RUST_LOG"], "env.allow[0]");
    assert_eq!(plan["timeout"]["value"], 30.0);
    assert_eq!(plan["timeout"]["key"], "request.timeout_secs");
}

#[test]
fn explain_maps_a_trusted_path_back_to_its_name() {
    let out = jobwarden(&["explain", "--repo", ".", "--", "/bin/true"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("may run `true`"));
    let out = jobwarden(&["explain", "--repo", ".", "--", "/bin/sh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a binary plugin `cli` may run"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_with_a_broken_policy_is_a_usage_error() {
    let out = jobwarden(&[
        "explain",
        "--policy",
        "tests/fixtures/broken/duplicate.toml",
        "--",
        "git",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("error[duplicate-entry]"));
}

#[test]
fn explain_usage_errors_exit_2() {
    let out = jobwarden(&["explain"]);
    assert_eq!(out.status.code(), Some(2));
    let out = jobwarden(&["explain", "--env", "NOEQUALS", "--", "git"]);
    assert_eq!(out.status.code(), Some(2));
}
