//! `jobwarden test [--require-live] FILE...`: run policy test files. One
//! line per case, then `N passed, N failed`. Exit 0 only when every case
//! passed (skips allowed), 1 when a case failed, 2 when a test file or its
//! policy is unusable. A live case this machine cannot confine is a skip,
//! or with `--require-live` a failure.

use jobwarden::sandbox::SupportOptions;
use jobwarden::testing::{RunOptions, TestFile, TestFileError, Verdict, run_file};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(files: &[PathBuf], require_live: bool, support: &SupportOptions) -> ExitCode {
    let probe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("jobwarden-probe")))
        .filter(|p| p.is_file());
    let options = RunOptions {
        probe,
        support: support.clone(),
    };
    let (mut passed, mut failed, mut skipped, mut unusable) = (0, 0, 0, 0);
    for path in files {
        let file = match TestFile::load(path) {
            Ok(file) => file,
            Err(TestFileError::Invalid(report)) => {
                err!("{}", report.render());
                outln!(
                    "{}: invalid test file ({} error(s))",
                    path.display(),
                    report.error_count()
                );
                unusable += 1;
                continue;
            }
            Err(e) => {
                outln!("{e}");
                unusable += 1;
                continue;
            }
        };
        let result = run_file(&file, &options);
        outln!("{} (policy {})", path.display(), result.policy);
        if let Some(error) = &result.error {
            err!("{error}");
            if !error.ends_with('\n') {
                errln!();
            }
            unusable += 1;
        }
        for case in &result.results {
            let kind = if case.live { "live" } else { "static" };
            match &case.verdict {
                Verdict::Pass => {
                    passed += 1;
                    outln!("  pass  {} ({kind})", case.name);
                }
                Verdict::Fail(why) => {
                    failed += 1;
                    outln!("  FAIL  {} ({kind}, line {}): {why}", case.name, case.line);
                }
                Verdict::Skip(why) => {
                    skipped += 1;
                    outln!("  skip  {} ({kind}, line {}): {why}", case.name, case.line);
                }
                Verdict::CannotConfine(why) if require_live => {
                    failed += 1;
                    outln!(
                        "  FAIL  {} ({kind}, line {}): not proven on this machine (--require-live): {why}",
                        case.name,
                        case.line
                    );
                }
                Verdict::CannotConfine(why) => {
                    skipped += 1;
                    outln!("  skip  {} ({kind}, line {}): {why}", case.name, case.line);
                }
            }
        }
    }
    if skipped > 0 {
        outln!("{skipped} skipped");
    }
    outln!("{passed} passed, {failed} failed");
    if unusable > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
