//! One running job as the host thread holds it: its processes, pipes,
//! output pipeline, timers and accounting, and what it says at its start
//! and end. The supervisor owns the set of jobs and the loop; everything
//! that concerns a single job lives here.

use super::Usage;
use super::conclude::{Ending, Stopped, conclude};
use super::io::{EventSink, JobToken, PipeState, Source, read_pipe};
use super::observation::{JobObservation, ObservedJob};
use super::sampler::Sample;
use crate::contract::{
    JobEvent, JobId, JobLogLineData, JobProgressData, JobStartedData, STREAM_SYSTEM,
};
use crate::decision::Plan;
use crate::output::progress::ProgressTracker;
use crate::output::{JobOutput, Stream};
use crate::policy::WhenFull;
use crate::policy::units::format_size;
use crate::sandbox::{
    EnforcementReport, ExitInfo, ExitWatch, HostProcess, JobDir, Pipe, ReadyList, Spawned, Tree,
};
use mio::Registry;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long output may keep flowing after the first process exited and the
/// rest of the tree was killed, before the pipes are closed anyway. Time a
/// `wait` job spends waiting for its plugin to drain does not count.
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The least time between two `JobProgress` events of one job when the
/// job declares progress faster than that: about one frame of a TUI, so a
/// declared step shows when it is printed, not at the next sample, and a
/// job printing thousands of them costs its plugin at most ten a second.
pub(super) const MIN_PROGRESS_GAP: Duration = Duration::from_millis(100);

/// A job jobwarden is stopping (cancel, timeout, shutdown).
pub(super) struct Termination {
    pub stopped: Stopped,
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
    exit_watch: Option<ExitWatch>,
    /// When to look for the exit without an event (platforms without pidfd).
    pub next_exit_poll: Option<Instant>,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
    pub output: JobOutput,
    /// What a full queue does to this job: the plan's, until the host
    /// shuts down and waits for nobody.
    pub when_full: WhenFull,
    /// Per stream (stdout, stderr): left unread until the plugin drains.
    pub paused: [bool; 2],
    pub tree: Tree,
    /// The job's `{tmp}`, removed when the job is finalised.
    dir: Option<JobDir>,
    pub report: Arc<EnforcementReport>,
    started: Instant,
    pub started_at: String,
    pub deadline: Instant,
    pub next_sample: Instant,
    /// When the last `JobProgress` went out (see [`MIN_PROGRESS_GAP`]).
    last_progress: Option<Instant>,
    /// Members at the last sample, to forget them in the sampler later.
    pub sampled_pids: Vec<i32>,
    pub termination: Option<Termination>,
    pub exit: Option<Exit>,
    pub drain_until: Option<Instant>,
    pub usage: Usage,
    /// The job's observation, when the host observes (`run --why`, learn).
    observation: Option<JobObservation>,
    /// Refusals of the processes limit already said in a `system` line.
    process_limit_hits: u64,
}

/// What a finalised job leaves for the supervisor to publish.
pub(super) struct Finished {
    /// Progress declared since the last tick, the exit summary, then the
    /// terminal event.
    pub events: Vec<JobEvent>,
    pub ending: Ending,
    pub elapsed: Duration,
    /// Whether the tree ever had more than one process (zombies to look for).
    pub ever_forked: bool,
    /// Problems removing what the job was given, for the host's warnings.
    pub problems: Vec<String>,
    /// What observation found, when the job was observed.
    pub observed: Option<std::sync::Arc<ObservedJob>>,
}

