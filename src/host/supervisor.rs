//! The host thread: starts jobs, reads all their output through one poller,
//! enforces timeouts, escalates cancels, reaps and cleans up.
//!
//! One thread does all of this, so per-job event order is simply program
//! order here: `JobStarted`, the enforcement line, output in the order it
//! was read, then — once the first process has exited and both pipes are
//! closed — the exit summary and exactly one terminal event. It is also the
//! one long-lived thread that spawns, which the parent-death signal needs.

use super::{Accepted, Command, JobEnd, Shared, Usage};
use crate::contract::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobId, JobLogLineData,
    JobStartedData, JobStatus, STREAM_SYSTEM, timestamp_now,
};
use crate::decision::{Plan, format_duration};
use crate::host::audit::EndRecord;
use crate::output::progress::ProgressTracker;
use crate::output::{JobOutput, Stream};
use crate::policy::{Limit, units::format_size};
use crate::sandbox::EnforcementReport;
use crate::sandbox::os::cgroup::JobCgroup;
use crate::sandbox::os::{HashCache, PrepareError, Spawner, procs, signal_tree};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const WAKER: Token = Token(usize::MAX);

/// Bytes read per pipe before other pipes get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Size of the shared read buffer.
const READ_CHUNK: usize = 64 * 1024;
/// How long output may keep flowing after the first process exited and the
/// rest of the tree was killed, before the pipes are closed anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How often jobs without a cgroup have their tree scanned for escapees.
const FALLBACK_SCAN: Duration = Duration::from_millis(500);

pub(super) fn run(shared: Arc<Shared>, poll: Poll) {
    let spawner = match Spawner::new() {
        Ok(s) => Some(s),
        Err(e) => {
            shared.warn(format!("cannot set up spawning; every job will fail: {e}"));
            None
        }
    };
    let host_pid = std::process::id() as i32;
    let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let mut supervisor = Supervisor {
        shared,
        poll,
        spawner,
        hashes: HashCache::default(),
        jobs: HashMap::new(),
        pending: HashMap::new(),
        pending_order: VecDeque::new(),
        running_per_plugin: HashMap::new(),
        next_slot: 0,
        ready: HashSet::new(),
        buf: vec![0; READ_CHUNK],
        batches: HashMap::new(),
        shutting_down: false,
        orphan_scan_due: None,
        orphan_candidates: Vec::new(),
        orphan_retry_at: None,
        fallback_ids: VecDeque::new(),
        host_pid,
        instance,
        cgroup_marker: format!("/jobwarden-{host_pid}-{instance}-"),
    };
    supervisor.clean_stale_cgroups();
    supervisor.run();
}

struct Termination {
    reason: String,
    timed_out: bool,
    kill_at: Instant,
    killed: bool,
}

struct Exit {
    /// Raw wait status; `None` when another part of the program reaped it.
    status: Option<i32>,
    rusage: libc::rusage,
    elapsed: Duration,
}

struct Job {
    id: JobId,
    plugin: Arc<str>,
    plan: Plan,
    pid: i32,
    pidfd: Option<OwnedFd>,
    stdout: Option<File>,
    stderr: Option<File>,
    output: JobOutput,
    cgroup: Option<JobCgroup>,
    report: EnforcementReport,
    started: Instant,
    deadline: Instant,
    termination: Option<Termination>,
    exit: Option<Exit>,
    drain_until: Option<Instant>,
    /// Pids seen in the tree (used when there is no cgroup).
    known_pids: Vec<i32>,
    next_tree_scan: Instant,
    usage: Usage,
}

struct Supervisor {
    shared: Arc<Shared>,
    poll: Poll,
    spawner: Option<Spawner>,
    hashes: HashCache,
    jobs: HashMap<usize, Job>,
    pending: HashMap<Arc<str>, VecDeque<(Accepted, usize)>>,
    pending_order: VecDeque<Arc<str>>,
    running_per_plugin: HashMap<Arc<str>, usize>,
    next_slot: usize,
    ready: HashSet<Token>,
    buf: Vec<u8>,
    batches: HashMap<Arc<str>, Vec<JobEvent>>,
    shutting_down: bool,
    orphan_scan_due: Option<Instant>,
    /// Pids of killed tree members that may become our zombie children,
    /// with when they were killed.
    orphan_candidates: Vec<(i32, Instant)>,
    /// When to look at the candidates again.
    orphan_retry_at: Option<Instant>,
    /// Session ids (= leader pids) and member pids of recent jobs that ran
    /// without a cgroup, to recognise their orphans.
    fallback_ids: VecDeque<i32>,
    host_pid: i32,
    /// Distinguishes hosts within one process.
    instance: u64,
    cgroup_marker: String,
}

