//! The host thread: starts jobs, reads all their output through one poller,
//! enforces timeouts, escalates cancels, samples progress, and ends jobs.
//!
//! One thread does all of this, so per-job event order is simply program
//! order here: `JobStarted`, the enforcement line, output in the order it
//! was read, then — once the first process has exited and both pipes are
//! closed — the exit summary and exactly one terminal event, whose content
//! [`conclude`] decides. It is also the one long-lived thread that spawns,
//! which the parent-death signal needs. Which job starts next is the
//! [`Scheduler`]'s business; reading pipes and tokens is `io.rs`'s.

use super::JobEnd;
use super::audit::EndRecord;
use super::conclude::{Ending, Stopped};
use super::io::{EventSink, JobToken, PipeState, QueueRoom, Source, wait_allowance};
use super::job::{DRAIN_AFTER_EXIT, Job};
use super::locks::lock;
use super::observation::JobObservation;
use super::sampler::{Sampler, next_on_grid};
use super::scheduler::Scheduler;
use super::shared::{Accepted, Command, Shared, default_queue};
use crate::contract::{JobEvent, JobId, JobStatus, timestamp_now};
use crate::decision::{Plan, format_duration};
use crate::output::Stream;
use crate::policy::WhenFull;
use crate::sandbox::{
    EnforcementReport, HashCache, HostProcess, PrepareError, ReadyList, Reaper, SpawnError, Spawner,
};
use mio::{Events, Poll, Token};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(super) const WAKER: Token = Token(usize::MAX);

/// Size of the shared read buffer: one read empties a full stdout pipe.
const READ_CHUNK: usize = 256 * 1024;
/// Recent distinct reports: jobs of one binary get equal reports, so the
/// job table keeps one copy per kind of job instead of one per job.
const SHARED_REPORTS: usize = 16;

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
    let external_ready = ReadyList::new(shared.waker.clone());
    crate::sandbox::clean_stale(&shared.support, host);
    let mut supervisor = Supervisor {
        shared,
        poll,
        spawner,
        hashes: HashCache::default(),
        jobs: HashMap::new(),
        scheduler: Scheduler::default(),
        next_slot: 0,
        ready: HashSet::new(),
        paused: HashSet::new(),
        buf: vec![0; READ_CHUNK],
        batches: HashMap::new(),
        shutting_down: false,
        host,
        instance,
        // Any job cgroup of this process: a job's cgroups may be spares
        // made before it (`jobwarden-PID-spare-N`), by a pool that hosts
        // sharing one support share. Leaders are never reaped here,
        // whichever host's: a member's zombie is safe to reap by any.
        reaper: Reaper::new(host, format!("/jobwarden-{}-", host.pid)),
        sampler: Sampler::new(),
        epoch: Instant::now(),
        external_ready,
        reports: VecDeque::new(),
    };
    supervisor.run();
}

struct Supervisor {
    shared: Arc<Shared>,
    poll: Poll,
    spawner: Option<Spawner>,
    hashes: HashCache,
    jobs: HashMap<usize, Job>,
    scheduler: Scheduler<Accepted>,
    next_slot: usize,
    ready: HashSet<Token>,
    /// Pipes of `wait` jobs left unread until their plugin drains.
    paused: HashSet<Token>,
    buf: Vec<u8>,
    batches: HashMap<Arc<str>, Vec<JobEvent>>,
    shutting_down: bool,
    host: HostProcess,
    instance: u64,
    reaper: Reaper,
    sampler: Sampler,
    /// Sampling deadlines fall on a grid counted from here, so all jobs with
    /// the same interval are sampled in one wake-up.
    epoch: Instant,
    /// Tokens made ready outside the poller (pipes read by helper threads
    /// on platforms without pollable pipes).
    external_ready: ReadyList,
    /// See [`share`].
    reports: VecDeque<Arc<EnforcementReport>>,
}