impl Job {
    /// A job whose first process just started; its pipes and exit are
    /// registered with the poller under `slot`.
    #[allow(clippy::too_many_arguments)]
    pub fn started(
        slot: usize,
        id: JobId,
        plugin: Arc<str>,
        plan: Plan,
        spawned: Spawned,
        report: Arc<EnforcementReport>,
        registry: &Registry,
        ready: &ReadyList,
        first_sample: Instant,
        observation: impl FnOnce(crate::sandbox::Observer) -> JobObservation,
    ) -> (Self, Result<(), std::io::Error>) {
        let Spawned {
            pid,
            mut exit,
            tree,
            mut stdout,
            mut stderr,
            dir,
            observer,
        } = spawned;
        let token = |source| JobToken::new(slot, source).token();
        let mut observation = observer.map(observation);
        let registered = stdout
            .register(registry, token(Source::Stdout), ready)
            .and_then(|()| stderr.register(registry, token(Source::Stderr), ready))
            .and_then(|()| exit.register(registry, token(Source::Exit), ready))
            .and_then(|()| match &mut observation {
                Some(o) => o.register(registry, token(Source::Observe)),
                None => Ok(()),
            });
        let now = Instant::now();
        let output = JobOutput::new(
            id.clone(),
            &plan.output,
            ProgressTracker::new(&plan.progress.patterns),
        );
        let job = Self {
            deadline: now + plan.timeout.value,
            id,
            plugin,
            pid,
            next_exit_poll: exit.poll_every().map(|every| now + every),
            exit_watch: Some(exit),
            stdout: Some(stdout),
            stderr: Some(stderr),
            output,
            when_full: plan.output.when_full.value,
            paused: [false; 2],
            tree,
            dir: Some(dir),
            report,
            started: now,
            started_at: crate::contract::timestamp_now(),
            next_sample: first_sample,
            last_progress: None,
            sampled_pids: Vec::new(),
            termination: None,
            exit: None,
            drain_until: None,
            usage: Usage::default(),
            observation,
            process_limit_hits: 0,
            plan,
        };
        (job, registered)
    }

    fn system_line(&self, line: String) -> JobEvent {
        JobEvent::JobLogLine {
            job_id: self.id.clone(),
            data: JobLogLineData {
                line,
                stream: STREAM_SYSTEM.to_string(),
            },
        }
    }

    /// `JobStarted`, then the enforcement line, the plan's notes and the
    /// variables left out.
    pub fn opening_events(&self) -> Vec<JobEvent> {
        let mut events = vec![
            JobEvent::JobStarted {
                job_id: self.id.clone(),
                data: JobStartedData {
                    pid: Some(self.pid as u32),
                    started_at: self.started_at.clone(),
                },
            },
            self.system_line(self.report.summary_line()),
        ];
        for note in &self.plan.notes {
            events.push(self.system_line(format!("jobwarden: {note}")));
        }
        if !self.plan.env_dropped.is_empty() {
            let names: Vec<String> = self
                .plan
                .env_dropped
                .iter()
                .map(|d| format!("{} from {} ({})", d.name, d.origin, d.rule))
                .collect();
            events.push(self.system_line(format!(
                "jobwarden: variables not passed: {}",
                names.join(", ")
            )));
        }
        events
    }