/// Counts hosts created in this process.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn token(slot: usize, kind: usize) -> Token {
    Token(slot * 3 + kind)
}

const STDOUT: usize = 0;
const STDERR: usize = 1;
const PIDFD: usize = 2;

impl Supervisor {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if self.ready.is_empty() {
                self.next_timer()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != ErrorKind::Interrupted
            {
                self.shared.warn(format!("poll failed: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.ready.insert(event.token());
                }
            }
            self.service_ready();
            self.handle_commands();
            self.check_timers();
            self.finalize_finished();
            // After finalising: a finished job frees a slot for a pending one.
            self.start_pending();
            self.reap_orphans_if_due();
            self.flush();
            if self.shutting_down
                && self.jobs.is_empty()
                && self.pending.values().all(VecDeque::is_empty)
            {
                break;
            }
        }
        self.scan_zombies();
        self.flush();
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.orphan_scan_due;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for job in self.jobs.values() {
            if job.exit.is_none() {
                match &job.termination {
                    Some(t) if !t.killed => consider(t.kill_at),
                    Some(_) => {}
                    None => consider(job.deadline),
                }
                if job.cgroup.is_none() {
                    consider(job.next_tree_scan);
                }
            }
            if let Some(at) = job.drain_until {
                consider(at);
            }
        }
        if let Some(at) = self.orphan_retry_at {
            consider(at);
        }
        next
    }

    fn emit(&mut self, plugin: &Arc<str>, event: JobEvent) {
        self.batches.entry(plugin.clone()).or_default().push(event);
    }

    fn system_line(&mut self, plugin: &Arc<str>, id: &JobId, line: String) {
        self.emit(
            plugin,
            JobEvent::JobLogLine {
                job_id: id.clone(),
                data: JobLogLineData {
                    line,
                    stream: STREAM_SYSTEM.to_string(),
                },
            },
        );
    }

    fn flush(&mut self) {
        for (plugin, events) in self.batches.drain() {
            self.shared.push_events(&plugin, events);
        }
    }

    // ---- commands and starting -------------------------------------------

