//! `[seccomp]`: the opt-in system call filter.

use crate::policy::model::Sourced;
use crate::policy::section::Section;

/// The opt-in system call filter of one level.
#[derive(Debug, Clone, Default)]
pub struct SeccompLayer {
    /// Deny the system calls a job has no business making (Linux).
    pub deny_dangerous: Option<Sourced<bool>>,
}

impl SeccompLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            deny_dangerous: s.flag("deny_dangerous"),
        }
    }
}
