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
        Clamp = "clamp",
        Reject = "reject",
    }
}

/// Limits of one level.
#[derive(Debug, Clone, Default)]
pub struct LimitsLayer {
    pub cpu_secs: Option<Sourced<Limit>>,
    pub memory: Option<Sourced<Limit>>,
    pub processes: Option<Sourced<Limit>>,
    pub open_files: Option<Sourced<Limit>>,
    pub file_size: Option<Sourced<Limit>>,
    pub core_dumps: Option<Sourced<bool>>,
    pub timeout_secs: Option<Sourced<u64>>,
    pub max_timeout_secs: Option<Sourced<u64>>,
    pub on_long_timeout: Option<Sourced<OnLongTimeout>>,
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
