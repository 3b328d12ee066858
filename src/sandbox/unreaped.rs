//! What macOS, Windows and unknown platforms share for process trees:
//! nothing to scan and nothing to reap (launchd reaps orphans on macOS;
//! Windows has no zombies), so these are the host's interface with nothing
//! behind it.

use std::collections::HashSet;
use std::time::Instant;

/// A process identified by pid and start time (start unused here: 0).
pub(crate) type ProcessId = (i32, u64);

/// Nothing to share between jobs' membership reads.
#[derive(Debug, Default)]
pub(crate) struct Snapshot(());

/// The facts about the host that jobs need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostProcess {
    pub pid: i32,
}

impl HostProcess {
    pub fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
        }
    }
}

/// Nothing to reap.
pub(crate) struct Reaper {
    pub ever_needed: bool,
}

impl Reaper {
    pub fn new(_host: HostProcess, _marker: String) -> Self {
        Self { ever_needed: false }
    }
    pub fn watch(&mut self, _killed: Vec<ProcessId>) {}
    pub fn scan_soon(&mut self) {}
    pub fn fallback_job(&mut self, _started: u64) {}
    pub fn next_due(&self) -> Option<Instant> {
        None
    }
    pub fn run(&mut self, _live_leaders: &HashSet<i32>) {}
    pub fn scan(&mut self, _live_leaders: &HashSet<i32>) {}
}