    fn handle_commands(&mut self) {
        let commands = std::mem::take(
            &mut *self
                .shared
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for command in commands {
            match command {
                Command::Start(accepted) => {
                    let max = self
                        .shared
                        .policy
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .plugin_rule(&accepted.plugin)
                        .map_or(1, |p| p.max_concurrent.value as usize)
                        .max(1);
                    if self.shutting_down {
                        self.cancel_pending(
                            *accepted,
                            "host shut down before the job started".into(),
                        );
                        continue;
                    }
                    let plugin = accepted.plugin.clone();
                    let queue = self.pending.entry(plugin.clone()).or_default();
                    if queue.is_empty() {
                        self.pending_order.push_back(plugin);
                    }
                    queue.push_back((*accepted, max));
                }
                Command::Cancel { id, reason } => self.cancel(&id, reason),
                Command::Shutdown => {
                    self.shutting_down = true;
                    let pending: Vec<(Accepted, usize)> = self
                        .pending
                        .values_mut()
                        .flat_map(|q| q.drain(..))
                        .collect();
                    for (accepted, _) in pending {
                        self.cancel_pending(
                            accepted,
                            "host shut down before the job started".into(),
                        );
                    }
                    let slots: Vec<usize> = self.jobs.keys().copied().collect();
                    for slot in slots {
                        self.terminate(slot, "host shut down".into(), false);
                    }
                }
            }
        }
    }

    fn cancel(&mut self, id: &JobId, reason: String) {
        for queue in self.pending.values_mut() {
            if let Some(i) = queue.iter().position(|(a, _)| &a.id == id) {
                let (accepted, _) = queue.remove(i).expect("index found");
                self.cancel_pending(accepted, reason);
                return;
            }
        }
        if let Some(slot) = self.jobs.iter().find(|(_, j)| &j.id == id).map(|(s, _)| *s) {
            self.terminate(slot, reason, false);
        }
    }

    fn cancel_pending(&mut self, accepted: Accepted, reason: String) {
        self.shared.set_end(
            &accepted.id,
            JobStatus::Cancelled {
                reason: reason.clone(),
            },
            JobEnd::Cancelled,
        );
        self.emit(
            &accepted.plugin,
            JobEvent::JobCancelled {
                job_id: accepted.id.clone(),
                data: JobCancelledData {
                    reason,
                    cancelled_at: timestamp_now(),
                },
            },
        );
        let _ = std::fs::remove_dir_all(&accepted.plan.job_tmp);
    }

    fn start_pending(&mut self) {
        let mut rounds = self.pending_order.len();
        while rounds > 0 {
            rounds -= 1;
            let Some(plugin) = self.pending_order.pop_front() else {
                break;
            };
            loop {
                let running = self.running_per_plugin.get(&plugin).copied().unwrap_or(0);
                let queue = self.pending.entry(plugin.clone()).or_default();
                let Some((_, max)) = queue.front() else { break };
                if running >= *max {
                    break;
                }
                let (accepted, _) = queue.pop_front().expect("front exists");
                self.start(accepted);
            }
            if self.pending.get(&plugin).is_some_and(|q| !q.is_empty()) {
                self.pending_order.push_back(plugin);
            }
        }
    }

    fn fail_before_start(
        &mut self,
        accepted: &Accepted,
        error: String,
        report: Option<EnforcementReport>,
        end: JobEnd,
    ) {
        {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = jobs.records.get_mut(&accepted.id) {
                record.enforcement = report;
                record.end = Some(end);
            }
            jobs.finish(
                &accepted.id,
                JobStatus::Failed {
                    exit_code: None,
                    error: error.clone(),
                },
            );
        }
        self.emit(
            &accepted.plugin,
            JobEvent::JobFailed {
                job_id: accepted.id.clone(),
                data: JobFailedData {
                    exit_code: None,
                    error: error.clone(),
                    failed_at: timestamp_now(),
                },
            },
        );
        self.audit_end(
            &accepted.plugin,
            &accepted.id,
            &accepted.plan,
            "failed",
            None,
            None,
            Some(error),
            Duration::ZERO,
            None,
        );
        let _ = std::fs::remove_dir_all(&accepted.plan.job_tmp);
    }

    fn start(&mut self, accepted: Accepted) {
        // Unique per host instance: one process may run several hosts.
        let name = format!(
            "jobwarden-{}-{}-{}",
            self.host_pid, self.instance, accepted.id
        );
        let prepared = match crate::sandbox::os::prepare(
            &accepted.plan,
            &self.shared.support,
            &name,
            &mut self.hashes,
        ) {
            Ok(p) => p,
            Err(PrepareError::Denied(denial)) => {
                let end = JobEnd::Denied {
                    rule: denial.rule.clone(),
                };
                self.fail_before_start(&accepted, denial.to_string(), None, end);
                return;
            }
            Err(PrepareError::EnforcementRequired { reason, report }) => {
                self.fail_before_start(
                    &accepted,
                    reason,
                    Some(*report),
                    JobEnd::EnforcementUnavailable,
                );
                return;
            }
            Err(e) => {
                self.fail_before_start(
                    &accepted,
                    format!("cannot start the job: {e}"),
                    None,
                    JobEnd::StartFailed,
                );
                return;
            }
        };
        let Some(spawner) = self.spawner.as_mut() else {
            if let Some(cg) = &prepared.cgroup {
                cg.remove();
            }
            self.fail_before_start(
                &accepted,
                "cannot start the job: spawning is unavailable".into(),
                None,
                JobEnd::StartFailed,
            );
            return;
        };
        let spawned = spawner.spawn(&prepared.spec);
        // Close our copies of the child's ends (pipes, ruleset, cgroup files) now.
        drop(prepared.spec);
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                if let Some(cg) = &prepared.cgroup {
                    cg.kill_all();
                    cg.remove();
                }
                let detail = match &e {
                    crate::sandbox::os::SpawnError::Child { stage, source }
                        if *stage == crate::sandbox::os::spawn::Stage::Exec =>
                    {
                        format!(
                            "cannot execute {}: {source}",
                            accepted.plan.program.display()
                        )
                    }
                    _ => format!("cannot start the job: {e}"),
                };
                self.fail_before_start(
                    &accepted,
                    detail,
                    Some(prepared.report),
                    JobEnd::StartFailed,
                );
                return;
            }
        };

