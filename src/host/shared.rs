//! The state the plugin handles (any thread) and the host thread share: the
//! policy, the job table, the per-plugin event queues and the command list
//! the host thread works through. Deciding happens here, on the caller's
//! thread (pure and cheap); everything that touches processes happens on
//! the host thread.

use super::audit::AuditLog;
use super::conclude::Ending;
use super::io::QueueRoom;
use super::locks::{lock, read, write};
use super::wake::{Notifier, Wakers};
use super::{HostWarning, JobEnd, Usage};
use crate::contract::{JobEvent, JobId, JobSpawnRequest, JobStatus, timestamp_now};
use crate::decision::{DecisionContext, Denial, Plan, decide};
use crate::output::Stream;
use crate::output::queue::EventQueue;
use crate::policy::{Policy, Sourced, WhenFull};
use crate::sandbox::{EnforcementReport, HostSupport};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// How many finished jobs' records are kept for `status` queries.
pub const FINISHED_JOBS_KEPT: usize = 4096;

/// How many host warnings are kept for [`super::PolicyJobHost::take_warnings`].
const WARNINGS_KEPT: usize = 100;

pub(super) type WarningSink = Arc<dyn Fn(HostWarning) + Send + Sync>;

#[derive(Debug, Clone)]
pub(super) struct JobRecord {
    pub plugin: Arc<str>,
    pub status: JobStatus,
    /// Shared between jobs with equal reports: thousands of finished
    /// records then cost little.
    pub enforcement: Option<Arc<EnforcementReport>>,
    pub usage: Option<Usage>,
    pub end: Option<JobEnd>,
    /// What observation found (`run --why`, learn), once the job ended.
    pub observed: Option<Arc<super::ObservedJob>>,
}

impl JobRecord {
    fn pending(plugin: &Arc<str>) -> Self {
        Self {
            plugin: plugin.clone(),
            status: JobStatus::Pending,
            enforcement: None,
            usage: None,
            end: None,
            observed: None,
        }
    }
}

#[derive(Default)]
pub(super) struct JobTable {
    pub records: HashMap<JobId, JobRecord>,
    finished: VecDeque<JobId>,
}

impl JobTable {
    /// Records how a job ended and forgets the oldest finished jobs beyond
    /// [`FINISHED_JOBS_KEPT`].
    pub fn finish(&mut self, id: &JobId, ending: &Ending) {
        if let Some(record) = self.records.get_mut(id) {
            record.status = ending.status();
            record.end = Some(ending.end.clone());
            self.finished.push_back(id.clone());
        }
        while self.finished.len() > FINISHED_JOBS_KEPT {
            if let Some(old) = self.finished.pop_front() {
                self.records.remove(&old);
            }
        }
    }
}

/// A job accepted by the decision, waiting for the host thread.
pub(super) struct Accepted {
    pub id: JobId,
    pub plugin: Arc<str>,
    pub plan: Plan,
}

pub(super) enum Command {
    Start(Box<Accepted>),
    Cancel {
        id: JobId,
        reason: String,
    },
    /// Stop reading one of a job's streams and close the host's end.
    CloseOutput {
        id: JobId,
        stream: Stream,
    },
    Shutdown,
}

/// State shared between the handles (any thread) and the host thread.
pub(super) struct Shared {
    pub policy: RwLock<Arc<Policy>>,
    pub repo: PathBuf,
    pub home: Option<PathBuf>,
    pub host_env: Vec<(String, String)>,
    /// Where jobs' `{tmp}` directories are made.
    pub tmp_root: PathBuf,
    pub support: HostSupport,
    pub next_id: AtomicU64,
    pub jobs: Mutex<JobTable>,
    pub queues: Mutex<HashMap<Arc<str>, EventQueue>>,
    /// Signalled whenever events are queued, for `wait_events`.
    pub queued: Condvar,
    /// Each plugin's wake-ups (descriptor, tasks), made with its first
    /// handle; notified and reset under the queues lock (order: queues,
    /// then notifiers).
    pub notifiers: Mutex<HashMap<Arc<str>, Arc<Notifier>>>,
    /// Set once the host thread has ended: no event will be queued again.
    pub closed: AtomicBool,
    pub commands: Mutex<Vec<Command>>,
    pub waker: Arc<mio::Waker>,
    pub shutting_down: AtomicBool,
    pub audit: Option<AuditLog>,
    pub warnings: Option<WarningSink>,
    pub kept_warnings: Mutex<VecDeque<HostWarning>>,
    /// What a full queue does to every job of this host, whatever the
    /// policy says (`jobwarden run` loses no output).
    pub when_full: Option<WhenFull>,
}

