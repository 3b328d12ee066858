//! `jobwarden check POLICY...`

use jobwarden::policy::{LoadError, Policy};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(paths: &[PathBuf]) -> ExitCode {
    let mut invalid = 0;
    for path in paths {
        match Policy::load(path) {
            Ok(loaded) => {
                let warnings = loaded.warnings.warning_count();
                if warnings > 0 {
                    err!("{}", loaded.warnings.render());
                }
                outln!("{}: valid ({warnings} warning(s))", path.display());
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
