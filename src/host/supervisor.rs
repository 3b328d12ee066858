//! The host thread: starts jobs, reads all their output through one poller,
//! enforces timeouts, escalates cancels, and hands ended jobs to `finish.rs`.
//!
//! One thread does all of this, so per-job event order is simply program
//! order here: `JobStarted`, the enforcement line, output in the order it
//! was read, then — once the first process has exited and both pipes are
//! closed — the exit summary and exactly one terminal event. It is also the
//! one long-lived thread that spawns, which the parent-death signal needs.

use super::sampler::Sampler;
use super::{Accepted, Command, JobEnd, Shared, Usage};
use crate::contract::JobProgressData;
use crate::contract::{
    JobCancelledData, JobEvent, JobFailedData, JobId, JobLogLineData, JobStartedData, JobStatus,
    STREAM_SYSTEM, timestamp_now,
};
use crate::decision::{Plan, format_duration};
use crate::output::progress::ProgressTracker;
use crate::output::{JobOutput, Stream};
use crate::sandbox::EnforcementReport;
use crate::sandbox::ExitInfo;
use crate::sandbox::os::{
    self, ExitWatch, HashCache, HostProcess, Pipe, PrepareError, ProcessId, Reaper, SpawnError,
    Spawner, Tree, forget_leader, register_leader,
};
use mio::{Events, Poll, Token};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(super) const WAKER: Token = Token(usize::MAX);

/// Bytes read per pipe before other pipes get a turn.
const READ_BUDGET: usize = 1 << 20;
/// Size of the shared read buffer: one read empties a full stdout pipe.
const READ_CHUNK: usize = 256 * 1024;
/// How long output may keep flowing after the first process exited and the
/// rest of the tree was killed, before the pipes are closed anyway.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Counts hosts created in this process: one process may run several.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

pub(super) fn run(shared: Arc<Shared>, poll: Poll) {
    let spawner = match Spawner::new() {
        Ok(s) => Some(s),
        Err(e) => {
            shared.warn(format!("cannot set up spawning; every job will fail: {e}"));
            None
        }
    };
    let host = HostProcess::current();
    let instance = INSTANCES.fetch_add(1, Ordering::Relaxed) + 1;
    let external_ready = os::ReadyList::new(shared.waker.clone());
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
        host,
        instance,
        reaper: Reaper::new(host, format!("/jobwarden-{}-{instance}-", host.pid)),
        sampler: Sampler::new(),
        epoch: Instant::now(),
        external_ready,
        reports: VecDeque::new(),
    };
    os::clean_stale(&supervisor.shared.support, host);
    supervisor.run();
}

pub(super) struct Termination {
    pub reason: String,
    pub timed_out: bool,
    pub kill_at: Instant,
    pub killed: bool,
}

pub(super) struct Exit {
    pub info: ExitInfo,
    pub elapsed: Duration,
}

pub(super) struct Job {
    pub id: JobId,
    pub plugin: Arc<str>,
    pub plan: Plan,
    pub pid: i32,
    /// Watches the first process's exit; `None` once reaped.
    pub exit_watch: Option<ExitWatch>,
    /// When to look for the exit without an event (platforms without pidfd).
    pub next_exit_poll: Option<Instant>,
    pub stdout: Option<Pipe>,
    pub stderr: Option<Pipe>,
    pub output: JobOutput,
    pub tree: Tree,
    pub report: EnforcementReport,
    pub started: Instant,
    pub started_at: String,
    pub deadline: Instant,
    pub next_sample: Instant,
    /// Members at the last sample, to forget them in the sampler later.
    pub sampled_pids: Vec<i32>,
    pub termination: Option<Termination>,
    pub exit: Option<Exit>,
    pub drain_until: Option<Instant>,
    pub usage: Usage,
}

pub(super) struct Supervisor {
    pub shared: Arc<Shared>,
    poll: Poll,
    spawner: Option<Spawner>,
    hashes: HashCache,
    pub jobs: HashMap<usize, Job>,
    pending: HashMap<Arc<str>, VecDeque<(Accepted, usize)>>,
    pending_order: VecDeque<Arc<str>>,
    pub running_per_plugin: HashMap<Arc<str>, usize>,
    next_slot: usize,
    ready: HashSet<Token>,
    buf: Vec<u8>,
    batches: HashMap<Arc<str>, Vec<JobEvent>>,
    shutting_down: bool,
    pub host: HostProcess,
    instance: u64,
    pub reaper: Reaper,
    pub sampler: Sampler,
    /// Sampling deadlines fall on a grid counted from here, so all jobs with
    /// the same interval are sampled in one wake-up.
    epoch: Instant,
    /// Tokens made ready outside the poller (pipes read by helper threads
    /// on platforms without pollable pipes).
    external_ready: os::ReadyList,
    /// See [`share`].
    reports: VecDeque<Arc<EnforcementReport>>,
}

