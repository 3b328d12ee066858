//! Invariant 12 for input files: no policy or test file can make jobwarden
//! hang or grow without bound. `check`, `run --policy` and `test` refuse a
//! device, a FIFO, a directory and a 200 MB file at once, naming what the
//! path is or the size limit, in bounded memory (each command's peak RSS is
//! measured by the kernel: `wait4`); diagnostics of a huge or machine-made
//! file stay a few lines each, and a hundred at most.

// Linux only: FIFOs, /dev/zero and wait4.
#![cfg(target_os = "linux")]

use jobwarden::policy::{LoadError, Policy};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBWARDEN: &str = env!("CARGO_BIN_EXE_jobwarden");
/// Far above what refusing a file needs, far below reading 200 MB of it.
const PEAK_RSS: u64 = 64 << 20;

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_rss: u64,
}

/// Runs jobwarden with `args`; its peak RSS comes from `wait4`. A command
/// that does not end is killed (a generous limit that only turns a hang
/// into a failure; no timing is asserted).
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4 below, which also gives its peak RSS"
)]
fn jobwarden(args: &[&str], dir: &Path) -> Ran {
    let out_path = dir.join("out.txt");
    let err_path = dir.join("err.txt");
    let child = Command::new(JOBWARDEN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: wait4 on our own child, into local variables.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break (status, usage);
        }
        if started.elapsed() > Duration::from_secs(120) {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("jobwarden {args:?} did not answer");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let status = std::process::ExitStatus::from_raw(status);
    Ran {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        peak_rss: usage.ru_maxrss as u64 * 1024,
    }
}

/// The unusable paths, made in `dir`: their names in messages are relative.
fn unusable(dir: &Path) -> Vec<(&'static str, String)> {
    let fifo = dir.join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(dir.join("dir.toml")).unwrap();
    let big = std::fs::File::create(dir.join("big.toml")).unwrap();
    big.set_len(200_000_000).unwrap();
    vec![
        ("dev_zero", "/dev/zero".into()),
        ("fifo", "fifo.toml".into()),
        ("directory", "dir.toml".into()),
        ("big_file", "big.toml".into()),
    ]
}

#[test]
fn check_run_and_test_refuse_unusable_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut messages = String::new();
    for (what, path) in unusable(dir.path()) {
        for (command, args, code) in [
            ("check", vec!["check", path.as_str()], 1),
            (
                "run --policy",
                vec![
                    "run",
                    "--policy",
                    path.as_str(),
                    "--repo",
                    ".",
                    "--",
                    "true",
                ],
                125,
            ),
            ("test", vec!["test", path.as_str()], 2),
        ] {
            let ran = jobwarden(&args, dir.path());
            assert_eq!(ran.code, Some(code), "{command} {what}: {}", ran.stderr);
            assert!(
                ran.peak_rss < PEAK_RSS,
                "{command} {what}: peak RSS {} MiB",
                ran.peak_rss >> 20
            );
            messages.push_str(&format!(
                "$ jobwarden {}\n{}{}\n",
                args.join(" "),
                ran.stderr,
                ran.stdout
            ));
        }
    }
    insta::assert_snapshot!("unusable_files", messages);
}

#[test]
fn a_test_file_naming_an_unusable_policy_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cases.toml"),
        "policy = \"/dev/zero\"\n[[case]]\nname = \"x\"\nplugin = \"cli\"\nbinary = \"true\"\nexpect = \"allow\"\n",
    )
    .unwrap();
    let ran = jobwarden(&["test", "cases.toml"], dir.path());
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(
            "cannot read the policy file /dev/zero: it is a character device, not a regular file"
        ),
        "{}",
        ran.stderr
    );
}

