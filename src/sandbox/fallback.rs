//! A Unix platform jobwarden does not know (the BSDs, illumos, …): the
//! library, the policy tools and `explain` work; jobs are refused, and the
//! report says that nothing can be enforced here and why, instead of the
//! crate failing to compile.

pub(crate) use crate::sandbox::unix::io;
pub(crate) use crate::sandbox::unreaped::{HostProcess, Reaper, Snapshot};

use crate::decision::Plan;
use crate::sandbox::layer::Enforce;
use crate::sandbox::report::{ItemKind, Status};
use crate::sandbox::support::{SupportOptions, TreeMechanism};
use crate::sandbox::unreaped::ProcessId;
use crate::sandbox::unsupported::{Gap, Unsupported};
use crate::sandbox::{DismantleError, JobDir, PrepareError, SpawnError, Spawned};
use std::collections::HashSet;
use std::time::Instant;

/// The platform's name in reports.
pub(crate) const PLATFORM: &str = std::env::consts::OS;

const WHY: &str = "not enforced: jobwarden has no sandbox for this operating system";

/// Everything is a gap here.
pub(crate) static LAYERS: &[&dyn Enforce] = &[&Unsupported(&[
    Gap {
        kind: ItemKind::Filesystem,
        status: Status::NotEnforced,
        short: "filesystem",
        why: WHY,
    },
    Gap {
        kind: ItemKind::Network,
        status: Status::NotEnforced,
        short: "network",
        why: WHY,
    },
    Gap {
        kind: ItemKind::Scopes,
        status: Status::NotEnforced,
        short: "scopes",
        why: WHY,
    },
    Gap {
        kind: ItemKind::Session,
        status: Status::NotEnforced,
        short: "session",
        why: WHY,
    },
    Gap {
        kind: ItemKind::TreeCleanup,
        status: Status::NotEnforced,
        short: "tree cleanup",
        why: WHY,
    },
])];

/// Nothing is detected.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Support {}

impl Support {
    pub fn detect(_options: &SupportOptions) -> Self {
        Self {}
    }
    pub fn is_root(&self) -> bool {
        false
    }
    pub fn landlock_abi(&self) -> Option<u32> {
        None
    }
    pub fn tree_mechanism(&self, _what: TreeMechanism) -> Option<&'static str> {
        None
    }
    pub fn subreaper(&self) -> bool {
        false
    }

    pub fn mount_namespace(&self) -> Result<&'static str, String> {
        Err(format!("no mount namespace on {PLATFORM}"))
    }
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![("confinement", WHY.into())]
    }
    pub fn tips(&self) -> Vec<String> {
        vec!["jobwarden runs jobs on Linux, macOS and Windows".into()]
    }
    pub fn clean_stale(&self, _host: HostProcess) {}
}

/// Nothing to spawn with.
pub(crate) struct Spec {
    _dir: JobDir,
}

impl Spec {
    pub fn new(_plan: &Plan, dir: JobDir) -> Result<Self, PrepareError> {
        Ok(Self { _dir: dir })
    }
}

/// Refuses every spawn.
pub(crate) struct Spawner;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        Ok(Self)
    }

    pub fn spawn(&mut self, _spec: Spec) -> Result<Spawned, SpawnError> {
        Err(SpawnError::Unavailable {
            reason: format!("jobwarden cannot confine jobs on {PLATFORM}"),
        })
    }
}

/// Never built: no job starts here.
pub(crate) struct Tree {
    pub leader: i32,
    pub leader_start: u64,
    pub next_scan: Instant,
}

impl Tree {
    pub fn snapshot() -> Snapshot {
        Snapshot::default()
    }
    pub fn leader_reaped(&self) {}
    pub fn exact(&self) -> bool {
        true
    }
    pub fn track(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) {}
    pub fn member_pids(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) -> Vec<i32> {
        Vec::new()
    }
    pub fn terminate(&mut self, _: HostProcess, _: &HashSet<i32>) -> bool {
        false
    }
    pub fn kill_all(&mut self, _: HostProcess, _: &HashSet<i32>) -> Vec<ProcessId> {
        Vec::new()
    }
    pub fn oom_kills(&self) -> u64 {
        0
    }
    pub fn process_limit_hits(&self) -> u64 {
        0
    }
    pub fn memory_peak(&self) -> Option<u64> {
        None
    }
    pub fn dismantle(&mut self) -> Result<(), DismantleError> {
        Ok(())
    }
    pub fn ever_forked(&self) -> bool {
        false
    }
}