/// Queues a job's output into its plugin's queue (see `io.rs`).
struct QueueSink<'a> {
    shared: &'a Shared,
    plugin: &'a Arc<str>,
}

impl EventSink for QueueSink<'_> {
    fn queue(&mut self, batch: &mut Vec<JobEvent>, wait: bool) -> QueueRoom {
        self.shared.queue_output(self.plugin, batch, wait)
    }
}

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
            self.resume_drained();
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
            if self.shutting_down && self.jobs.is_empty() && self.scheduler.is_idle() {
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
    fn live_leaders(&self) -> HashSet<i32> {
        self.jobs
            .values()
            .filter(|j| j.running())
            .map(|j| j.pid)
            .collect()
    }

    fn next_timer(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter_map(Job::next_timer)
            .chain(self.reaper.next_due())
            .min()
    }

    fn emit(&mut self, plugin: &Arc<str>, event: JobEvent) {
        self.batches.entry(plugin.clone()).or_default().push(event);
    }

    fn flush(&mut self) {
        // The batches keep their buffers between rounds.
        for (plugin, events) in &mut self.batches {
            self.shared.push_events(plugin, events.drain(..));
        }
    }

    // ---- commands and starting -------------------------------------------

    fn handle_commands(&mut self) {
        let commands = std::mem::take(&mut *lock(&self.shared.commands));
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
                        .policy()
                        .plugin_rule(&accepted.plugin)
                        .map_or(1, |p| p.max_concurrent.value as usize);
                    let plugin = accepted.plugin.clone();
                    self.scheduler.push(&plugin, *accepted, max);
                }
                Command::Cancel { id, reason } => self.cancel(&id, reason),
                Command::CloseOutput { id, stream } => {
                    let found = self.jobs.iter().find(|(_, j)| j.id == id).map(|(s, _)| *s);
                    if let Some(slot) = found {
                        let source = match stream {
                            Stream::Stdout => Source::Stdout,
                            Stream::Stderr => Source::Stderr,
                        };
                        let token = JobToken::new(slot, source).token();
                        self.ready.remove(&token);
                        self.paused.remove(&token);
                        self.close_pipe(slot, stream);
                    }
                }
                Command::Shutdown => {
                    self.shutting_down = true;
                    for accepted in self.scheduler.drain_pending() {
                        self.cancel_pending(
                            accepted,
                            "host shut down before the job started".into(),
                        );
                    }
                    self.stop_waiting();
                    let slots: Vec<usize> = self.jobs.keys().copied().collect();
                    for slot in slots {
                        self.terminate(slot, "host shut down".into(), false);
                    }
                }
            }
        }
    }

    fn cancel(&mut self, id: &JobId, reason: String) {
        if let Some(accepted) = self.scheduler.remove_pending(|a| &a.id == id) {
            self.cancel_pending(accepted, reason);
            return;
        }
        if let Some(slot) = self.jobs.iter().find(|(_, j)| &j.id == id).map(|(s, _)| *s) {
            self.terminate(slot, reason, false);
        }
    }

    fn cancel_pending(&mut self, accepted: Accepted, reason: String) {
        let ending = Ending::before_start(JobEnd::Cancelled, reason);
        let event = ending.event(&accepted.id, timestamp_now(), None);
        // What was emitted before stays ahead of the terminal event.
        self.flush();
        self.shared.publish_end(&accepted.plugin, [event], |jobs| {
            jobs.finish(&accepted.id, &ending)
        });
    }

    fn start_pending(&mut self) {
        for (_, accepted) in self.scheduler.startable() {
            self.start(accepted);
        }
    }

    /// Ends a job that never ran: its one event, its record, its audit.
    fn fail_before_start(
        &mut self,
        accepted: &Accepted,
        ending: Ending,
        report: Option<EnforcementReport>,
    ) {
        self.scheduler.finished(&accepted.plugin);
        let event = ending.event(&accepted.id, timestamp_now(), None);
        let enforcement = report.map(|r| share(&mut self.reports, r));
        self.flush();
        self.shared.publish_end(&accepted.plugin, [event], |jobs| {
            if let Some(record) = jobs.records.get_mut(&accepted.id) {
                record.enforcement = enforcement;
            }
            jobs.finish(&accepted.id, &ending);
        });
        self.audit_end(
            &accepted.plugin,
            &accepted.id,
            &accepted.plan,
            &ending,
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
        let prepared = match crate::sandbox::prepare(
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
                let ending = Ending::before_start(end, denial.to_string());
                self.fail_before_start(&accepted, ending, None);
                return;
            }
            Err(PrepareError::EnforcementRequired { reason, report }) => {
                let ending = Ending::before_start(JobEnd::EnforcementUnavailable, reason);
                self.fail_before_start(&accepted, ending, Some(*report));
                return;
            }
            Err(e) => {
                let ending =
                    Ending::before_start(JobEnd::StartFailed, format!("cannot start the job: {e}"));
                self.fail_before_start(&accepted, ending, None);
                return;
            }
        };
        let (spec, report) = prepared.into_parts();
        let spawned = match self.spawner.as_mut() {
            Some(spawner) => spawner.start(spec),
            None => Err(SpawnError::Unavailable {
                reason: "spawning could not be set up (see the host's warnings)".into(),
            }),
        };
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                let error = match e.exec_failure() {
                    Some(source) => format!(
                        "cannot execute {}: {source}",
                        accepted.plan.program.display()
                    ),
                    None => format!("cannot start the job: {e}"),
                };
                let ending = Ending::before_start(JobEnd::StartFailed, error);
                self.fail_before_start(&accepted, ending, Some(report));
                return;
            }
        };

        let slot = self.next_slot;
        self.next_slot += 1;
        let Accepted { id, plugin, plan } = accepted;
        {
            let mut queues = lock(&self.shared.queues);
            let queue = queues.entry(plugin.clone()).or_insert_with(default_queue);
            queue.set_bounds(
                plan.output.max_queued_events.value as usize,
                plan.output.max_queued_bytes.value as usize,
            );
            if plan.output.when_full.value == WhenFull::Wait {
                queue.hold(&id);
            }
        }
        let report = share(&mut self.reports, report);
        let first_sample = next_on_grid(self.epoch, Instant::now(), plan.progress.interval.value);
        let mode = self.shared.support.observation();
        let home = self.shared.home.clone();
        let (job, registered) = Job::started(
            slot,
            id,
            plugin,
            plan,
            spawned,
            report.clone(),
            self.poll.registry(),
            &self.external_ready,
            first_sample,
            |observer| JobObservation::new(observer, mode, home),
        );
        if let Err(e) = registered {
            self.shared
                .warn(format!("cannot watch job {}: {e}", job.id));
        }
        if let Some(record) = lock(&self.shared.jobs).records.get_mut(&job.id) {
            record.status = JobStatus::Running {
                started_at: job.started_at.clone(),
                percent: None,
            };
            record.enforcement = Some(report);
        }
        for event in job.opening_events() {
            self.emit(&job.plugin, event);
        }
        self.jobs.insert(slot, job);
    }

    // ---- I/O --------------------------------------------------------------

    fn service_ready(&mut self) {
        let tokens: Vec<Token> = self.ready.iter().copied().collect();
        for t in tokens {
            let JobToken { slot, source } = JobToken::from_token(t);
            if !self.jobs.contains_key(&slot) {
                self.ready.remove(&t);
                continue;
            }
            let stream = match source {
                Source::Exit => {
                    self.ready.remove(&t);
                    self.reap_leader(slot);
                    continue;
                }
                Source::Observe => {
                    let registry = self.poll.registry();
                    let more = self
                        .jobs
                        .get_mut(&slot)
                        .is_some_and(|job| job.observe(registry));
                    if !more {
                        self.ready.remove(&t);
                    }
                    continue;
                }
                Source::Stdout => Stream::Stdout,
                Source::Stderr => Stream::Stderr,
            };
            let Self {
                jobs,
                buf,
                batches,
                shared,
                ..
            } = self;
            let job = jobs.get_mut(&slot).expect("checked above");
            let plugin = job.plugin.clone();
            let batch = batches.entry(plugin.clone()).or_default();
            let mut sink = QueueSink {
                shared,
                plugin: &plugin,
            };
            match job.read(stream, buf, batch, &mut sink) {
                PipeState::Drained => {
                    self.ready.remove(&t);
                }
                PipeState::Full => {
                    self.ready.remove(&t);
                    self.paused.insert(t);
                }
                PipeState::Closed => {
                    self.ready.remove(&t);
                    self.close_pipe(slot, stream);
                }
                PipeState::MoreLater => {}
            }
        }
    }

    /// Reads again the pipes of `wait` jobs whose plugin drained enough.
    fn resume_drained(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let tokens: Vec<Token> = self.paused.iter().copied().collect();
        for t in tokens {
            let JobToken { slot, source } = JobToken::from_token(t);
            let stream = match source {
                Source::Stdout => Stream::Stdout,
                Source::Stderr => Stream::Stderr,
                Source::Exit | Source::Observe => continue,
            };
            let Some(job) = self.jobs.get_mut(&slot) else {
                self.paused.remove(&t);
                continue;
            };
            // Asks again, and says again that the host waits: a drain
            // since the last look may have been refilled by another job.
            let resume = job.when_full != WhenFull::Wait || {
                let queue = self.shared.queue_output(&job.plugin, &mut Vec::new(), true);
                wait_allowance(&job.output, stream, queue).is_some()
            };
            if resume {
                job.paused[stream as usize] = false;
                // The drain deadline after the job's exit runs only while
                // its output is flowing.
                if job.drain_until.is_some() && !job.waits_for_drain() {
                    job.drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
                self.paused.remove(&t);
                self.ready.insert(t);
            }
        }
    }

    /// The host is shutting down and waits for no plugin: every job's
    /// output may be dropped again, and paused pipes are read to the end.
    fn stop_waiting(&mut self) {
        let mut queues = lock(&self.shared.queues);
        for job in self.jobs.values_mut() {
            job.when_full = WhenFull::DropOldest;
            if let Some(queue) = queues.get_mut(&job.plugin) {
                queue.release(&job.id);
            }
        }
    }

    fn close_pipe(&mut self, slot: usize, stream: Stream) {
        let Self {
            jobs,
            batches,
            poll,
            ..
        } = self;
        if let Some(job) = jobs.get_mut(&slot) {
            let batch = batches.entry(job.plugin.clone()).or_default();
            job.close_pipe(stream, poll.registry(), batch);
        }
    }

    // ---- exit and termination ----------------------------------------------

    fn reap_leader(&mut self, slot: usize) {
        let registry = self.poll.registry();
        let exited = self
            .jobs
            .get_mut(&slot)
            .is_some_and(|job| job.reap_leader(registry));
        // The job is over when its first process is: nothing it started
        // may outlive it.
        if exited {
            self.kill_tree(slot);
        }
    }

    /// SIGKILLs everything left of the job's tree and has the reaper
    /// collect it.
    fn kill_tree(&mut self, slot: usize) {
        let leaders = self.live_leaders();
        let host = self.host;
        if let Some(job) = self.jobs.get_mut(&slot) {
            let killed = job.tree.kill_all(host, &leaders);
            self.reaper.watch(killed);
        }
    }

    fn terminate(&mut self, slot: usize, reason: String, timed_out: bool) {
        let leaders = self.live_leaders();
        let host = self.host;
        let Some(job) = self.jobs.get_mut(&slot) else {
            return;
        };
        if !job.running() || job.termination.is_some() {
            return;
        }
        let stopped = Stopped { reason, timed_out };
        if job.begin_termination(stopped, host, &leaders) {
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
        self.kill_tree(slot);
    }

    fn check_timers(&mut self) {
        let now = Instant::now();
        let slots: Vec<usize> = self.jobs.keys().copied().collect();
        for slot in slots {
            let Some(job) = self.jobs.get(&slot) else {
                continue;
            };
            if job.running() {
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
                && !job.pipes_closed()
                && !job.waits_for_drain()
            {
                let event = JobEvent::JobLogLine {
                    job_id: job.id.clone(),
                    data: crate::contract::JobLogLineData {
                        line: "jobwarden: output pipes were still open after the job ended and its tree was killed; closed them".into(),
                        stream: crate::contract::STREAM_SYSTEM.to_string(),
                    },
                };
                let plugin = job.plugin.clone();
                self.emit(&plugin, event);
                self.close_pipe(slot, Stream::Stdout);
                self.close_pipe(slot, Stream::Stderr);
            }
        }
    }

    /// Tracks trees without cgroups and samples jobs whose interval is due
    /// (see `sampler.rs`), then records the figures for `usage` and
    /// `status` queries.
    fn sample_and_track(&mut self) {
        let leaders = self.live_leaders();
        let round = self
            .sampler
            .round(&mut self.jobs, self.epoch, self.host, &leaders);
        if round.is_empty() {
            return;
        }
        {
            let mut jobs = lock(&self.shared.jobs);
            for update in &round {
                if let Some(record) = jobs.records.get_mut(&update.id) {
                    record.usage = Some(update.usage.clone());
                    if !record.status.is_finished() {
                        record.status = JobStatus::Running {
                            started_at: update.started_at.clone(),
                            percent: update.percent,
                        };
                    }
                }
            }
        }
        for update in round {
            self.emit(&update.plugin, update.event);
        }
    }

    fn finalize_finished(&mut self) {
        let done: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.running() && j.pipes_closed())
            .map(|(s, _)| *s)
            .collect();
        for slot in done {
            if let Some(job) = self.jobs.remove(&slot) {
                self.finalize(job);
            }
        }
    }

    /// Publishes a finished job: its last events, its record, its audit,
    /// its slot for the next pending job, and zombies to look for.
    fn finalize(&mut self, job: Job) {
        let (finished, job) = job.finish(self.poll.registry());
        for problem in finished.problems {
            self.shared.warn(problem);
        }
        self.sampler.forget(&job.sampled_pids);
        // The audit record goes first: whoever sees the end may act on it
        // and expects it recorded.
        self.audit_end(
            &job.plugin,
            &job.id,
            &job.plan,
            &finished.ending,
            finished.elapsed,
            Some(job.report.summary_line()),
        );
        // What was emitted before stays ahead of the last events.
        self.flush();
        self.shared
            .publish_end(&job.plugin, finished.events, |jobs| {
                if let Some(record) = jobs.records.get_mut(&job.id) {
                    record.usage = Some(job.usage.clone());
                    record.observed = finished.observed.clone();
                }
                jobs.finish(&job.id, &finished.ending);
            });
        self.scheduler.finished(&job.plugin);
        if !job.tree.exact() {
            self.reaper.fallback_job(job.tree.leader_start);
        }
        // A killed tree leaves zombies only if the job ever had more than
        // one process; look for them then.
        if finished.ever_forked {
            self.reaper.scan_soon();
        }
    }

    fn audit_end(
        &self,
        plugin: &str,
        id: &str,
        plan: &Plan,
        ending: &Ending,
        elapsed: Duration,
        enforcement: Option<String>,
    ) {
        if let Some(audit) = &self.shared.audit
            && let Err(e) = audit.end(&EndRecord::new(
                plugin,
                id,
                plan,
                ending,
                elapsed,
                enforcement,
            ))
        {
            self.shared.warn(format!("cannot write the audit log: {e}"));
        }
    }
}