        let slot = self.next_slot;
        self.next_slot += 1;
        let registry = self.poll.registry();
        let register = |fd: i32, kind: usize| {
            registry.register(&mut SourceFd(&fd), token(slot, kind), Interest::READABLE)
        };
        let registered = register(prepared.stdout.as_raw_fd(), STDOUT)
            .and_then(|()| register(prepared.stderr.as_raw_fd(), STDERR))
            .and_then(|()| register(spawned.pidfd.as_raw_fd(), PIDFD));
        if let Err(e) = registered {
            self.shared
                .warn(format!("cannot watch job {}: {e}", accepted.id));
        }
        let now = Instant::now();
        let started_at = timestamp_now();
        let Accepted { id, plugin, plan } = accepted;
        *self.running_per_plugin.entry(plugin.clone()).or_default() += 1;
        {
            let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues
                .entry(plugin.clone())
                .or_insert_with(super::default_queue)
                .set_bounds(
                    plan.output.max_queued_events.value as usize,
                    plan.output.max_queued_bytes.value as usize,
                );
        }
        {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = jobs.records.get_mut(&id) {
                record.status = JobStatus::Running {
                    started_at: started_at.clone(),
                    percent: None,
                };
                record.enforcement = Some(prepared.report.clone());
            }
        }
        self.emit(
            &plugin,
            JobEvent::JobStarted {
                job_id: id.clone(),
                data: JobStartedData {
                    pid: Some(spawned.pid as u32),
                    started_at,
                },
            },
        );
        self.system_line(&plugin, &id, prepared.report.summary_line());
        for note in &plan.notes {
            self.system_line(&plugin, &id, format!("jobwarden: {note}"));
        }
        if !plan.env_dropped.is_empty() {
            let names: Vec<String> = plan
                .env_dropped
                .iter()
                .map(|d| format!("{} from {} ({})", d.name, d.origin, d.rule))
                .collect();
            self.system_line(
                &plugin,
                &id,
                format!("jobwarden: variables not passed: {}", names.join(", ")),
            );
        }
        let output = JobOutput::new(
            id.clone(),
            &plan.output,
            ProgressTracker::new(&plan.progress.patterns),
        );
        let deadline = now + plan.timeout.value;
        self.jobs.insert(
            slot,
            Job {
                id,
                plugin,
                plan,
                pid: spawned.pid,
                pidfd: Some(spawned.pidfd),
                stdout: Some(File::from(prepared.stdout)),
                stderr: Some(File::from(prepared.stderr)),
                output,
                cgroup: prepared.cgroup,
                report: prepared.report,
                started: now,
                deadline,
                termination: None,
                exit: None,
                drain_until: None,
                known_pids: vec![spawned.pid],
                next_tree_scan: now + FALLBACK_SCAN,
                usage: Usage::default(),
            },
        );
    }

    // ---- I/O --------------------------------------------------------------

    fn service_ready(&mut self) {
        let tokens: Vec<Token> = self.ready.iter().copied().collect();
        for t in tokens {
            let slot = t.0 / 3;
            let kind = t.0 % 3;
            if !self.jobs.contains_key(&slot) {
                self.ready.remove(&t);
                continue;
            }
            match kind {
                PIDFD => {
                    self.ready.remove(&t);
                    self.reap_leader(slot);
                }
                _ => {
                    let stream = if kind == STDOUT {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    match self.read_pipe(slot, stream) {
                        PipeState::Drained => {
                            self.ready.remove(&t);
                        }
                        PipeState::Closed => {
                            self.ready.remove(&t);
                            self.close_pipe(slot, stream);
                        }
                        PipeState::MoreLater => {}
                    }
                }
            }
        }
    }

    fn read_pipe(&mut self, slot: usize, stream: Stream) -> PipeState {
        let Self {
            jobs, buf, batches, ..
        } = self;
        let job = jobs.get_mut(&slot).expect("checked by caller");
        let batch = batches.entry(job.plugin.clone()).or_default();
        let file = match stream {
            Stream::Stdout => job.stdout.as_mut(),
            Stream::Stderr => job.stderr.as_mut(),
        };
        let Some(file) = file else {
            return PipeState::Drained;
        };
        let mut read = 0;
        while read < READ_BUDGET {
            match file.read(buf) {
                Ok(0) => return PipeState::Closed,
                Ok(n) => {
                    read += n;
                    job.output.feed(stream, &buf[..n], batch);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return PipeState::Drained,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return PipeState::Closed,
            }
        }
        PipeState::MoreLater
    }

    fn close_pipe(&mut self, slot: usize, stream: Stream) {
        let Self {
            jobs,
            batches,
            poll,
            ..
        } = self;
        let Some(job) = jobs.get_mut(&slot) else {
            return;
        };
        let file = match stream {
            Stream::Stdout => job.stdout.take(),
            Stream::Stderr => job.stderr.take(),
        };
        if let Some(file) = file {
            let _ = poll.registry().deregister(&mut SourceFd(&file.as_raw_fd()));
            let batch = batches.entry(job.plugin.clone()).or_default();
            job.output.finish(stream, batch);
        }
    }

    // ---- exit, termination, cleanup ------------------------------------------

    fn reap_leader(&mut self, slot: usize) {
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        if job.exit.is_some() {
            return;
        }
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value for wait4 to overwrite.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with WNOHANG; outputs are locals.
        let ret = unsafe { libc::wait4(job.pid, &mut status, libc::WNOHANG, &mut rusage) };
        let status = match ret {
            0 => return, // not exited yet: a spurious wake-up
            r if r == job.pid => Some(status),
            _ => None, // ECHILD: someone else in this process reaped it
        };
        job.exit = Some(Exit {
            status,
            rusage,
            elapsed: job.started.elapsed(),
        });
        if let Some(pidfd) = job.pidfd.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&pidfd.as_raw_fd()));
        }
        // The job is over when its first process is: nothing it started
        // may outlive it.
        let leftovers = self.kill_tree(slot);
        let now = Instant::now();
        self.orphan_candidates
            .extend(leftovers.into_iter().map(|pid| (pid, now)));
        if let Some(job) = self.jobs.get_mut(&slot) {
            job.drain_until = Some(now + DRAIN_AFTER_EXIT);
        }
    }

    /// SIGKILLs everything left of the job's tree; returns the pids killed.
    fn kill_tree(&mut self, slot: usize) -> Vec<i32> {
        let Some(job) = self.jobs.get_mut(&slot) else {
            return Vec::new();
        };
        match &job.cgroup {
            Some(cg) if cg.tracks_members() => {
                let members = cg.members();
                if !members.is_empty() {
                    cg.kill_all();
                }
                members
            }
            _ => {
                // SAFETY: kill(2) of the job's own process group.
                unsafe { libc::kill(-job.pid, libc::SIGKILL) };
                let members = procs::tree_members(job.pid, &job.known_pids);
                for pid in &members {
                    // SAFETY: kill(2) of a process found in the job's tree.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                job.known_pids.extend(members.iter().copied());
                self.fallback_ids.push_back(job.pid);
                self.fallback_ids.extend(members.iter().copied());
                while self.fallback_ids.len() > 4096 {
                    self.fallback_ids.pop_front();
                }
                self.orphan_scan_due = Some(Instant::now() + Duration::from_millis(20));
                members
            }
        }
    }

    fn terminate(&mut self, slot: usize, reason: String, timed_out: bool) {
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        if job.exit.is_some() || job.termination.is_some() {
            return;
        }
        let grace = job.plan.limits.kill_grace.value;
        job.termination = Some(Termination {
            reason,
            timed_out,
            kill_at: Instant::now() + grace,
            killed: false,
        });
        if grace.is_zero() {
            self.force_kill(slot);
        } else {
            signal_tree(job.pid, job.cgroup.as_ref(), libc::SIGTERM);
            if job.cgroup.is_none() {
                for pid in procs::tree_members(job.pid, &job.known_pids) {
                    // SAFETY: kill(2) of a process found in the job's tree.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
    }

    fn force_kill(&mut self, slot: usize) {
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        if let Some(t) = job.termination.as_mut() {
            t.killed = true;
        }
        signal_tree(job.pid, job.cgroup.as_ref(), libc::SIGKILL);
        self.kill_tree(slot);
    }

    fn check_timers(&mut self) {
        let now = Instant::now();
        let slots: Vec<usize> = self.jobs.keys().copied().collect();
        for slot in slots {
            let Some(job) = self.jobs.get_mut(&slot) else {
                continue;
            };
            if job.exit.is_none() {
                match &job.termination {
                    None if now >= job.deadline => {
                        let reason =
                            format!("timeout after {}", format_duration(job.plan.timeout.value));
                        self.terminate(slot, reason, true);
                    }
                    Some(t) if !t.killed && now >= t.kill_at => self.force_kill(slot),
                    _ => {}
                }
                if let Some(job) = self.jobs.get_mut(&slot)
                    && job.cgroup.as_ref().is_none_or(|c| !c.tracks_members())
                    && now >= job.next_tree_scan
                {
                    job.next_tree_scan = now + FALLBACK_SCAN;
                    let members = procs::tree_members(job.pid, &job.known_pids);
                    for pid in members {
                        if !job.known_pids.contains(&pid) {
                            job.known_pids.push(pid);
                        }
                    }
                }
            }
            let Some(job) = self.jobs.get_mut(&slot) else {
                continue;
            };
            if let Some(at) = job.drain_until
                && now >= at
                && (job.stdout.is_some() || job.stderr.is_some())
            {
                let (plugin, id) = (job.plugin.clone(), job.id.clone());
                self.system_line(
                    &plugin,
                    &id,
                    "jobwarden: output pipes were still open after the job ended and its tree was killed; closed them".into(),
                );
                self.close_pipe(slot, Stream::Stdout);
                self.close_pipe(slot, Stream::Stderr);
            }
        }
        // Orphans of killed trees become our zombie children once their
        // parents have exited; reap those we know, then forget them.
        if !self.orphan_candidates.is_empty() && self.orphan_retry_at.is_some_and(|at| now >= at) {
            let marker = &self.cgroup_marker;
            self.orphan_candidates.retain(|(pid, since)| {
                // Only a zombie that died in one of this host's job cgroups:
                // never a reused pid, never another host's job.
                let ours = procs::stat(*pid).is_some_and(|s| s.state == b'Z')
                    && procs::cgroup_contains(*pid, marker);
                if ours && procs::reap(*pid) {
                    return false;
                }
                now.duration_since(*since) < Duration::from_secs(2)
            });
            self.orphan_retry_at =
                (!self.orphan_candidates.is_empty()).then(|| now + Duration::from_millis(25));
        }
    }

    fn finalize_finished(&mut self) {
        let done: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.exit.is_some() && j.stdout.is_none() && j.stderr.is_none())
            .map(|(s, _)| *s)
            .collect();
        for slot in done {
            if let Some(job) = self.jobs.remove(&slot) {
                self.finalize(job);
            }
        }
    }

    fn finalize(&mut self, mut job: Job) {
        let exit = job.exit.take().expect("finalize only jobs that exited");
        let oom_kills = job.cgroup.as_ref().map_or(0, JobCgroup::oom_kills);
        let peak = job
            .cgroup
            .as_ref()
            .and_then(JobCgroup::memory_peak)
            .unwrap_or(exit.rusage.ru_maxrss.max(0) as u64 * 1024);
        if let Some(cg) = &job.cgroup {
            if !cg.is_empty() {
                cg.kill_all();
            }
            let left = cg.remove();
            if !left.is_empty() {
                self.shared.warn(format!(
                    "cannot remove the cgroup(s) of {}: {}",
                    job.id,
                    left.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&job.plan.job_tmp)
            && e.kind() != ErrorKind::NotFound
        {
            self.shared
                .warn(format!("cannot remove {}: {e}", job.plan.job_tmp.display()));
        }

        let user = timeval(exit.rusage.ru_utime);
        let sys = timeval(exit.rusage.ru_stime);
        job.usage.elapsed = exit.elapsed;
        job.usage.cpu_time = user + sys;
        job.usage.peak_rss_bytes = job.usage.peak_rss_bytes.max(peak);
        let summary = format!(
            "jobwarden: finished in {:.1} s · cpu {:.1} s user / {:.1} s sys · peak rss {}",
            exit.elapsed.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
            format_size(job.usage.peak_rss_bytes)
        );
        let (plugin, id) = (job.plugin.clone(), job.id.clone());
        self.system_line(&plugin, &id, summary);

        let now = timestamp_now();
        let end = match (&job.termination, exit.status) {
            (Some(t), _) if t.timed_out => JobEnd::TimedOut,
            (Some(_), _) => JobEnd::Cancelled,
            (None, Some(s)) if libc::WIFEXITED(s) => JobEnd::Exited {
                code: libc::WEXITSTATUS(s),
            },
            (None, Some(s)) => JobEnd::Signaled {
                signal: libc::WTERMSIG(s),
            },
            (None, None) => JobEnd::StartFailed,
        };
        let (event, status, outcome, code, signal, detail) = match (&job.termination, exit.status) {
            (Some(t), status) => {
                let reason = t.reason.clone();
                (
                    JobEvent::JobCancelled {
                        job_id: id.clone(),
                        data: JobCancelledData {
                            reason: reason.clone(),
                            cancelled_at: now,
                        },
                    },
                    JobStatus::Cancelled { reason: reason.clone() },
                    "cancelled",
                    status.filter(|s| libc::WIFEXITED(*s)).map(|s| libc::WEXITSTATUS(s)),
                    status.filter(|s| libc::WIFSIGNALED(*s)).map(|s| libc::WTERMSIG(s)),
                    Some(reason),
                )
            }
            (None, Some(s)) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => (
                JobEvent::JobCompleted {
                    job_id: id.clone(),
                    data: JobCompletedData {
                        exit_code: 0,
                        completed_at: now,
                        output_tail: job.output.tail(),
                    },
                },
                JobStatus::Completed { exit_code: 0 },
                "completed",
                Some(0),
                None,
                None,
            ),
            (None, Some(s)) if libc::WIFEXITED(s) => {
                let code = libc::WEXITSTATUS(s);
                let mut error = format!("exited with status {code}");
                if oom_kills > 0 {
                    error.push_str(&format!(
                        "; the memory limit ({}) was hit {oom_kills} time(s) inside the job",
                        limit_text(&job.plan.limits.memory.value, true)
                    ));
                }
                failed(&id, Some(code), error, now, None)
            }
            (None, Some(s)) => {
                let sig = libc::WTERMSIG(s);
                let error = describe_signal(sig, &job, oom_kills, user + sys);
                failed(&id, None, error, now, Some(sig))
            }
            (None, None) => failed(
                &id,
                None,
                "the job's exit status was collected by another part of this program (a waitpid(-1) outside jobwarden)".into(),
                now,
                None,
            ),
        };
        self.emit(&plugin, event);
        {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = jobs.records.get_mut(&id) {
                record.usage = Some(job.usage.clone());
                record.end = Some(end);
            }
            jobs.finish(&id, status);
        }
        self.audit_end(
            &plugin,
            &id,
            &job.plan,
            outcome,
            code,
            signal,
            detail,
            exit.elapsed,
            Some(job.report.summary_line()),
        );
        if let Some(n) = self.running_per_plugin.get_mut(&plugin) {
            *n = n.saturating_sub(1);
        }
        // Killed trees leave zombies behind only if the job ever had more
        // than one process; scan then.
        if ever_forked(&job) {
            self.orphan_scan_due.get_or_insert(Instant::now());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_end(
        &self,
        plugin: &str,
        id: &str,
        plan: &Plan,
        outcome: &'static str,
        exit_code: Option<i32>,
        signal: Option<i32>,
        detail: Option<String>,
        elapsed: Duration,
        enforcement: Option<String>,
    ) {
        let Some(audit) = &self.shared.audit else {
            return;
        };
        let record = EndRecord {
            record: "job_end",
            time: timestamp_now(),
            plugin,
            job_id: id,
            label: &plan.label,
            binary: &plan.binary,
            program: plan.program.display().to_string(),
            args: &plan.args,
            cwd: plan.cwd.display().to_string(),
            env_names: plan.env.keys().map(String::as_str).collect(),
            outcome,
            exit_code,
            signal,
            detail,
            duration_secs: elapsed.as_secs_f64(),
            enforcement,
            policy_sha256: &plan.policy_sha256,
        };
        if let Err(e) = audit.end(&record) {
            self.shared.warn(format!("cannot write the audit log: {e}"));
        }
    }

    fn reap_orphans_if_due(&mut self) {
        if self.orphan_scan_due.is_some_and(|at| Instant::now() >= at) {
            self.orphan_scan_due = None;
            self.scan_zombies();
        }
    }

    /// Reaps zombie children that came from our jobs, never others.
    fn scan_zombies(&mut self) {
        let leaders: HashSet<i32> = self
            .jobs
            .values()
            .filter(|j| j.exit.is_none())
            .map(|j| j.pid)
            .collect();
        for zombie in procs::zombie_children(self.host_pid) {
            if leaders.contains(&zombie.pid) {
                continue;
            }
            let ours = procs::cgroup_contains(zombie.pid, &self.cgroup_marker)
                || self.fallback_ids.contains(&zombie.pid)
                || self.fallback_ids.contains(&zombie.session)
                || self.fallback_ids.contains(&zombie.pgrp);
            if ours {
                procs::reap(zombie.pid);
            }
        }
    }

    /// Removes job cgroups left by hosts that died without cleaning up.
    fn clean_stale_cgroups(&self) {
        let support = &self.shared.support.cgroups;
        for dir in [&support.v2, &support.v1_pids, &support.v1_memory]
            .into_iter()
            .flatten()
        {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some(rest) = name.strip_prefix("jobwarden-") else {
                    continue;
                };
                let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                    continue;
                };
                if pid == self.host_pid || std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    continue;
                }
                let path = entry.path();
                if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
                    for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill(2) of a process left in a stale job cgroup of ours.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
                let _ = std::fs::remove_dir(&path);
            }
        }
    }
}

enum PipeState {
    Drained,
    Closed,
    MoreLater,
}

/// Whether the job ever had more than one process (unknown counts as yes).
fn ever_forked(job: &Job) -> bool {
    job.known_pids.len() > 1
        || job
            .cgroup
            .as_ref()
            .and_then(JobCgroup::peak_processes)
            .is_none_or(|n| n > 1)
}

fn failed(
    id: &JobId,
    code: Option<i32>,
    error: String,
    now: String,
    signal: Option<i32>,
) -> (
    JobEvent,
    JobStatus,
    &'static str,
    Option<i32>,
    Option<i32>,
    Option<String>,
) {
    (
        JobEvent::JobFailed {
            job_id: id.clone(),
            data: JobFailedData {
                exit_code: code,
                error: error.clone(),
                failed_at: now,
            },
        },
        JobStatus::Failed {
            exit_code: code,
            error: error.clone(),
        },
        "failed",
        code,
        signal,
        Some(error),
    )
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

fn limit_text(limit: &Limit, size: bool) -> String {
    match limit {
        Limit::Unlimited => "unlimited".into(),
        Limit::Value(n) if size => format_size(*n),
        Limit::Value(n) => n.to_string(),
    }
}

/// Why a job died by `signal`, naming the limit when one explains it.
fn describe_signal(signal: i32, job: &Job, oom_kills: u64, cpu: Duration) -> String {
    let limits = &job.plan.limits;
    match signal {
        libc::SIGXCPU => format!(
            "killed by the CPU time limit ({} s, `{}`)",
            limit_text(&limits.cpu_secs.value, false),
            limits.cpu_secs.key
        ),
        libc::SIGXFSZ => format!(
            "killed by the file size limit ({}, `{}`)",
            limit_text(&limits.file_size.value, true),
            limits.file_size.key
        ),
        libc::SIGKILL if oom_kills > 0 => format!(
            "killed by the memory limit ({}, `{}`)",
            limit_text(&limits.memory.value, true),
            limits.memory.key
        ),
        libc::SIGKILL if matches!(limits.cpu_secs.value, Limit::Value(n) if cpu.as_secs() >= n) => {
            format!(
                "killed by the CPU time limit ({} s, `{}`)",
                limit_text(&limits.cpu_secs.value, false),
                limits.cpu_secs.key
            )
        }
        _ => format!("killed by signal {signal} ({})", signal_name(signal)),
    }
}

/// The conventional name of a signal.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}
