//! Confinement: turning a plan into a process that can do only what the
//! plan allows, and reporting exactly what was applied.
//!
//! One `os` module per platform, each with the same types and functions;
//! the host calls only those. On Linux: Landlock, rlimits, cgroups, a new
//! session, no capabilities, and a `CLONE_VM` spawn. On macOS: a session,
//! rlimits and the policy's environment, directory and binary. On Windows:
//! a Job Object with limits and kill-on-close. What a platform cannot
//! enforce, its report says, and a `required` policy refuses.

mod common;
pub mod report;
#[cfg(unix)]
mod unix;
#[cfg(any(target_os = "macos", windows))]
mod unreaped;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "linux")]
pub use linux as os;
#[cfg(target_os = "macos")]
pub mod macos;
#[cfg(target_os = "macos")]
pub use macos as os;
#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub use windows as os;
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!("jobwarden runs on Linux, macOS and Windows");

pub use common::{ExitInfo, HashCache, PrepareError, Signals, SupportOptions, sha256_of};
pub use report::{EnforcementReport, Item, Status};
