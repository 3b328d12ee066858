//! The errors of preparing, spawning and dismantling a job: one type per
//! operation, the same on every platform (an exhaustive match never differs
//! by OS), each variant named after what failed and keeping its source.

use crate::decision::Denial;
use crate::sandbox::report::EnforcementReport;
use std::io;
use std::path::PathBuf;

/// Why a job could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// A policy rule refused it at start time (a binary hash mismatch, a
    /// program Windows would not run as named).
    #[error("{0}")]
    Denied(Denial),
    /// The policy requires confinement this machine cannot apply.
    #[error("{reason}")]
    EnforcementRequired {
        /// Which items are missing and how to run anyway, for the admin.
        reason: String,
        /// The whole report: what would have been enforced and what not.
        report: Box<EnforcementReport>,
    },
    /// The program could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    OpenProgram {
        /// The program's resolved path.
        path: PathBuf,
        /// Why opening it failed.
        #[source]
        source: io::Error,
    },
    /// The pinned program could not be read to hash it.
    #[error("cannot hash {}: {source}", path.display())]
    HashProgram {
        /// The program's resolved path.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: io::Error,
    },
    /// The job's private directory (`{tmp}`) could not be created.
    #[error("cannot create the job directory {}: {source}", path.display())]
    CreateJobDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why creating it failed.
        #[source]
        source: io::Error,
    },
    /// The working directory could not be opened beneath the repository.
    #[error("the working directory {} cannot be opened beneath the repository: {source}", path.display())]
    OpenWorkingDir {
        /// The working directory the plan asked for.
        path: PathBuf,
        /// Why opening it failed.
        #[source]
        source: io::Error,
    },
    /// The working directory left the repository since the decision (a
    /// directory on the way was swapped for a link).
    #[error("the working directory {} now resolves to {}, outside the repository", path.display(), actual.display())]
    WorkingDirEscaped {
        /// The working directory the plan asked for.
        path: PathBuf,
        /// Where it resolves now.
        actual: PathBuf,
    },
    /// An argument, variable or path holds a NUL byte the kernel cannot take.
    #[error("the {what} contains a NUL byte")]
    NulByte {
        /// What held it ("program path", "argument", …).
        what: &'static str,
    },
    /// The job would need more placeholders held than one job may hold.
    #[error("the job would need more than {max} placeholders for protected directories ({} is the first beyond): such a repository (many nested repositories or submodules missing their hooks or info directory, or empty directories marked with the extended attribute user.jobwarden.placeholder) is refused rather than run with protected paths unguarded; remove the empty placeholder directories, or the nested repositories", path.display())]
    TooManyPlaceholders {
        /// The most one job holds.
        max: usize,
        /// The first protected directory beyond it.
        path: PathBuf,
    },
    /// A system call of the parent failed while preparing.
    #[error("{call} failed: {source}")]
    Syscall {
        /// The system call that failed.
        call: &'static str,
        /// The error it returned.
        #[source]
        source: io::Error,
    },
    /// The Landlock ruleset could not be built.
    #[error("building the Landlock ruleset failed: {source}")]
    Landlock {
        /// What the Landlock crate reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The seccomp filter could not be compiled.
    #[error("compiling the seccomp filter failed: {source}")]
    Seccomp {
        /// What the filter compiler reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Windows job object could not be created or restricted.
    #[error("cannot {action} the job object: {source}")]
    JobObject {
        /// What was being done ("create", "limit", …).
        action: &'static str,
        /// The error Windows returned.
        #[source]
        source: io::Error,
    },
}

impl PrepareError {
    /// A failed system call, for `map_err`.
    #[cfg_attr(target_os = "macos", allow(dead_code))]
    pub(crate) fn syscall(call: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Syscall { call, source }
    }

    /// The last OS error as a failed `call`.
    #[cfg(unix)]
    pub(crate) fn last_os_error(call: &'static str) -> Self {
        Self::Syscall {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// Why a prepared job could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The child's stack could not be set up (Linux).
    #[error("cannot allocate the spawn stack: {0}")]
    Stack(#[source] io::Error),
    /// `clone` failed (Linux).
    #[error("clone failed: {0}")]
    Clone(#[source] io::Error),
    /// A confinement step failed in the job's process before it ran; `call`
    /// names the system call.
    #[error("{call} failed in the job's process before it ran: {source}")]
    Confine {
        /// The system call that failed.
        call: &'static str,
        /// The error it returned in the child.
        #[source]
        source: io::Error,
    },
    /// The program itself could not be executed (missing, not executable,
    /// or refused by the sandbox).
    #[error("{0}")]
    Exec(#[source] io::Error),
    /// The process started but could not be put in its job object (Windows).
    #[error("cannot put the job's process in its job object: {0}")]
    Assign(#[source] io::Error),
    /// The suspended process could not be resumed (Windows).
    #[error("cannot resume the job's process: {0}")]
    Resume(#[source] io::Error),
    /// This host cannot spawn at all.
    #[error("spawning is unavailable: {reason}")]
    Unavailable {
        /// Why, in words for the admin.
        reason: String,
    },
}

impl SpawnError {
    /// The error of the exec itself, if that is what failed.
    pub fn exec_failure(&self) -> Option<&io::Error> {
        match self {
            SpawnError::Exec(source) => Some(source),
            _ => None,
        }
    }
}

/// What could not be removed when a job ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DismantleError {
    /// Job cgroups still hold processes or could not be removed.
    #[error("cannot remove the cgroup(s) {}", list(.dirs))]
    CgroupsLeft {
        /// The cgroup directories left behind.
        dirs: Vec<PathBuf>,
    },
}

fn list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
