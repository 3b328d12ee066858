//! Who belongs to a job, how to end all of it, and which zombies are ours.
//!
//! The invariant: when a job ends (exit, cancel, timeout, host shutdown),
//! every process it started is killed and reaped, including processes that
//! left its session and process group — and nothing else is touched.
//!
//! With a job cgroup (the normal case on Linux) membership is exact: the
//! kernel lists it, and `cgroup.kill` or a member scan ends it whole.
//! Without one, membership is reconstructed from `/proc`: the job's session
//! and process group, pids seen earlier, their descendants, and processes
//! re-parented to the host (a child subreaper) that are in a foreign session
//! and started after the job. That reconstruction is best effort: it can
//! over-attribute an escapee of another job running at the same time (which
//! is killed early rather than survive), and SECURITY.md says so.
//!
//! Reaping only takes zombies known to be ours: a killed member whose pid
//! *and start time* match (so a reused pid is never reaped), a zombie whose
//! cgroup is one of this host's job cgroups, or — without cgroups — an
//! orphan matching the attribution above. A child the embedding program
//! started itself is never reaped here.

use super::cgroup::JobCgroup;
use super::holds::Hold;
use super::procs::{self, Stat};
use crate::sandbox::DismantleError;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Job leaders of every host in this process: never attributed to another
/// host's job by the no-cgroup fallback, never reaped by a zombie scan.
static LEADERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn leaders() -> std::sync::MutexGuard<'static, Vec<i32>> {
    // A panic elsewhere while holding the list leaves it usable.
    LEADERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_any_hosts_leader(pid: i32) -> bool {
    leaders().contains(&pid)
}

/// Held while a job's first process is created and registered in
/// [`LEADERS`], and while `/proc` is read for the no-cgroup attribution.
/// Hosts in one process share its pid: until it is registered, a job another
/// host has just cloned looks exactly like a setsid escapee re-parented to
/// this host (parent the host, a foreign session, started after this job),
/// and would be killed as one.
static SPAWN_GATE: Mutex<()> = Mutex::new(());

/// Holds [`SPAWN_GATE`]; a panic elsewhere while holding it leaves it usable.
pub(crate) fn spawn_gate() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_GATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The facts about the host that attributing processes to jobs needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostProcess {
    pub pid: i32,
    pub session: i32,
}

impl HostProcess {
    pub fn current() -> Self {
        Self {
            pid: std::process::id() as i32,
            // SAFETY: getsid(0) has no preconditions.
            session: unsafe { libc::getsid(0) },
        }
    }
}

/// All of `/proc`, for tracking trees of jobs without a cgroup.
pub(crate) type Snapshot = Vec<Stat>;

/// How often a job without a cgroup has its tree re-scanned.
pub const FALLBACK_SCAN: Duration = Duration::from_millis(100);

/// At most how many looks a kill without a cgroup takes (each kills what
/// the last one missed; it stops at the first that finds nothing new).
const KILL_ROUNDS: usize = 8;

/// A process identified by pid and start time (immune to pid reuse).
pub(crate) type ProcessId = (i32, u64);

/// One job's process tree.
pub(crate) struct Tree {
    pub leader: i32,
    /// The leader's start time, in clock ticks after boot.
    pub leader_start: u64,
    cgroup: Option<JobCgroup>,
    /// Placeholders the job's read-only mounts cover, removed with the tree.
    holds: Vec<Hold>,
    /// Members seen so far (used without a cgroup).
    known: Vec<ProcessId>,
    pub next_scan: Instant,
}

impl Tree {
    /// The tree of a job whose first process is `leader`, held together by
    /// `cgroup` when it has one. Registers the leader (see [`LEADERS`]).
    pub fn new(leader: i32, cgroup: Option<JobCgroup>, holds: Vec<Hold>) -> Self {
        leaders().push(leader);
        let leader_start = procs::stat(leader).map_or(0, |s| s.start_ticks);
        Self {
            leader,
            leader_start,
            cgroup: cgroup.filter(JobCgroup::tracks_members),
            holds,
            known: vec![(leader, leader_start)],
            next_scan: Instant::now() + FALLBACK_SCAN,
        }
    }

