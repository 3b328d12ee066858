//! `jobwarden check [--portable] POLICY...`: validates policies and judges
//! them against this machine (binaries that are not programs here, pins
//! that do not match the files here); with `--portable` those findings
//! are warnings, for policies written for other machines.

use jobwarden::platform::read_small_file;
use jobwarden::policy::{LoadError, MAX_POLICY_FILE_BYTES, Policy, ThisMachine};
use jobwarden::testing::TestFile;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(paths: &[PathBuf], portable: bool) -> ExitCode {
    let mode = if portable {
        ThisMachine::Portable
    } else {
        ThisMachine::Check
    };
    let mut invalid = 0;
    for path in paths {
        match Policy::load_for(path, mode) {
            Ok(loaded) => {
                let warnings = loaded.warnings.warning_count();
                if warnings > 0 {
                    err!("{}", loaded.warnings.render());
                }
                outln!("{}: valid ({warnings} warning(s))", path.display());
            }
            Err(LoadError::Invalid(_)) if is_test_file(path) => {
                invalid += 1;
                errln!(
                    "jobwarden: {} is a policy test file, not a policy: run it with `jobwarden test {}`",
                    path.display(),
                    path.display()
                );
                outln!("{}: not a policy (a test file)", path.display());
            }
            Err(LoadError::Invalid(report)) => {
                invalid += 1;
                err!("{}", report.render());
                outln!(
                    "{}: invalid ({} error(s), {} warning(s))",
                    path.display(),
                    report.error_count(),
                    report.warning_count()
                );
            }
            Err(err) => {
                invalid += 1;
                errln!("jobwarden: {err}");
                outln!("{}: unreadable", path.display());
            }
        }
    }
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Whether `path` is a policy test file: one that loads as one, or one
/// whose top level names a policy and holds `[[case]]` tables.
fn is_test_file(path: &Path) -> bool {
    if TestFile::load(path).is_ok() {
        return true;
    }
    // Read as the policy was: bounded, whatever the path really is.
    let Ok(bytes) = read_small_file(path, MAX_POLICY_FILE_BYTES) else {
        return false;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return false;
    };
    let starts = |prefix: &str| text.lines().any(|l| l.trim_start().starts_with(prefix));
    starts("[[case]]") && !starts("version")
}
