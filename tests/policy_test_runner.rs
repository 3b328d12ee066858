//! `jobwarden test`: the runner reports failures usefully, skips honestly,
//! and rejects malformed test files with file:line:col diagnostics.

// Linux only: runs the shipped Linux policies' live cases.
#![cfg(target_os = "linux")]

use std::process::{Command, Output};

fn jobwarden_test(files: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .arg("test")
        .args(files)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn failing_cases_say_what_was_expected_and_what_happened() {
    let out = jobwarden_test(&["tests/fixtures/policy-tests/failing.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("  pass  passes (static)"), "{stdout}");
    assert!(
        stdout.contains("FAIL  wrong expectation (static, line 9): expected allow, got denied by `binaries.git.args.deny[0]`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  wrong rule (static, line 15): expected a denial by `binaries.git.args.subcommands`, got denied by `binaries.git.args.deny[0]`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  wrong exit code (live, line 22): expected exit code 0, but it exited with status 1"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 passed, 3 failed, 0 skipped"),
        "the last line is the summary: {stdout}"
    );
}

#[test]
fn skipped_cases_say_why_and_do_not_fail_the_run() {
    let out = jobwarden_test(&["tests/fixtures/policy-tests/skipping.toml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout
            .contains("skip  not installed here (live, line 3): the binary is not installed here"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("\n1 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );
    // A program missing here is not a confinement this machine lacks.
    let out = jobwarden_test(&[
        "--require-live",
        "tests/fixtures/policy-tests/skipping.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_case_whose_unconfined_control_fails_proves_nothing_and_fails_under_require_live() {
    let file = "tests/fixtures/policy-tests/unconfined-control.toml";
    let out = jobwarden_test(&[file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("  skip  the control fails (live, line 4): run unconfined, the same command fails too (exit status: 1): a refusal would not prove the sandbox here"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  pass  the control succeeds (live)"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("\n1 passed, 0 failed, 1 skipped"),
        "{stdout}"
    );

    let out = jobwarden_test(&["--require-live", file]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("  FAIL  the control fails (live, line 4): not proven on this machine (--require-live): run unconfined"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
}

#[test]
fn malformed_test_files_get_located_diagnostics() {
    let out = jobwarden_test(&["tests/fixtures/policy-tests/malformed.toml"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!("malformed_test_file", text(&out.stderr));
}

#[test]
fn a_missing_file_is_unusable() {
    let out = jobwarden_test(&["tests/fixtures/policy-tests/nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("nope.toml"));
}

#[test]
fn a_refusal_is_judged_from_what_the_sandbox_refused_not_from_wording() {
    let out = jobwarden_test(&["tests/fixtures/policy-tests/refusal-judged.toml"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("  pass  a refusal the job does not mention is still a refusal (live)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL  words alone are no refusal (live, line 12): expected the sandbox to refuse, but it exited with status 1 (observation recorded no access the policy refuses;"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("1 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
}