    /// The processes that may be jobs' (`procs::host_processes`: the
    /// host's subtree, or all of `/proc`), shared between the trees that
    /// need them in one round. Read under the spawn gate, so every job
    /// leader in it is registered.
    pub fn snapshot() -> Snapshot {
        let _gate = spawn_gate();
        procs::host_processes(std::process::id() as i32)
    }

    /// The leader has been reaped: it is no longer a job leader.
    pub fn leader_reaped(&self) {
        leaders().retain(|p| *p != self.leader);
    }

    /// True when membership comes from a cgroup.
    pub fn exact(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Live members now.
    pub fn members(&mut self, host: HostProcess, live_leaders: &HashSet<i32>) -> Vec<Stat> {
        let snapshot = if self.cgroup.is_none() {
            Self::snapshot()
        } else {
            Vec::new()
        };
        self.members_in(&snapshot, host, live_leaders)
    }

    /// Pids of live members; from the cgroup alone when there is one (no
    /// `/proc` reads), else from `snapshot`.
    pub fn member_pids(
        &mut self,
        snapshot: &[Stat],
        host: HostProcess,
        live_leaders: &HashSet<i32>,
    ) -> Vec<i32> {
        match &self.cgroup {
            Some(cg) => cg.members(),
            None => self
                .members_in(snapshot, host, live_leaders)
                .iter()
                .map(|s| s.pid)
                .collect(),
        }
    }

    /// Live members, using `snapshot` (all of `/proc`) when there is no
    /// cgroup, so many jobs can share one scan.
    pub fn members_in(
        &mut self,
        snapshot: &[Stat],
        host: HostProcess,
        live_leaders: &HashSet<i32>,
    ) -> Vec<Stat> {
        match &self.cgroup {
            Some(cg) => cg.members().into_iter().filter_map(procs::stat).collect(),
            None => {
                let members = fallback_members(
                    snapshot,
                    self.leader,
                    self.leader_start,
                    &self.known,
                    host,
                    live_leaders,
                );
                for s in &members {
                    if !self.known.contains(&(s.pid, s.start_ticks)) {
                        self.known.push((s.pid, s.start_ticks));
                    }
                }
                members
            }
        }
    }

    /// Refreshes the known members from a shared snapshot (without a
    /// cgroup; a cgroup needs none).
    pub fn track(&mut self, snapshot: &[Stat], host: HostProcess, live_leaders: &HashSet<i32>) {
        if self.cgroup.is_none() {
            self.members_in(snapshot, host, live_leaders);
        }
        self.next_scan = Instant::now() + FALLBACK_SCAN;
    }

    /// Asks the whole tree to stop (SIGTERM); true, as Unix has a polite
    /// stop. The caller kills it after the grace period.
    pub fn terminate(&mut self, host: HostProcess, live_leaders: &HashSet<i32>) -> bool {
        // SAFETY: kill(2) of the job's own process group.
        unsafe { libc::kill(-self.leader, libc::SIGTERM) };
        for s in self.members(host, live_leaders) {
            // SAFETY: kill(2) of a member of this job's tree.
            unsafe { libc::kill(s.pid, libc::SIGTERM) };
        }
        true
    }

    /// SIGKILLs the whole tree; returns what was killed, for reaping.
    pub fn kill_all(&mut self, host: HostProcess, live_leaders: &HashSet<i32>) -> Vec<ProcessId> {
        let members = self.members(host, live_leaders);
        let mut killed: Vec<ProcessId> = members.iter().map(|s| (s.pid, s.start_ticks)).collect();
        match &self.cgroup {
            Some(cg) => {
                if !members.is_empty() {
                    cg.kill_all();
                }
            }
            None => {
                // SAFETY: kill(2) of the job's own process group.
                unsafe { libc::kill(-self.leader, libc::SIGKILL) };
                let mut round = members;
                // In rounds: a process the last look missed (forked while
                // it read) exists by the next, and a killed one forks no
                // more (the kernel refuses a fork with SIGKILL pending).
                for _ in 0..KILL_ROUNDS {
                    if round.is_empty() {
                        break;
                    }
                    for s in &round {
                        // SAFETY: kill(2) of a member of this job's tree.
                        unsafe { libc::kill(s.pid, libc::SIGKILL) };
                    }
                    round = self
                        .members(host, live_leaders)
                        .into_iter()
                        .filter(|s| !killed.contains(&(s.pid, s.start_ticks)))
                        .collect();
                    killed.extend(round.iter().map(|s| (s.pid, s.start_ticks)));
                }
                for s in &round {
                    // SAFETY: as above (the last look's, when rounds ran out).
                    unsafe { libc::kill(s.pid, libc::SIGKILL) };
                }
            }
        }
        killed
    }

    /// How often the memory limit's OOM killer struck inside the job.
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, JobCgroup::oom_kills)
    }

    /// How often the processes limit refused the job a process or thread.
    pub fn process_limit_hits(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, JobCgroup::pids_limit_hits)
    }

    /// Peak memory of the whole tree, when the cgroup records it.
    pub fn memory_peak(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(JobCgroup::memory_peak)
    }

    /// Kills what is left and removes the job's cgroups.
    pub fn dismantle(&mut self) -> Result<(), DismantleError> {
        let result = match &mut self.cgroup {
            None => Ok(()),
            Some(cg) => {
                if !cg.is_empty() {
                    cg.kill_all();
                }
                let dirs = cg.remove();
                if dirs.is_empty() {
                    Ok(())
                } else {
                    Err(DismantleError::CgroupsLeft { dirs })
                }
            }
        };
        // The holds go now, not when the tree is dropped: the job's end is
        // published right after, and whoever sees it must find the
        // repository as it was (placeholders removed, unless another
        // host's job still holds one: that host removes it).
        self.holds.clear();
        result
    }

    /// Whether the job ever had more than one process (unknown counts as yes).
    pub fn ever_forked(&self) -> bool {
        match &self.cgroup {
            Some(cg) => cg.peak_processes().is_none_or(|n| n > 1),
            None => true,
        }
    }
}

