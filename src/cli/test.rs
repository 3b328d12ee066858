//! `jobwarden test [--require-live] [--format text|junit|json] [--filter
//! NAME]... FILE...`: run policy test files. As text: one line per case,
//! then `N passed, N failed, N skipped`; as JUnit XML or one JSON object on
//! stdout for CI (the case lines and diagnostics then go to stderr). Exit 0
//! only when every case passed (skips allowed), 1 when a case failed, 2
//! when a test file or its policy is unusable. A live case this machine
//! cannot confine is a skip, or with `--require-live` a failure.

use jobwarden::sandbox::SupportOptions;
use jobwarden::testing::report::{self, FileOutcome, Status, Summary};
use jobwarden::testing::{RunOptions, TestFile, TestFileError, run_file};
use std::path::PathBuf;
use std::process::ExitCode;

/// How `test` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One line per case and the summary.
    Text,
    /// JUnit XML on stdout.
    Junit,
    /// One JSON object on stdout.
    Json,
}

/// The flags of `test`.
pub(crate) struct Options {
    pub require_live: bool,
    pub format: Format,
    pub filter: Vec<String>,
}

pub fn run(files: &[PathBuf], options: &Options, support: &SupportOptions) -> ExitCode {
    let probe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("jobwarden-probe")))
        .filter(|p| p.is_file());
    let run_options = RunOptions {
        probe,
        support: support.clone(),
    };
    // In text form the case lines are the output; for JUnit and JSON the
    // document is, and the lines go to stderr for whoever watches the log.
    let say = |line: String| match options.format {
        Format::Text => outln!("{line}"),
        Format::Junit | Format::Json => errln!("{line}"),
    };
    let mut outcomes = Vec::new();
    let mut filtered_out = 0;
    for path in files {
        let mut file = match TestFile::load(path) {
            Ok(file) => file,
            Err(TestFileError::Invalid(report)) => {
                err!("{}", report.render());
                say(format!(
                    "{}: invalid test file ({} error(s))",
                    path.display(),
                    report.error_count()
                ));
                outcomes.push(FileOutcome::Unusable {
                    file: path.clone(),
                    error: report.render(),
                });
                continue;
            }
            Err(e) => {
                say(e.to_string());
                outcomes.push(FileOutcome::Unusable {
                    file: path.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        if !options.filter.is_empty() {
            let before = file.cases.len();
            file.cases.retain(|case| {
                options
                    .filter
                    .iter()
                    .any(|f| case.name.contains(f.as_str()))
            });
            filtered_out += before - file.cases.len();
        }
        let result = run_file(&file, &run_options);
        say(format!("{} (policy {})", path.display(), result.policy));
        if let Some(error) = &result.error {
            err!("{error}");
            if !error.ends_with('\n') {
                errln!();
            }
        }
        for case in &result.results {
            let kind = if case.live { "live" } else { "static" };
            say(match report::status(&case.verdict, options.require_live) {
                Status::Passed => format!("  pass  {} ({kind})", case.name),
                Status::Failed(why) => {
                    format!("  FAIL  {} ({kind}, line {}): {why}", case.name, case.line)
                }
                Status::Skipped(why) => {
                    format!("  skip  {} ({kind}, line {}): {why}", case.name, case.line)
                }
            });
        }
        outcomes.push(FileOutcome::Ran(result));
    }
    let summary = Summary::of(&outcomes, options.require_live);
    if filtered_out > 0 {
        say(format!("{filtered_out} filtered out"));
    }
    match options.format {
        Format::Text => outln!("{}", summary.line()),
        Format::Junit => {
            errln!("{}", summary.line());
            out!("{}", report::junit(&outcomes, options.require_live));
        }
        Format::Json => {
            errln!("{}", summary.line());
            let value = report::json(&outcomes, options.require_live, filtered_out);
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).expect("JSON values serialise")
            );
        }
    }
    if summary.unusable > 0 {
        ExitCode::from(2)
    } else if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
