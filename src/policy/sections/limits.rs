//! `[limits]`: resource limits and timeouts.
//!
//! Every minimum (at least 4 open files, a timeout of at least a second) is
//! declared in `schema.rs`; that the default timeout fits under the maximum
//! depends on every level a job meets and is checked in `validate.rs`.

use crate::policy::model::{Limit, Sourced, choice};
use crate::policy::section::Section;
use std::time::Duration;

choice! {
    /// Whether an over-long requested timeout is shortened or refused.
    pub enum OnLongTimeout {
        /// Shorten it to `max_timeout_secs` and say so.
        Clamp = "clamp",
        /// Refuse the job.
        Reject = "reject",
    }
}

/// Limits of one level.
#[derive(Debug, Clone, Default)]
pub struct LimitsLayer {
    /// CPU time, in seconds (`RLIMIT_CPU`).
    pub cpu_secs: Option<Sourced<Limit>>,
    /// Memory, in bytes: the job's cgroup, else its address space.
    pub memory: Option<Sourced<Limit>>,
    /// Processes and threads: the job's cgroup, else `RLIMIT_NPROC`.
    pub processes: Option<Sourced<Limit>>,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: Option<Sourced<Limit>>,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`).
    pub file_size: Option<Sourced<Limit>>,
    /// Whether a crashing process may write a core dump.
    pub core_dumps: Option<Sourced<bool>>,
    /// The timeout of a job whose request names none.
    pub timeout_secs: Option<Sourced<u64>>,
    /// The longest timeout a request may ask for.
    pub max_timeout_secs: Option<Sourced<u64>>,
    /// What a request above `max_timeout_secs` gets.
    pub on_long_timeout: Option<Sourced<OnLongTimeout>>,
    /// How long a cancelled job has between SIGTERM and SIGKILL.
    pub kill_grace: Option<Sourced<Duration>>,
}

impl LimitsLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            cpu_secs: s.limit("cpu_secs"),
            memory: s.limit("memory"),
            processes: s.limit("processes"),
            open_files: s.limit("open_files"),
            file_size: s.limit("file_size"),
            core_dumps: s.flag("core_dumps"),
            timeout_secs: s.integer("timeout_secs"),
            max_timeout_secs: s.integer("max_timeout_secs"),
            on_long_timeout: s.choice("on_long_timeout"),
            kill_grace: s.seconds("kill_grace_secs"),
        }
    }
}
