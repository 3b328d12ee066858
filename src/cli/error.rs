//! The CLI's one error type. Every subcommand returns `Result<ExitCode,
//! Failure>`; `main` prints the failure once, in one place, and exits with
//! the code the subcommand chose for it (each command documents its codes).

use jobwarden::policy::LoadError;
use std::fmt;
use std::process::ExitCode;

/// What went wrong, before or around the job itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The policy file has errors; `rendered` holds every diagnostic.
    #[error(
        "{rendered}jobwarden: {name} has {errors} error(s); fix them and try again (`jobwarden check {name}`)"
    )]
    InvalidPolicy {
        rendered: String,
        name: String,
        errors: usize,
    },
    /// The policy file could not be read at all.
    #[error("jobwarden: {0}")]
    LoadPolicy(LoadError),
    /// The repository or working directory cannot be used.
    #[error("jobwarden: {0}")]
    Repo(String),
    /// The request cannot be built from the flags.
    #[error("jobwarden: {0}")]
    Request(String),
    /// The host could not be started.
    #[error("jobwarden: {0}")]
    Host(#[from] jobwarden::host::HostError),
}

impl From<LoadError> for CliError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Invalid(report) => CliError::InvalidPolicy {
                rendered: report.render(),
                name: report.source.name.clone(),
                errors: report.error_count(),
            },
            other => CliError::LoadPolicy(other),
        }
    }
}

impl CliError {
    /// This error, ending the command with `code`.
    pub fn exit(self, code: u8) -> Failure {
        Failure { code, error: self }
    }
}

/// An error and the exit code its command gives it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: u8,
    pub error: CliError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl Failure {
    /// Prints the error to stderr and returns the exit code.
    pub fn report(self) -> ExitCode {
        errln!("{self}");
        ExitCode::from(self.code)
    }
}
