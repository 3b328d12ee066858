//! Observing what a job does, and saying it in policy terms.
//!
//! The invariant: observation records and explains; it never decides.
//! Nothing here changes what a job may do. The kernel's answers stay those
//! of the enforcing layers; observation (seccomp user notification on
//! Linux, `sandbox/linux/notify.rs`) only sees each attempt before the
//! kernel answers it and lets it continue. This module holds what is
//! portable about that:
//! - [`Access`] and [`Observed`]: what a job attempted, deduplicated and
//!   bounded;
//! - [`Grants`]: a plan's grants judged by the rules the kernel enforces
//!   them with, naming for a refused access the key that would allow it
//!   (`run --why`, `jobwarden test`);
//! - [`suggest`]: learn mode's smallest addition to a policy for one run;
//! - [`merge`]: writing it into a policy file, keeping the admin's layout.

mod access;
mod grants;
mod merge;
mod suggest;

pub use access::{Access, MAX_DISTINCT_ACCESSES, Observed};
pub use grants::{Enforced, Fix, GrantContext, Grants, Places, Refusal, Verdict};
pub use merge::{EditError, PolicyEdit, merge, plugin_sets_network_flags, snippet};
pub use suggest::{COLLAPSE_AT, Suggestion, suggest};

/// Whether an output line reads like a refusal by the kernel (`Permission
/// denied`, `EACCES`, `Operation not permitted`, `EPERM`, `Read-only file
/// system`, in any case): a hint that `--why` would explain something, never
/// proof (a program may word it otherwise, or print it for another reason).
pub fn mentions_refusal(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    [
        "permission denied",
        "operation not permitted",
        "eacces",
        "eperm",
        "read-only file system",
        "erofs",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}