fn fallback_members(
    all: &[Stat],
    leader: i32,
    leader_start: u64,
    known: &[ProcessId],
    host: HostProcess,
    live_leaders: &HashSet<i32>,
) -> Vec<Stat> {
    let alive = |s: &&Stat| !s.is_zombie();
    // Never another job's: a leader of any host's job, or a process held by
    // a job cgroup (this job has none). Pids are reused quickly (a
    // `pid_max` of 32768 wraps in seconds on a busy machine), so a session
    // or group id that once was this job's can belong to another job now.
    let foreign = |s: &Stat| {
        s.pid != leader
            && (live_leaders.contains(&s.pid)
                || is_any_hosts_leader(s.pid)
                || procs::cgroup_contains(s.pid, "/jobwarden-"))
    };
    let mut members: Vec<Stat> = all
        .iter()
        .filter(alive)
        .filter(|s| {
            s.session == leader
                || s.pgrp == leader
                || known.contains(&(s.pid, s.start_ticks))
                || known.iter().any(|(pid, _)| *pid == s.session)
                // Re-parented to the host (a subreaper) from a foreign
                // session after this job started: a setsid escapee.
                || (s.ppid == host.pid
                    && s.session != host.session
                    && s.start_ticks >= leader_start)
        })
        .filter(|s| !foreign(s))
        .copied()
        .collect();
    loop {
        let before = members.len();
        for s in all.iter().filter(alive) {
            if members.iter().any(|m| m.pid == s.ppid)
                && !members.iter().any(|m| m.pid == s.pid)
                && !foreign(s)
            {
                members.push(*s);
            }
        }
        if members.len() == before {
            break;
        }
    }
    members
}