    /// Whether the first process is still running.
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }

    /// The earliest moment this job has something to do.
    pub fn next_timer(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.running() {
            match &self.termination {
                Some(t) if !t.killed => consider(t.kill_at),
                Some(_) => {}
                None => consider(self.deadline),
            }
            if !self.tree.exact() {
                consider(self.tree.next_scan);
            }
            if let Some(at) = self.next_exit_poll {
                consider(at);
            }
            consider(self.next_sample);
            if self.output.progress.has_update()
                && let Some(at) = self.last_progress
            {
                consider(at + MIN_PROGRESS_GAP);
            }
        }
        // While waiting for a drain, the drain deadline is not running.
        if let Some(at) = self.drain_until
            && !self.waits_for_drain()
        {
            consider(at);
        }
        next
    }

    /// Whether a stream is left unread until the plugin drains.
    pub fn waits_for_drain(&self) -> bool {
        self.paused.iter().any(|p| *p)
    }

    /// Reads one of the job's pipes into events, which `sink` queues
    /// (`batch` first: what was emitted before stays ahead).
    pub fn read(
        &mut self,
        stream: Stream,
        buf: &mut [u8],
        batch: &mut Vec<JobEvent>,
        sink: &mut impl EventSink,
    ) -> PipeState {
        let pipe = match stream {
            Stream::Stdout => self.stdout.as_mut(),
            Stream::Stderr => self.stderr.as_mut(),
        };
        let state = match pipe {
            Some(pipe) => read_pipe(
                pipe,
                stream,
                buf,
                &mut self.output,
                batch,
                sink,
                self.when_full,
            ),
            None => PipeState::Drained,
        };
        self.paused[stream as usize] = matches!(state, PipeState::Full);
        state
    }

    /// Closes one of the job's pipes, flushing its partial line into `batch`.
    pub fn close_pipe(&mut self, stream: Stream, registry: &Registry, batch: &mut Vec<JobEvent>) {
        let pipe = match stream {
            Stream::Stdout => self.stdout.take(),
            Stream::Stderr => self.stderr.take(),
        };
        if let Some(mut pipe) = pipe {
            pipe.deregister(registry);
            self.output.finish(stream, batch);
        }
        self.paused[stream as usize] = false;
    }

    /// Answers the job's pending observed calls; returns whether more are
    /// waiting (come back soon).
    pub fn observe(&mut self, registry: &Registry) -> bool {
        self.observation
            .as_mut()
            .is_some_and(|o| o.service(registry))
    }

    /// Both pipes are closed.
    pub fn pipes_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Reaps the first process if it exited; returns whether it did just now.
    pub fn reap_leader(&mut self, registry: &Registry) -> bool {
        if !self.running() {
            return false;
        }
        let Some(info) = self.exit_watch.as_mut().and_then(ExitWatch::try_wait) else {
            // Not exited yet: a spurious wake-up, or a poll that found it running.
            if let Some(every) = self.exit_watch.as_ref().and_then(ExitWatch::poll_every) {
                self.next_exit_poll = Some(Instant::now() + every);
            }
            return false;
        };
        self.tree.leader_reaped();
        self.exit = Some(Exit {
            info,
            elapsed: self.started.elapsed(),
        });
        self.next_exit_poll = None;
        if let Some(mut watch) = self.exit_watch.take() {
            watch.deregister(registry);
        }
        self.drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
        true
    }

    /// Starts stopping the job: SIGTERM to the tree, SIGKILL after the grace
    /// period. Returns whether it must be killed at once (no grace, or no
    /// polite stop on this platform).
    pub fn begin_termination(
        &mut self,
        stopped: Stopped,
        host: HostProcess,
        leaders: &HashSet<i32>,
    ) -> bool {
        let grace = self.plan.limits.kill_grace.value;
        self.termination = Some(Termination {
            stopped,
            kill_at: Instant::now() + grace,
            killed: false,
        });
        grace.is_zero() || !self.tree.terminate(host, leaders)
    }

    /// Whether declared progress is waiting that should go out now rather
    /// than at the next sample: none went out in the last
    /// [`MIN_PROGRESS_GAP`].
    pub fn progress_waiting(&self, now: Instant) -> bool {
        self.output.progress.has_update()
            && self
                .last_progress
                .is_none_or(|at| now.saturating_duration_since(at) >= MIN_PROGRESS_GAP)
    }

    /// A `system` line the first time the processes limit refuses the job
    /// a process or thread: a job that hits it usually retries or waits
    /// rather than fails, and would otherwise stall in silence.
    pub fn process_limit_notice(&mut self) -> Option<JobEvent> {
        let hits = self.tree.process_limit_hits();
        let first = self.process_limit_hits == 0 && hits > 0;
        self.process_limit_hits = self.process_limit_hits.max(hits);
        first.then(|| {
            self.system_line(format!(
                "jobwarden: {}",
                super::conclude::process_limit_text(&self.plan, hits)
            ))
        })
    }

    /// Takes a resource sample into the usage figures and returns the
    /// progress event of this interval, if there is news: the latest
    /// declared percent and step, or the resource use when the job declared
    /// no step.
    pub fn sampled(&mut self, sample: Option<Sample>) -> Option<JobEvent> {
        if let Some(sample) = sample {
            self.usage.elapsed = self.started.elapsed();
            self.usage.cpu_percent = sample.cpu_percent;
            self.usage.rss_bytes = sample.rss_bytes;
            self.usage.peak_rss_bytes = self.usage.peak_rss_bytes.max(sample.rss_bytes);
            self.usage.processes = sample.processes;
            self.usage.peak_processes = self.usage.peak_processes.max(sample.processes);
            self.usage.cpu_time = self.usage.cpu_time.max(sample.cpu_time);
        }
        let declared = self.output.progress.take_update();
        if declared.is_none() && sample.is_none() {
            return None;
        }
        self.last_progress = Some(Instant::now());
        let step = self
            .output
            .progress
            .step
            .clone()
            .or_else(|| sample.map(|s| s.describe()));
        Some(JobEvent::JobProgress {
            job_id: self.id.clone(),
            data: JobProgressData {
                percent: self.output.progress.percent,
                step,
            },
        })
    }

    /// Ends a job whose first process exited and whose pipes are closed:
    /// reads what its containment recorded, removes everything it was given
    /// (its cgroups, its `{tmp}`), and concludes.
    pub fn finish(mut self, registry: &Registry) -> (Finished, Self) {
        let exit = self.exit.take().expect("finish only jobs that exited");
        let info = exit.info;
        let mut problems = Vec::new();
        // Judged before the job's `{tmp}` is removed: what it touched there
        // must still exist to be judged.
        let (observed_lines, observed) = match self.observation.take() {
            Some(observation) => {
                let failed = info.code != Some(0);
                let (lines, observed) =
                    observation.conclude(registry, &self.id, &self.plan, &self.report, failed);
                (lines, Some(std::sync::Arc::new(observed)))
            }
            None => (Vec::new(), None),
        };
        // Read everything the containment knows before removing it.
        let ever_forked = self.tree.ever_forked();
        // Only a job that failed is told why (`conclude`): a success skips
        // the read.
        let oom_kills = if info.code == Some(0) {
            0
        } else {
            self.tree.oom_kills()
        };
        let process_limit_hits = self.tree.process_limit_hits();
        let peak = self.tree.memory_peak().unwrap_or(info.max_rss);
        if let Err(problem) = self.tree.dismantle() {
            problems.push(format!("cleaning up {}: {problem}", self.id));
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.remove() {
                problems.push(format!("cannot remove {}: {e}", path.display()));
            }
        }
        let cpu = info.user + info.system;
        self.usage.elapsed = exit.elapsed;
        self.usage.cpu_time = self.usage.cpu_time.max(cpu);
        self.usage.peak_rss_bytes = self.usage.peak_rss_bytes.max(peak);
        self.usage.rss_bytes = 0;
        self.usage.processes = 0;

        let mut events = Vec::new();
        // Progress declared since the last tick is not lost at the end.
        if let Some((percent, step)) = self.output.progress.take_update() {
            events.push(JobEvent::JobProgress {
                job_id: self.id.clone(),
                data: JobProgressData { percent, step },
            });
        }
        events.extend(observed_lines);
        events.push(self.system_line(format!(
            "jobwarden: finished in {:.1} s · cpu {:.1} s user / {:.1} s sys · peak rss {}",
            exit.elapsed.as_secs_f64(),
            info.user.as_secs_f64(),
            info.system.as_secs_f64(),
            format_size(self.usage.peak_rss_bytes)
        )));
        let stopped = self.termination.as_ref().map(|t| &t.stopped);
        let mut ending = conclude(&self.plan, &info, stopped, oom_kills, cpu);
        if process_limit_hits > 0 {
            let text = super::conclude::process_limit_text(&self.plan, process_limit_hits);
            events.push(self.system_line(format!("jobwarden: {text}")));
            // A job that failed, timed out or was cancelled says so in its
            // terminal event too: a job stalled at the limit is named.
            if let Some(reason) = &mut ending.reason {
                reason.push_str("; ");
                reason.push_str(&text);
            }
        }
        events.push(ending.event(
            &self.id,
            crate::contract::timestamp_now(),
            self.output.tail(),
        ));
        let finished = Finished {
            events,
            ending,
            elapsed: exit.elapsed,
            ever_forked,
            problems,
            observed,
        };
        (finished, self)
    }
}