impl Shared {
    pub fn warn(&self, message: String) {
        let warning = HostWarning { message };
        if let Some(sink) = &self.warnings {
            sink(warning.clone());
        }
        let mut kept = lock(&self.kept_warnings);
        kept.push_back(warning);
        while kept.len() > WARNINGS_KEPT {
            kept.pop_front();
        }
    }

    /// The policy new requests are decided by.
    pub fn policy(&self) -> Arc<Policy> {
        read(&self.policy).clone()
    }

    /// Loads the policy file again; keeps the old policy if it does not validate.
    pub fn reload(&self, path: &Path) {
        match Policy::load(path) {
            Ok(loaded) => {
                if loaded.policy.origin.sha256 == self.policy().origin.sha256 {
                    return;
                }
                *write(&self.policy) = loaded.policy.clone();
                self.warn(format!(
                    "policy reloaded from {} (sha256 {}); new requests use it, running jobs keep their plan",
                    path.display(),
                    &loaded.policy.origin.sha256[..16]
                ));
            }
            Err(crate::policy::LoadError::Invalid(report)) => self.warn(format!(
                "policy {} was not reloaded: it has {} error(s); the previous policy stays\n{}",
                path.display(),
                report.error_count(),
                report.render()
            )),
            Err(e) => self.warn(format!(
                "policy {} was not reloaded: {e}; the previous policy stays",
                path.display()
            )),
        }
    }

    pub fn send(&self, command: Command) {
        lock(&self.commands).push(command);
        if let Err(e) = self.waker.wake() {
            self.warn(format!("cannot wake the host thread: {e}"));
        }
    }

    /// Queues the job output in `batch` (emptying it) and says how much
    /// room the plugin's queue has left; with `wait`, records under the same
    /// lock that the host waits for the plugin to drain.
    pub fn queue_output(
        &self,
        plugin: &Arc<str>,
        batch: &mut Vec<JobEvent>,
        wait: bool,
    ) -> QueueRoom {
        let pushed = !batch.is_empty();
        let (room, wakers) = {
            let mut queues = lock(&self.queues);
            let queue = queues.entry(plugin.clone()).or_insert_with(default_queue);
            queue.extend(batch.drain(..));
            if wait {
                queue.set_waiting();
            }
            let wakers = if pushed {
                self.notify(plugin)
            } else {
                Wakers::default()
            };
            let room = QueueRoom {
                room: queue.room(),
                bounds: queue.bounds(),
            };
            (room, wakers)
        };
        if pushed {
            self.queued.notify_all();
        }
        wakers.wake();
        room
    }

    /// Tells `plugin`'s waiters that events are queued. Called under the
    /// queues lock, in the push it announces; the caller wakes the tasks it
    /// returns after releasing that lock.
    fn notify(&self, plugin: &Arc<str>) -> Wakers {
        match lock(&self.notifiers).get(plugin) {
            Some(notifier) => notifier.notify(),
            None => Wakers::default(),
        }
    }

    /// `plugin`'s wake-ups, shared by all its handles.
    pub fn notifier(&self, plugin: &Arc<str>) -> Arc<Notifier> {
        lock(&self.notifiers)
            .entry(plugin.clone())
            .or_insert_with(|| Arc::new(Notifier::new()))
            .clone()
    }

    /// The host thread has ended: every waiter wakes, and those that find
    /// nothing queued learn that nothing will come.
    pub fn close(&self) {
        let mut wakers = Wakers::default();
        {
            let _queues = lock(&self.queues);
            self.closed
                .store(true, std::sync::atomic::Ordering::Release);
            for notifier in lock(&self.notifiers).values() {
                wakers.extend(notifier.notify());
            }
        }
        self.queued.notify_all();
        wakers.wake();
    }

    /// Takes `plugin`'s queued events (called under the queues lock); its
    /// descriptor stops being readable; wakes the host thread when it
    /// stopped reading a job until this drain.
    pub fn drain(
        &self,
        plugin: &Arc<str>,
        queue: &mut crate::output::queue::EventQueue,
    ) -> Vec<JobEvent> {
        if let Some(notifier) = lock(&self.notifiers).get(plugin) {
            notifier.reset();
        }
        let events = queue.drain();
        if queue.take_waiting()
            && let Err(e) = self.waker.wake()
        {
            self.warn(format!("cannot wake the host thread: {e}"));
        }
        events
    }