/// Reaps zombies that came from this host's jobs.
pub(crate) struct Reaper {
    host: HostProcess,
    /// Marks the job cgroups of this process's hosts (`/jobwarden-PID-`).
    marker: String,
    /// Killed members that become our zombie children once their parents exit.
    candidates: Vec<(ProcessId, Instant)>,
    retry_at: Option<Instant>,
    scan_due: Option<Instant>,
    /// (start, end) clock-tick windows of jobs that ran without a cgroup.
    fallback_windows: Vec<(u64, u64)>,
    /// Whether any job could have left a zombie (it forked, was killed as a
    /// tree, or ran without a cgroup); if not, shutdown skips the final scan.
    pub ever_needed: bool,
}

impl Reaper {
    pub fn new(host: HostProcess, marker: String) -> Self {
        Self {
            host,
            marker,
            candidates: Vec::new(),
            retry_at: None,
            scan_due: None,
            fallback_windows: Vec::new(),
            ever_needed: false,
        }
    }

    /// Remembers killed members for reaping.
    pub fn watch(&mut self, killed: Vec<ProcessId>) {
        if killed.is_empty() {
            return;
        }
        let now = Instant::now();
        self.candidates.extend(killed.into_iter().map(|p| (p, now)));
        self.retry_at = Some(now);
        self.ever_needed = true;
    }

    /// Asks for a full scan of the host's zombie children soon.
    pub fn scan_soon(&mut self) {
        self.ever_needed = true;
        self.scan_due.get_or_insert(Instant::now());
    }

    /// Records that a job ran without a cgroup between these start times.
    pub fn fallback_job(&mut self, started: u64) {
        self.ever_needed = true;
        self.fallback_windows.push((started, now_ticks()));
        if self.fallback_windows.len() > 1024 {
            self.fallback_windows.remove(0);
        }
    }

    /// The next time `run` has work.
    pub fn next_due(&self) -> Option<Instant> {
        match (self.retry_at, self.scan_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does what is due.
    pub fn run(&mut self, live_leaders: &HashSet<i32>) {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| now >= at) {
            let host = self.host;
            self.candidates.retain(|((pid, start), since)| {
                // A job's first process belongs to its exit watch, which
                // needs its status (the signal that ended it): never reap
                // it here.
                if live_leaders.contains(pid) {
                    return false;
                }
                let ours = procs::stat(*pid).is_some_and(|s| {
                    s.is_zombie() && s.ppid == host.pid && s.start_ticks == *start
                });
                if ours && procs::reap(*pid) {
                    return false;
                }
                now.duration_since(*since) < Duration::from_secs(2)
            });
            self.retry_at = (!self.candidates.is_empty()).then(|| now + Duration::from_millis(25));
        }
        if self.scan_due.is_some_and(|at| now >= at) {
            self.scan_due = None;
            self.scan(live_leaders);
        }
    }

    /// Reaps zombie children of the host that came from its jobs.
    pub fn scan(&mut self, live_leaders: &HashSet<i32>) {
        // Another host of this process may have cloned a job whose leader
        // is not registered yet (and may already have exited): its cgroup
        // matches the marker too, so wait until it is.
        let _gate = spawn_gate();
        for zombie in procs::zombie_children(self.host.pid) {
            if live_leaders.contains(&zombie.pid) || is_any_hosts_leader(zombie.pid) {
                continue;
            }
            let from_our_cgroup = procs::cgroup_contains(zombie.pid, &self.marker);
            let from_a_fallback_job = zombie.session != self.host.session
                && self
                    .fallback_windows
                    .iter()
                    .any(|(start, end)| zombie.start_ticks >= *start && zombie.start_ticks <= *end);
            if from_our_cgroup || from_a_fallback_job {
                procs::reap(zombie.pid);
            }
        }
    }
}

/// Clock ticks since boot, the unit of `/proc/PID/stat` start times.
fn now_ticks() -> u64 {
    // SAFETY: clock_gettime into a local; sysconf has no preconditions.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000
}
