//! Windows: the same policy and host, with what Windows offers a library
//! without a driver — a Job Object per job, created with its limits before
//! the job's first instruction runs:
//!
//! - the process is created suspended, put into the job object, then
//!   resumed, so nothing it starts escapes the job (breakaway is not
//!   allowed);
//! - `KILL_ON_JOB_CLOSE`: when the host exits, however it exits, the kernel
//!   ends every job's whole tree;
//! - the policy's process, memory (whole tree, committed) and CPU
//!   (per-process user time) limits are job-object limits;
//! - cancel and timeout end the tree with `TerminateJobObject`; Windows has
//!   no polite stop for a console program without a console, so the grace
//!   period does not apply.
//!
//! Filesystem, network and signal confinement, the open-files and
//! file-size limits, and privilege reduction are reported "not enforced on
//! Windows" (a `required` policy refuses the job, naming them).
//!
//! process-wrap's `JobObject` wrapper is not used: it keeps the job handle
//! private, and the limits, membership list and accounting need it. Pipes
//! are read by one thread per pipe (Windows anonymous pipes cannot join a
//! poller), each handing ready tokens to the host thread through a
//! `ReadyList` and its waker; exits are polled every 10 ms.

mod job;
mod layers;
mod pipe;
mod spawn;

/// Pipes and exit notification for the host's poller.
pub(crate) mod io {
    pub(crate) use super::pipe::{ExitWatch, Pipe, ReadyList};
}
pub(crate) use crate::sandbox::unreaped::{HostProcess, Reaper, Snapshot};
pub(crate) use job::Tree;
pub(crate) use layers::LAYERS;
pub(crate) use spawn::{Spawner, Spec};

use crate::sandbox::support::{SupportOptions, TreeMechanism};

/// The platform's name in reports.
pub(crate) const PLATFORM: &str = "windows";

/// How the job object's limits came out.
pub(crate) struct Limits {
    kill_on_close: bool,
    /// The job object enforces the plan's process, memory and CPU limits,
    /// or why not.
    enforced: Result<(), &'static str>,
    problem: Option<String>,
}

const WINE: &str = "accepted, but Wine does not enforce job object limits";
const REFUSED: &str = "the job object refused the limit";

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Support {
    /// Always false: Windows has no root (an administrator is not special
    /// to anything jobwarden applies).
    pub is_root: bool,
    /// Running under Wine, which accepts job object limits but does not
    /// enforce them.
    pub wine: bool,
}

impl Support {
    pub fn detect(_options: &SupportOptions) -> Self {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
        // SAFETY: looks up an export by NUL-terminated names; nothing is called.
        let wine = unsafe {
            let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
            !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
        };
        Self {
            is_root: false,
            wine,
        }
    }

    pub fn is_root(&self) -> bool {
        false
    }

    pub fn landlock_abi(&self) -> Option<u32> {
        None
    }

    pub fn tree_mechanism(&self, _what: TreeMechanism) -> Option<&'static str> {
        (!self.wine).then_some("job object")
    }

    pub fn subreaper(&self) -> bool {
        false
    }

    pub fn mount_namespace(&self) -> Result<&'static str, String> {
        Err(format!("no mount namespace on {PLATFORM}"))
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "confinement",
            "a job object per job (limits, kill-on-close); no filesystem or network sandbox on Windows".into(),
        )];
        if self.wine {
            lines.push((
                "wine",
                "running under Wine: job object limits are accepted but not enforced".into(),
            ));
        }
        lines
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        vec!["on Windows only `enforcement = \"best_effort\"` policies can run jobs: filesystem and network confinement are not available".into()]
    }

    /// Nothing to clean up from earlier hosts: their job objects died with them.
    pub fn clean_stale(&self, _host: HostProcess) {}
}
