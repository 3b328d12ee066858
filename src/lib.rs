//! jobwarden runs other people's commands safely.
//!
//! A TUI's plugins ask for background jobs through the ProGit [`JobHost`]
//! contract; jobwarden decides from an admin-written TOML trust [`Policy`]
//! whether a job may run and exactly how ([`decide`] → [`Plan`] or
//! [`Denial`]), then runs it confined, streams its output and progress as
//! [`JobEvent`]s, and leaves nothing running behind.
//!
//! The pieces, in the order a job meets them:
//! - [`contract`]: the types and trait a plugin sees, wire-compatible with
//!   the ProGit SDK;
//! - [`policy`]: loading and validating the trust policy, with diagnostics
//!   that point at `file:line:col`;
//! - [`decision`]: the pure function from policy and request to plan;
//! - [`capabilities`]: what a plugin's handle may do (spawn, cancel), as the
//!   embedding host grants it from the plugin's manifest.
//!
//! With the `progit` feature, `progit` implements the published
//! `progit-plugin-sdk` 0.4's `JobHost` for [`PluginHandle`], so ProGit can
//! inject `Box::new(host.plugin("citadel"))` where it holds the SDK's trait.

// On a platform without a sandbox (`sandbox/fallback.rs`) nothing spawns,
// so the machinery shared by the real platforms is unused there.
#![cfg_attr(
    not(any(target_os = "linux", target_os = "macos", windows)),
    allow(dead_code)
)]

pub mod capabilities;
pub mod contract;
pub mod decision;
pub mod doctor;
pub mod host;
#[cfg(any(feature = "lua", feature = "luajit"))]
pub mod lua;
pub mod output;
pub mod platform;
pub mod policy;
#[cfg(feature = "progit")]
pub mod progit;
pub mod sandbox;
pub mod testing;

pub use capabilities::JobCapabilities;
pub use contract::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobHost, JobId, JobLogLineData,
    JobOutputChunkData, JobProgressData, JobSpawnRequest, JobStartedData, JobStatus,
    ReadEventError,
};
pub use decision::{DecisionContext, Denial, Plan, decide};
pub use host::{HostBuilder, HostWarning, JobEnd, PluginHandle, PolicyJobHost, Usage};
pub use policy::{LoadError, LoadedPolicy, Policy};
