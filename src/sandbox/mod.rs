//! Confinement: turning a plan into a process that can do only what the
//! plan allows, and reporting exactly what was applied.
//!
//! The invariant: a job's enforcement report is written by the code that
//! enforced it. Confinement is a list of **layers** (`layer.rs`), one per
//! mechanism — on Linux the program and its pin, cgroups, rlimits, the
//! session, privileges, seccomp and Landlock; on Windows a job object; on
//! macOS a session and rlimits. [`prepare`] folds over the platform's layers
//! to build the spawn and the report together; [`assess`] folds over the
//! same layers without side effects, for `explain` and `doctor`. A new
//! mechanism is one new file plus one line in the platform's layer list.
//!
//! Everything platform-specific sits behind one private `os` module per
//! platform (nextest-runner's `#[path]` pattern), all with the same small
//! surface: `Support` (what this machine offers), `Spec` (what the child
//! gets), `LAYERS`, `Spawner`, `Tree`, `Reaper`, `HostProcess` and `io`
//! (pipes and exit notification for the host's poller). A platform jobwarden
//! does not know gets `fallback.rs`, which runs nothing and says why.

mod error;
mod executables;
mod jobdir;
mod layer;
mod pin;
pub mod report;
mod support;
#[cfg(unix)]
mod unix;
#[cfg(not(target_os = "linux"))]
mod unobserved;
#[cfg(not(target_os = "linux"))]
mod unreaped;
#[cfg(not(target_os = "linux"))]
mod unsupported;

#[cfg_attr(target_os = "linux", path = "linux/mod.rs")]
#[cfg_attr(target_os = "macos", path = "macos/mod.rs")]
#[cfg_attr(windows, path = "windows/mod.rs")]
#[cfg_attr(
    not(any(target_os = "linux", target_os = "macos", windows)),
    path = "fallback.rs"
)]
mod os;

pub use error::{DismantleError, PrepareError, SpawnError};
pub use executables::{Executable, ExecutableKind, executables};
pub use pin::{HashCache, sha256_of};
pub use report::{EnforcementReport, Item, ItemKind, Requirement, Status};
pub use support::{
    BaselineLayer, CgroupDelegation, HostSupport, Observation, SupportOptions, TreeMechanism,
};

pub(crate) use jobdir::JobDir;
pub(crate) use os::io::{ExitWatch, Pipe, ReadyList};
pub(crate) use os::{HostProcess, Reaper, Tree};
#[cfg(target_os = "linux")]
pub(crate) use os::{Observer, ObserverState};
#[cfg(not(target_os = "linux"))]
pub(crate) use unobserved::{Observer, ObserverState};

use crate::decision::Plan;
use layer::Job;

/// The platform's name in reports (`linux`, `macos`, `windows`, …).
pub const PLATFORM: &str = os::PLATFORM;
use std::time::Duration;

/// A job ready to start: everything is open, created and checked, and the
/// report says what the job will get.
pub struct Prepared {
    spec: os::Spec,
    /// What was enforced, item by item.
    pub report: EnforcementReport,
}

/// A started job: its first process, how to notice its exit, its tree, and
/// its output.
pub(crate) struct Spawned {
    pub pid: i32,
    pub exit: ExitWatch,
    pub tree: Tree,
    pub stdout: Pipe,
    pub stderr: Pipe,
    /// The job's `{tmp}`, removed when this is dropped.
    pub dir: JobDir,
    /// The job's observation listener, when the host observes it.
    pub observer: Option<Observer>,
}

/// Prepares `plan` for spawning on this host: opens and checks the program,
/// creates the job's directory and containment, builds every layer's part
/// of the spawn, and refuses (without starting anything) when the policy
/// requires confinement this machine cannot give. `job_name` names the
/// job's kernel objects (cgroups). Whatever was created is removed again if
/// preparing fails or the result is dropped unspawned.
pub fn prepare(
    plan: &Plan,
    support: &HostSupport,
    job_name: &str,
    hashes: &mut HashCache,
) -> Result<Prepared, PrepareError> {
    let dir = JobDir::create(&plan.job_tmp)?;
    let mut spec = os::Spec::new(plan, dir)?;
    let mut job = Job::new(plan, support.os(), job_name, hashes);
    let mut report = EnforcementReport::new(os::PLATFORM);
    for layer in os::LAYERS {
        layer.prepare(&mut job, &mut spec, &mut report)?;
    }
    report.sort();
    if let Some(reason) = report.refusal(&plan.enforcement) {
        return Err(PrepareError::EnforcementRequired {
            reason,
            report: Box::new(report),
        });
    }
    Ok(Prepared { spec, report })
}