/// Recent distinct reports: jobs of one binary get equal reports, so the
/// job table keeps one copy per kind of job instead of one per job.
const SHARED_REPORTS: usize = 16;

/// The shared copy of `report`, adding it to `cache` if new.
fn share(
    cache: &mut VecDeque<Arc<EnforcementReport>>,
    report: EnforcementReport,
) -> Arc<EnforcementReport> {
    if let Some(shared) = cache.iter().find(|r| ***r == report) {
        return shared.clone();
    }
    let shared = Arc::new(report);
    if cache.len() >= SHARED_REPORTS {
        cache.pop_front();
    }
    cache.push_back(shared.clone());
    shared
}

/// The first point after `now` on the grid `epoch + k × interval`.
fn next_on_grid(epoch: Instant, now: Instant, interval: Duration) -> Instant {
    let interval = interval.max(Duration::from_millis(1));
    let elapsed = now.saturating_duration_since(epoch);
    let k = elapsed.as_nanos() / interval.as_nanos() + 1;
    epoch + interval * k as u32
}

fn token(slot: usize, kind: usize) -> Token {
    Token(slot * 3 + kind)
}

const STDOUT: usize = 0;
const STDERR: usize = 1;
const PIDFD: usize = 2;

enum PipeState {
    Drained,
    Closed,
    MoreLater,
}

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
            self.external_ready.drain_into(&mut self.ready);
            self.service_ready();
            self.handle_commands();
            self.check_timers();
            self.sample_and_track();
            self.finalize_finished();
            // After finalising: a finished job frees a slot for a pending one.
            self.start_pending();
            if self
                .reaper
                .next_due()
                .is_some_and(|at| Instant::now() >= at)
            {
                let leaders = self.live_leaders();
                self.reaper.run(&leaders);
            }
            self.flush();
            if self.shutting_down
                && self.jobs.is_empty()
                && self.pending.values().all(VecDeque::is_empty)
            {
                break;
            }
        }
        if self.reaper.ever_needed {
            let leaders = self.live_leaders();
            self.reaper.scan(&leaders);
        }
        self.flush();
    }

    /// Pids of job leaders not yet reaped: never taken by the zombie scan.
    pub fn live_leaders(&self) -> HashSet<i32> {
        self.jobs
            .values()
            .filter(|j| j.exit.is_none())
            .map(|j| j.pid)
            .collect()
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut next: Option<Instant> = self.reaper.next_due();
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
                if !job.tree.exact() {
                    consider(job.tree.next_scan);
                }
                if let Some(at) = job.next_exit_poll {
                    consider(at);
                }
                consider(job.next_sample);
            }
            if let Some(at) = job.drain_until {
                consider(at);
            }
        }
        next
    }

    pub fn emit(&mut self, plugin: &Arc<str>, event: JobEvent) {
        self.batches.entry(plugin.clone()).or_default().push(event);
    }

    pub fn system_line(&mut self, plugin: &Arc<str>, id: &JobId, line: String) {
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
        // The batches keep their buffers between rounds.
        for (plugin, events) in &mut self.batches {
            self.shared.push_events(plugin, events.drain(..));
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
                    if self.shutting_down {
                        self.cancel_pending(
                            *accepted,
                            "host shut down before the job started".into(),
                        );
                        continue;
                    }
                    let max = self
                        .shared
                        .policy
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .plugin_rule(&accepted.plugin)
                        .map_or(1, |p| p.max_concurrent.value as usize)
                        .max(1);
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
                record.enforcement = report.map(|r| share(&mut self.reports, r));
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
            super::finish::Outcome::failed(None, None, error),
            Duration::ZERO,
            None,
        );
    }

    fn start(&mut self, accepted: Accepted) {
        // Unique per host instance: one process may run several hosts.
        let name = format!(
            "jobwarden-{}-{}-{}",
            self.host.pid, self.instance, accepted.id
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
                let error = format!("cannot start the job: {e}");
                self.fail_before_start(&accepted, error, None, JobEnd::StartFailed);
                return;
            }
        };
        let spawned = match self.spawner.as_mut() {
            Some(spawner) => spawner.spawn(&prepared.spec),
            None => Err(SpawnError::Unavailable),
        };
        // Close our copies of the child's ends (pipes, ruleset, cgroup files)
        // now, or the pipes would never reach end-of-file.
        drop(prepared.spec);
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                prepared.containment.abandon();
                let _ = std::fs::remove_dir_all(&accepted.plan.job_tmp);
                let error = match e.exec_failure() {
                    Some(source) => format!(
                        "cannot execute {}: {source}",
                        accepted.plan.program.display()
                    ),
                    None => format!("cannot start the job: {e}"),
                };
                self.fail_before_start(
                    &accepted,
                    error,
                    Some(prepared.report),
                    JobEnd::StartFailed,
                );
                return;
            }
        };

        register_leader(spawned.pid);
        let slot = self.next_slot;
        self.next_slot += 1;
        let registry = self.poll.registry();
        let (mut stdout, mut stderr, mut exit_watch) =
            (prepared.stdout, prepared.stderr, spawned.exit);
        let registered = stdout
            .register(registry, token(slot, STDOUT), &self.external_ready)
            .and_then(|()| stderr.register(registry, token(slot, STDERR), &self.external_ready))
            .and_then(|()| exit_watch.register(registry, token(slot, PIDFD), &self.external_ready));
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
                record.enforcement = Some(share(&mut self.reports, prepared.report.clone()));
            }
        }
        self.emit(
            &plugin,
            JobEvent::JobStarted {
                job_id: id.clone(),
                data: JobStartedData {
                    pid: Some(spawned.pid as u32),
                    started_at: started_at.clone(),
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
        let plan_interval = plan.progress.interval.value;
        self.jobs.insert(
            slot,
            Job {
                id,
                plugin,
                plan,
                pid: spawned.pid,
                next_exit_poll: exit_watch.poll_every().map(|every| now + every),
                exit_watch: Some(exit_watch),
                stdout: Some(stdout),
                stderr: Some(stderr),
                output,
                tree: Tree::new(spawned.pid, prepared.containment),
                report: prepared.report,
                started: now,
                started_at,
                deadline,
                next_sample: next_on_grid(self.epoch, now, plan_interval),
                sampled_pids: Vec::new(),
                termination: None,
                exit: None,
                drain_until: None,
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
            if kind == PIDFD {
                self.ready.remove(&t);
                self.reap_leader(slot);
                continue;
            }
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
        if let Some(mut file) = file {
            file.deregister(poll.registry());
            let batch = batches.entry(job.plugin.clone()).or_default();
            job.output.finish(stream, batch);
        }
    }

    // ---- exit and termination ----------------------------------------------

    fn reap_leader(&mut self, slot: usize) {
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        if job.exit.is_some() {
            return;
        }
        let Some(info) = job.exit_watch.as_mut().and_then(ExitWatch::try_wait) else {
            // Not exited yet: a spurious wake-up, or a poll that found it running.
            if let Some(every) = job.exit_watch.as_ref().and_then(ExitWatch::poll_every) {
                job.next_exit_poll = Some(Instant::now() + every);
            }
            return;
        };
        forget_leader(job.pid);
        job.exit = Some(Exit {
            info,
            elapsed: job.started.elapsed(),
        });
        job.next_exit_poll = None;
        if let Some(mut watch) = job.exit_watch.take() {
            watch.deregister(self.poll.registry());
        }
        // The job is over when its first process is: nothing it started
        // may outlive it.
        let killed = self.kill_tree(slot);
        self.reaper.watch(killed);
        if let Some(job) = self.jobs.get_mut(&slot) {
            job.drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
        }
    }

    /// SIGKILLs everything left of the job's tree; returns what was killed.
    fn kill_tree(&mut self, slot: usize) -> Vec<ProcessId> {
        let leaders = self.live_leaders();
        let host = self.host;
        match self.jobs.get_mut(&slot) {
            Some(job) => job.tree.kill_all(host, &leaders),
            None => Vec::new(),
        }
    }

    fn terminate(&mut self, slot: usize, reason: String, timed_out: bool) {
        let leaders = self.live_leaders();
        let host = self.host;
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
        // Without a polite stop on this platform, the grace period is moot.
        if grace.is_zero() || !job.tree.terminate(host, &leaders) {
            self.force_kill(slot);
        }
    }

    fn force_kill(&mut self, slot: usize) {
        if let Some(t) = self
            .jobs
            .get_mut(&slot)
            .and_then(|j| j.termination.as_mut())
        {
            t.killed = true;
        }
        let killed = self.kill_tree(slot);
        self.reaper.watch(killed);
    }

    fn check_timers(&mut self) {
        let now = Instant::now();
        let slots: Vec<usize> = self.jobs.keys().copied().collect();
        for slot in slots {
            let Some(job) = self.jobs.get(&slot) else {
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
                if self
                    .jobs
                    .get(&slot)
                    .and_then(|j| j.next_exit_poll)
                    .is_some_and(|at| now >= at)
                {
                    self.reap_leader(slot);
                }
            }
            let Some(job) = self.jobs.get(&slot) else {
                continue;
            };
            if job.drain_until.is_some_and(|at| now >= at)
                && (job.stdout.is_some() || job.stderr.is_some())
            {
                let (plugin, id) = (job.plugin.clone(), job.id.clone());
                self.system_line(
                    &plugin,
                    &id,
                    "jobwarden: output pipes were still open after the job ended and its tree was killed; closed them"
                        .into(),
                );
                self.close_pipe(slot, Stream::Stdout);
                self.close_pipe(slot, Stream::Stderr);
            }
        }
    }

    /// Tracks trees without cgroups and samples jobs whose interval is due,
    /// sharing one `/proc` scan and one sysinfo refresh among them.
    fn sample_and_track(&mut self) {
        let now = Instant::now();
        let running = |j: &Job| j.exit.is_none();
        let track_due: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| running(j) && !j.tree.exact() && now >= j.tree.next_scan)
            .map(|(s, _)| *s)
            .collect();
        let sample_due: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| running(j) && now >= j.next_sample)
            .map(|(s, _)| *s)
            .collect();
        if track_due.is_empty() && sample_due.is_empty() {
            return;
        }
        let needs_snapshot = track_due
            .iter()
            .chain(&sample_due)
            .any(|s| !self.jobs[s].tree.exact());
        let snapshot = if needs_snapshot {
            os::snapshot()
        } else {
            os::Snapshot::default()
        };
        let leaders = self.live_leaders();
        let host = self.host;
        for slot in &track_due {
            if let Some(job) = self.jobs.get_mut(slot) {
                job.tree.track(&snapshot, host, &leaders);
            }
        }
        let mut trees = Vec::new();
        for slot in &sample_due {
            let Some(job) = self.jobs.get_mut(slot) else {
                continue;
            };
            job.next_sample = next_on_grid(self.epoch, now, job.plan.progress.interval.value);
            if job.plan.progress.sample.value {
                let members = job.tree.member_pids(&snapshot, host, &leaders);
                job.sampled_pids.clone_from(&members);
                trees.push((*slot, members));
            }
        }
        let samples = self.sampler.sample(&trees);
        let mut updates = Vec::new();
        for slot in sample_due {
            let Some(job) = self.jobs.get_mut(&slot) else {
                continue;
            };
            let sample = samples.get(&slot).copied();
            if let Some(sample) = sample {
                job.usage.elapsed = job.started.elapsed();
                job.usage.cpu_percent = sample.cpu_percent;
                job.usage.rss_bytes = sample.rss_bytes;
                job.usage.peak_rss_bytes = job.usage.peak_rss_bytes.max(sample.rss_bytes);
                job.usage.processes = sample.processes;
                job.usage.cpu_time = job.usage.cpu_time.max(sample.cpu_time);
            }
            // One event per interval: the latest declared percent and step,
            // or the resource use when the job declared no step.
            let declared = job.output.progress.take_update();
            if declared.is_none() && sample.is_none() {
                continue;
            }
            let percent = job.output.progress.percent;
            let step = job
                .output
                .progress
                .step
                .clone()
                .or_else(|| sample.map(|s| s.describe()));
            let (plugin, id) = (job.plugin.clone(), job.id.clone());
            updates.push((
                id.clone(),
                job.usage.clone(),
                job.started_at.clone(),
                percent,
            ));
            self.emit(
                &plugin,
                JobEvent::JobProgress {
                    job_id: id,
                    data: JobProgressData { percent, step },
                },
            );
        }
        if !updates.is_empty() {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            for (id, usage, started_at, percent) in updates {
                if let Some(record) = jobs.records.get_mut(&id) {
                    record.usage = Some(usage);
                    if !record.status.is_finished() {
                        record.status = JobStatus::Running {
                            started_at,
                            percent,
                        };
                    }
                }
            }
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
}