fn invalid(text: &str) -> String {
    match Policy::from_toml("p.toml", text) {
        Err(LoadError::Invalid(report)) => report.render(),
        Ok(_) => panic!("loaded"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_diagnostic_on_a_huge_line_shows_a_window_around_the_column() {
    // One line of about two megabytes of distinct names, the one problem
    // in its middle.
    let names =
        |prefix: &str| -> String { (0..100_000).map(|i| format!("\"{prefix}{i}\", ")).collect() };
    let text = format!(
        "version = 1\n[env]\ninherit = [{}\"[\", {}\"B\"]\n",
        names("A"),
        names("B")
    );
    let rendered = invalid(&text);
    assert!(
        rendered.len() < 2000,
        "{} bytes:\n{rendered}",
        rendered.len()
    );
    insta::assert_snapshot!("huge_line_window", rendered);
}

#[test]
fn a_huge_key_is_cut_in_the_message() {
    let text = format!("version = 1\n[limits]\n{} = 3\n", "k".repeat(500_000));
    let rendered = invalid(&text);
    assert!(rendered.len() < 4000, "{} bytes", rendered.len());
    assert!(rendered.contains("error[unknown-key]"));
}

#[test]
fn thousands_of_the_same_mistake_give_a_hundred_diagnostics_and_a_note() {
    let items = "\"[\",\n".repeat(50_000);
    let text = format!("version = 1\n[env]\ninherit = [\n{items}\"x\"]\n");
    let report = match Policy::from_toml("p.toml", &text) {
        Err(LoadError::Invalid(report)) => report,
        other => panic!("{:?}", other.map(|_| ())),
    };
    assert_eq!(report.diagnostics.len(), 101);
    let last = report.render();
    assert!(
        last.contains(
            "error[too-many-problems]: more problems were found; only the first 100 are reported"
        ),
        "{}",
        &last[last.len() - 500..]
    );
}

/// 150 warnings: option names written with dashes.
fn warnings_then(rest: &str) -> String {
    let options: Vec<String> = (0..150).map(|i| format!("\"--opt{i}\"")).collect();
    format!(
        "version = 1\nsearch_path = [\"/usr/bin\"]\n[binaries.git.args]\ndeny_long_options = [{}]\n{rest}",
        options.join(", ")
    )
}

#[test]
fn past_a_hundred_warnings_a_policy_stays_valid_with_a_note() {
    let loaded = Policy::from_toml("p.toml", &warnings_then("")).expect("warnings only");
    assert_eq!(loaded.warnings.diagnostics.len(), 101);
    assert_eq!(loaded.warnings.error_count(), 0);
    assert!(
        loaded
            .warnings
            .render()
            .contains("warning[too-many-problems]")
    );
}

#[test]
fn an_error_past_the_hundredth_diagnostic_still_makes_a_policy_invalid() {
    let text = warnings_then("[plugins.p]\nbinaries = [\"undefined\"]\n");
    let Err(LoadError::Invalid(report)) = Policy::from_toml("p.toml", &text) else {
        panic!("an unreported error must not pass")
    };
    assert_eq!(report.error_count(), 1);
    assert!(report.render().contains("error[too-many-problems]"));
}

#[test]
fn a_repeated_entry_past_the_hundredth_diagnostic_still_makes_a_policy_invalid() {
    // A repeat is an error, and the list holding it is dropped: were the
    // error not counted once the report is full, `allow` would be dropped
    // silently and `ls` would run with any arguments.
    for rest in [
        "[binaries.ls.args]\nallow = [[\"-l\"], [\"-l\"]]\n",
        "[plugins.p]\nbinaries = [\"git\", \"git\"]\n",
    ] {
        let text = warnings_then(rest);
        let Err(LoadError::Invalid(report)) = Policy::from_toml("p.toml", &text) else {
            panic!("an unreported repeat must not pass:\n{rest}")
        };
        assert_eq!(report.error_count(), 1, "{rest}");
        assert!(
            report.render().contains("error[too-many-problems]"),
            "{rest}"
        );
    }
}

#[test]
fn repeats_after_a_long_first_listing_are_reported_in_linear_time() {
    // Where an entry was first listed is located (a scan of its line) only
    // for the repeats that are reported: for every one of 200,000 it would
    // be 200,000 scans of a 2 MB line.
    let text = format!(
        "version = 1\n[env]\ninherit = [\"{}\", {}\"A\"]\n",
        "L".repeat(2 << 20),
        "\"A\", ".repeat(200_000)
    );
    let Err(LoadError::Invalid(report)) = Policy::from_toml("p.toml", &text) else {
        panic!("repeats are errors")
    };
    assert_eq!(report.diagnostics.len(), 101);
    let repeats: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("repeats"))
        .collect();
    assert!(repeats.len() >= 99, "{}", report.render());
    for repeat in repeats {
        assert!(
            repeat.notes[0].starts_with("note: first listed at 3:"),
            "{:?}",
            repeat.notes
        );
    }
}