/// What this host would enforce for `plan`, without creating anything: the
/// same layers as [`prepare`], each predicting its outcome instead of
/// producing it (for `doctor` and `explain`).
pub fn assess(plan: &Plan, support: &HostSupport) -> EnforcementReport {
    assess_with_facts(plan, support).0
}

/// What the layers would execute besides the plan's `execute` list (the
/// ELF loader, a script's interpreter), from the same fold as [`assess`].
fn assess_facts(plan: &Plan, support: &HostSupport) -> Vec<crate::decision::PlanPath> {
    assess_with_facts(plan, support).1
}

fn assess_with_facts(
    plan: &Plan,
    support: &HostSupport,
) -> (EnforcementReport, Vec<crate::decision::PlanPath>) {
    let mut hashes = HashCache::default();
    let mut job = Job::new(plan, support.os(), "assess", &mut hashes);
    let mut report = EnforcementReport::new(os::PLATFORM);
    for layer in os::LAYERS {
        layer.assess(&mut job, &mut report);
    }
    report.sort();
    (report, job.facts.exec)
}

/// Starts prepared jobs. Keep one per thread that spawns, and spawn from one
/// long-lived thread: on Linux the parent-death signal fires when the
/// thread that spawned exits.
pub struct Spawner(os::Spawner);

impl Spawner {
    /// Sets up spawning (on Linux, the child's stack).
    pub fn new() -> Result<Self, SpawnError> {
        os::Spawner::new().map(Self)
    }

    /// Starts `prepared` and returns its first process's pid with the
    /// report. For embedders that measure or drive spawning themselves (the
    /// benchmark); the host starts jobs through a crate-private path that
    /// hands their pipes to its own reader. The job's pipes are closed and
    /// its tree is killed when the returned value is dropped.
    pub fn spawn(&mut self, prepared: Prepared) -> Result<StartedJob, SpawnError> {
        let spawned = self.start(prepared.spec)?;
        Ok(StartedJob {
            report: prepared.report,
            spawned: Some(spawned),
        })
    }

    /// Starts a prepared spec; consumes it, so the parent's copies of the
    /// child's descriptors are closed before this returns.
    pub(crate) fn start(&mut self, spec: os::Spec) -> Result<Spawned, SpawnError> {
        self.0.spawn(spec)
    }
}

impl Prepared {
    /// Splits off the spec for [`Spawner::start`].
    pub(crate) fn into_parts(self) -> (os::Spec, EnforcementReport) {
        (self.spec, self.report)
    }
}

/// A job started through [`Spawner::spawn`].
pub struct StartedJob {
    /// What was applied to the job, layer by layer.
    pub report: EnforcementReport,
    spawned: Option<Spawned>,
}

impl StartedJob {
    /// The first process's pid.
    pub fn pid(&self) -> i32 {
        self.spawned.as_ref().map_or(0, |s| s.pid)
    }

    /// Waits for the first process to exit and reaps it. The rest of the
    /// tree is killed and the containment removed when this is dropped.
    pub fn wait(&mut self) -> Option<ExitInfo> {
        Some(self.spawned.as_mut()?.exit.wait())
    }
}

impl Drop for StartedJob {
    fn drop(&mut self) {
        if let Some(mut spawned) = self.spawned.take() {
            end_tree(&mut spawned);
        }
    }
}

fn end_tree(spawned: &mut Spawned) {
    let leaders = std::collections::HashSet::from([spawned.pid]);
    spawned.tree.kill_all(HostProcess::current(), &leaders);
    let _ = spawned.tree.dismantle();
    let _ = spawned.exit.try_wait();
    spawned.tree.leader_reaped();
}

/// How a job's first process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it (Unix).
    pub signal: Option<i32>,
    /// CPU time in user mode (of it and the children it waited for).
    pub user: Duration,
    /// CPU time in kernel mode.
    pub system: Duration,
    /// Peak resident memory, when the platform reports it.
    pub max_rss: u64,
    /// Another part of the program collected the status (`waitpid(-1)`).
    pub lost: bool,
}

/// Removes job containment (cgroups) left by hosts that died without
/// cleaning up, killing whatever is still in it. Never touches a live
/// host's.
pub(crate) fn clean_stale(support: &HostSupport, host: HostProcess) {
    support.os().clean_stale(host);
}
