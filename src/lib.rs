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
//! - [`host`]: [`PolicyJobHost`], which runs what the decision allowed on
//!   its own thread and hands each plugin a [`PluginHandle`];
//! - [`sandbox`]: the enforcement layers a job's processes start under
//!   (Landlock, seccomp, mount namespace, rlimits, cgroup on Linux) and the
//!   [`sandbox::EnforcementReport`] that says which of them held;
//! - [`observe`]: what an observed job attempted (`run --why`, `jobwarden
//!   learn`), judged against a plan's grants in policy terms, and learn's
//!   suggested policy addition;
//! - [`output`]: lines, progress and the bounded per-plugin event queues;
//! - [`testing`] and [`doctor`]: what `jobwarden test` and `jobwarden
//!   doctor` run, for embedders that prove a policy in their own CI.
//!
//! # Embedding
//!
//! Start from [`PolicyJobHost`]: one host per repository, one
//! [`PluginHandle`] per plugin, a [`JobHost::spawn`] that never blocks, and
//! [`JobHost::drain_events`] once per frame of the host's render loop.
//!
//! ```no_run
//! use jobwarden::{JobEvent, JobHost, JobSpawnRequest, Policy, PolicyJobHost};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An admin's policy file; `Policy::embedded_default()` is the shipped one.
//! let policy = Policy::load("policy/default.toml")?.policy;
//! let host = PolicyJobHost::new(policy, "/path/to/repo")?;
//! let plugin = host.plugin("citadel"); // one handle per plugin
//!
//! // Decides, records and returns the id; the process starts on the host's
//! // thread. A refused request gets an id too, whose only event is
//! // `JobFailed` naming the rule and the fix.
//! let id = plugin.spawn(JobSpawnRequest::new("git", ["status"]));
//!
//! 'frames: loop {
//!     for event in plugin.drain_events() {
//!         match &event {
//!             JobEvent::JobLogLine { data, .. } => println!("{}", data.line),
//!             JobEvent::JobProgress { data, .. } => eprintln!("{:?}", data.percent),
//!             _ if event.is_terminal() => break 'frames,
//!             _ => {}
//!         }
//!     }
//!     std::thread::sleep(Duration::from_millis(16)); // the next frame
//! }
//! println!("{id}: {:?}", plugin.status(&id));
//! # Ok(())
//! # }
//! // Dropping the host cancels what still runs, kills what is left after
//! // the grace period and reaps everything.
//! ```
//!
//! [`PluginHandle::wait_events`] blocks instead, for command-line tools.
//! A refused request's reasons are also available as a value:
//! [`PluginHandle::try_spawn`] returns the [`Denial`].
//!
//! # Cargo features
//!
//! - `progit`: [`PluginHandle`] implements the published
//!   `progit-plugin-sdk` 0.4's `JobHost` (module `progit`), so ProGit can
//!   inject `Box::new(host.plugin("citadel"))` where it holds the SDK's
//!   trait.
//! - `lua` (vendored Lua 5.4) or `luajit` (vendored LuaJIT; the one to use
//!   beside `progit`, which builds LuaJIT itself): the `lua` module installs
//!   a plugin's `jobs` table into an `mlua` state.

// Every public item says what it is for (issue 16): CI denies warnings.
#![warn(missing_docs)]
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
pub mod observe;
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
