//! A job's process tree on macOS: its process group.

use super::{HostProcess, Snapshot};
use crate::sandbox::DismantleError;
use crate::sandbox::unreaped::ProcessId;
use std::collections::HashSet;
use std::time::Instant;

const PGRP_PIDS_MAX: usize = 4096;

/// One job's process tree: its process group.
pub(crate) struct Tree {
    pub leader: i32,
    pub leader_start: u64,
    pub next_scan: Instant,
}

impl Tree {
    pub fn new(leader: i32) -> Self {
        Self {
            leader,
            leader_start: 0,
            next_scan: Instant::now(),
        }
    }

    /// No scan is needed: the process group lists the members.
    pub fn snapshot() -> Snapshot {
        Snapshot::default()
    }

    /// Nothing to forget: no zombie scan here.
    pub fn leader_reaped(&self) {}

    /// Membership is the process group, read from the kernel when needed.
    pub fn exact(&self) -> bool {
        true
    }

    /// Nothing to track between samples.
    pub fn track(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) {}

    /// Pids in the job's process group.
    pub fn member_pids(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) -> Vec<i32> {
        let mut pids = vec![0 as libc::pid_t; PGRP_PIDS_MAX];
        // SAFETY: the buffer holds PGRP_PIDS_MAX pids; the size is in bytes.
        let bytes = unsafe {
            libc::proc_listpgrppids(
                self.leader,
                pids.as_mut_ptr() as *mut libc::c_void,
                (pids.len() * std::mem::size_of::<libc::pid_t>()) as libc::c_int,
            )
        };
        let n = (bytes.max(0) as usize / std::mem::size_of::<libc::pid_t>()).min(pids.len());
        pids.truncate(n);
        pids.retain(|p| *p > 0);
        pids
    }

    /// Sends SIGTERM to the process group; true, as Unix has a polite stop.
    pub fn terminate(&mut self, _: HostProcess, _: &HashSet<i32>) -> bool {
        // SAFETY: kill(2) of the job's own process group.
        unsafe { libc::kill(-self.leader, libc::SIGTERM) };
        true
    }

    /// SIGKILLs the process group; returns what was in it.
    pub fn kill_all(&mut self, host: HostProcess, leaders: &HashSet<i32>) -> Vec<ProcessId> {
        let members = self.member_pids(&Snapshot::default(), host, leaders);
        // SAFETY: kill(2) of the job's own process group.
        unsafe { libc::kill(-self.leader, libc::SIGKILL) };
        members.into_iter().map(|p| (p, 0)).collect()
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

    /// Nothing was created for the job.
    pub fn dismantle(&mut self) -> Result<(), DismantleError> {
        Ok(())
    }

    /// Unknown here, so yes.
    pub fn ever_forked(&self) -> bool {
        true
    }
}
