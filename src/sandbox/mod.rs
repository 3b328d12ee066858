//! Confinement: turning a plan into a process that can do only what the
//! plan allows, and reporting exactly what was applied.
//!
//! One `os` module per platform, each with the same functions; the host
//! calls only those. On Linux: Landlock, rlimits, cgroups, a new session,
//! no capabilities, and a `CLONE_VM` spawn.

mod common;
pub mod report;
#[cfg(unix)]
mod unix;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux as os;

pub use common::{ExitInfo, HashCache, PrepareError, Signals, SupportOptions, sha256_of};
pub use report::{EnforcementReport, Item, Status};