    pub fn push_events(&self, plugin: &Arc<str>, events: impl ExactSizeIterator<Item = JobEvent>) {
        if events.len() == 0 {
            return;
        }
        let mut queues = lock(&self.queues);
        queues
            .entry(plugin.clone())
            .or_insert_with(default_queue)
            .extend(events);
        let wakers = self.notify(plugin);
        drop(queues);
        self.queued.notify_all();
        wakers.wake();
    }

    /// Queues a job's last events and records its end in the table as one
    /// step for every observer: whoever drains the terminal event finds the
    /// job's end recorded, and whoever sees the status finished can drain
    /// the terminal event (the job table is updated under the queue lock;
    /// the lock order is queues, then jobs).
    pub fn publish_end(
        &self,
        plugin: &Arc<str>,
        events: impl IntoIterator<Item = JobEvent>,
        record: impl FnOnce(&mut JobTable),
    ) {
        let wakers = {
            let mut queues = lock(&self.queues);
            queues
                .entry(plugin.clone())
                .or_insert_with(default_queue)
                .extend(events);
            record(&mut lock(&self.jobs));
            self.notify(plugin)
        };
        self.queued.notify_all();
        wakers.wake();
    }

    fn decide(&self, plugin: &str, id: &str, request: &JobSpawnRequest) -> Result<Plan, Denial> {
        let policy = self.policy();
        let job_tmp = self.tmp_root.join(id);
        let ctx = DecisionContext {
            repo: &self.repo,
            home: self.home.as_deref(),
            job_tmp: &job_tmp,
            host_env: &self.host_env,
        };
        let mut outcome = decide(&policy, plugin, request, &ctx);
        if let (Ok(plan), Some(when_full)) = (outcome.as_mut(), self.when_full) {
            plan.output.when_full = Sourced::new(when_full, "the host's output_when_full");
        }
        if let Some(audit) = &self.audit
            && let Err(e) = audit.decision(
                plugin,
                Some(id),
                request,
                outcome.as_ref(),
                &policy.origin.sha256,
            )
        {
            self.warn(format!("cannot write the audit log: {e}"));
        }
        outcome
    }

    /// Decides and, when allowed, hands the job to the host thread. The id
    /// is returned in both cases; a denial is also recorded as a failed job
    /// with its one event when `keep_denied`.
    pub fn spawn(
        &self,
        plugin: &Arc<str>,
        request: JobSpawnRequest,
        keep_denied: bool,
    ) -> (JobId, Result<(), Denial>) {
        let id: JobId = format!("job-{}", self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let outcome = if self.shutting_down.load(Ordering::Acquire) {
            Err(Denial::new(
                "host",
                "the host is shutting down and accepts no new jobs",
                "create a new host",
            ))
        } else {
            self.decide(plugin, &id, &request)
        };
        match outcome {
            Ok(plan) => {
                lock(&self.jobs)
                    .records
                    .insert(id.clone(), JobRecord::pending(plugin));
                self.send(Command::Start(Box::new(Accepted {
                    id: id.clone(),
                    plugin: plugin.clone(),
                    plan,
                })));
                (id, Ok(()))
            }
            Err(denial) => {
                if keep_denied {
                    let ending = Ending::before_start(
                        JobEnd::Denied {
                            rule: denial.rule.clone(),
                        },
                        denial.to_string(),
                    );
                    {
                        let mut jobs = lock(&self.jobs);
                        jobs.records.insert(id.clone(), JobRecord::pending(plugin));
                        jobs.finish(&id, &ending);
                    }
                    self.push_events(
                        plugin,
                        std::iter::once(ending.event(&id, timestamp_now(), None)),
                    );
                }
                (id, Err(denial))
            }
        }
    }

    pub fn owned_record(&self, plugin: &str, id: &str) -> Option<JobRecord> {
        lock(&self.jobs)
            .records
            .get(id)
            .filter(|r| &*r.plugin == plugin)
            .cloned()
    }
}

pub(super) fn default_queue() -> EventQueue {
    EventQueue::new(
        crate::decision::DEFAULT_MAX_QUEUED_EVENTS as usize,
        crate::decision::DEFAULT_MAX_QUEUED_BYTES as usize,
    )
}
