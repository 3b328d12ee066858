//! `PolicyJobHost`: the `JobHost` a TUI embeds.
//!
//! The host keeps these promises:
//! - `spawn` never blocks a render loop: it decides (pure, cheap), records
//!   the job and hands it to the host's own thread, which creates processes,
//!   reads every job's pipes through one poller, enforces timeouts and
//!   cleans up;
//! - each plugin sees, cancels and drains only its own jobs, through its
//!   own [`PluginHandle`];
//! - per job, `JobStarted` comes first, all output before the one terminal
//!   event;
//! - the host's memory stays bounded however much jobs print while nobody
//!   drains (see `output::queue`);
//! - dropping the host (or [`PolicyJobHost::shutdown`]) cancels every job,
//!   waits the grace period, kills what is left, reaps everything.

mod audit;
mod builder;
mod conclude;
mod io;
mod job;
mod locks;
mod observation;
mod sampler;
mod scheduler;
mod shared;
mod supervisor;
mod tmp_root;
mod wake;
pub mod wire;

pub use audit::{AuditError, AuditLog};
pub use builder::{HostBuilder, HostError};
pub use observation::ObservedJob;
pub use shared::FINISHED_JOBS_KEPT;
#[cfg(feature = "futures")]
pub use wake::EventStream;
pub use wake::NextEvents;

use crate::capabilities::JobCapabilities;
use crate::contract::{JobEvent, JobHost, JobId, JobSpawnRequest, JobStatus};
use crate::decision::Denial;
use crate::policy::Policy;
use crate::sandbox::{EnforcementReport, HostSupport};
use locks::lock;
use shared::{Command, Shared};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Something the host wants its embedder to know that is not an error of
/// any one job: a cgroup it could not remove, an audit write that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWarning {
    /// One sentence, for the embedder's log.
    pub message: String,
}

/// Usage figures of one job (see also `JobProgress`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Wall time since the job started.
    pub elapsed: Duration,
    /// CPU time (user + system) of the whole tree so far.
    pub cpu_time: Duration,
    /// CPU use over the last sampling interval, in percent of one core.
    pub cpu_percent: f32,
    /// Resident memory of the whole tree now.
    pub rss_bytes: u64,
    /// Highest resident memory seen.
    pub peak_rss_bytes: u64,
    /// Processes in the tree now.
    pub processes: u32,
    /// The most processes seen in the tree at one sample.
    pub peak_processes: u32,
}

/// How a job ended, structured for Rust callers (the contract's events
/// carry the same facts as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobEnd {
    /// Refused by a policy rule (at spawn, or a binary hash at start).
    Denied {
        /// The policy key that refused, as in [`Denial::rule`](crate::Denial::rule).
        rule: String,
    },
    /// Refused because `enforcement = "required"` and this machine cannot
    /// apply everything the plan asks.
    EnforcementUnavailable,
    /// jobwarden could not start it (a system call failed, exec failed).
    StartFailed,
    /// The first process exited with this status.
    Exited {
        /// The exit status (0 for success).
        code: i32,
    },
    /// The first process was killed by this signal.
    Signaled {
        /// The signal number (9 for SIGKILL).
        signal: i32,
    },
    /// Killed at its timeout.
    TimedOut,
    /// Cancelled by the plugin or by host shutdown.
    Cancelled,
}

/// The host: owns the policy, the host thread and every job.
pub struct PolicyJobHost {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The sweep of directories left by hosts that are gone, if running.
    sweeper: Mutex<Option<JoinHandle<()>>>,
    /// The root of the jobs' `{tmp}` directories, removed at shutdown.
    tmp_root: Mutex<Option<tempfile::TempDir>>,
    /// Keeps the policy file watched while the host lives.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl PolicyJobHost {
    /// A host serving `repo_root` under `policy`, with default options.
    pub fn new(policy: Arc<Policy>, repo_root: impl AsRef<Path>) -> Result<Self, HostError> {
        Self::builder(policy, repo_root).build()
    }

    /// A builder for a host with options (audit log, warning sink, ...).
    pub fn builder(policy: Arc<Policy>, repo_root: impl AsRef<Path>) -> HostBuilder {
        HostBuilder::new(policy, repo_root.as_ref())
    }

    /// The handle a plugin gets: it sees, cancels and drains only its own jobs.
    pub fn plugin(&self, name: &str) -> PluginHandle {
        self.plugin_with(name, JobCapabilities::ALL)
    }

    /// A plugin's handle with only `capabilities` (e.g. spawn but not
    /// cancel, for a manifest without `jobs_cancel`; see
    /// [`crate::capabilities`]).
    pub fn plugin_with(&self, name: &str, capabilities: JobCapabilities) -> PluginHandle {
        let plugin: Arc<str> = Arc::from(name);
        PluginHandle {
            notifier: self.shared.notifier(&plugin),
            shared: self.shared.clone(),
            plugin,
            capabilities,
        }
    }

    /// What was enforced for a job (any plugin's), once it has started.
    pub fn enforcement(&self, job_id: &str) -> Option<EnforcementReport> {
        let jobs = lock(&self.shared.jobs);
        jobs.records.get(job_id)?.enforcement.as_deref().cloned()
    }

    /// What this machine lets the host enforce.
    pub fn support(&self) -> &HostSupport {
        &self.shared.support
    }

    /// The canonical repository root.
    pub fn repo(&self) -> &Path {
        &self.shared.repo
    }

    /// The policy new requests are decided by.
    pub fn policy(&self) -> Arc<Policy> {
        self.shared.policy()
    }

    /// Replaces the policy for new requests; running and pending jobs keep
    /// the plan they were given.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        *locks::write(&self.shared.policy) = policy;
    }

    /// Waits until every audit record made so far is written to the audit
    /// log (records are written by the log's own thread, so `spawn` never
    /// waits for the disk). Does nothing without an audit log.
    pub fn flush_audit_log(&self) -> Result<(), AuditError> {
        match &self.shared.audit {
            Some(audit) => audit.flush(),
            None => Ok(()),
        }
    }

    /// The last warnings (at most 100), oldest first, removed from the host.
    pub fn take_warnings(&self) -> Vec<HostWarning> {
        lock(&self.shared.kept_warnings).drain(..).collect()
    }

    /// Cancels every job, waits for the grace period, kills what is left,
    /// reaps everything and stops the host thread. Events stay drainable.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.send(Command::Shutdown);
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            self.shared.warn("the host thread panicked".into());
        }
        // No job starts from here: the spare job cgroups go.
        self.shared.support.release();
        let sweeper = lock(&self.sweeper).take();
        if let Some(sweeper) = sweeper
            && sweeper.join().is_err()
        {
            self.shared
                .warn("the sweep of stale job directories panicked".into());
        }
        // Everything the jobs left is queued: waiters may stop waiting.
        self.shared.close();
        if let Some(root) = lock(&self.tmp_root).take()
            && let Err(e) = root.close()
        {
            self.shared.warn(format!(
                "cannot remove the job directories in {}: {e}",
                self.shared.tmp_root.display()
            ));
        }
    }
}

impl Drop for PolicyJobHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One plugin's view of the host. Cheap to clone.
#[derive(Clone)]
pub struct PluginHandle {
    shared: Arc<Shared>,
    plugin: Arc<str>,
    capabilities: JobCapabilities,
    /// The plugin's wake-ups (see [`PluginHandle::events_fd`]).
    notifier: Arc<wake::Notifier>,
}

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin
    }

    /// What the embedding host let this plugin do.
    pub fn capabilities(&self) -> JobCapabilities {
        self.capabilities
    }

    /// Like [`JobHost::spawn`], but a refused request returns the denial
    /// instead of a job id with a `JobFailed` event.
    pub fn try_spawn(&self, request: JobSpawnRequest) -> Result<JobId, Denial> {
        let (id, outcome) = self.shared.spawn(&self.plugin, request, false);
        outcome.map(|()| id)
    }

    /// What was enforced for one of this plugin's jobs.
    pub fn enforcement(&self, job_id: &str) -> Option<EnforcementReport> {
        self.shared
            .owned_record(&self.plugin, job_id)?
            .enforcement
            .as_deref()
            .cloned()
    }

    /// How one of this plugin's jobs ended, once it has.
    pub fn end(&self, job_id: &str) -> Option<JobEnd> {
        self.shared.owned_record(&self.plugin, job_id)?.end
    }

    /// Like [`JobHost::drain_events`], but waits up to `timeout` for at
    /// least one event. For command-line tools and tests; a TUI drains.
    pub fn wait_events(&self, timeout: Duration) -> Vec<JobEvent> {
        let deadline = std::time::Instant::now() + timeout;
        let mut queues = lock(&self.shared.queues);
        loop {
            if let Some(queue) = queues.get_mut(&self.plugin)
                && !queue.is_empty()
            {
                return self.shared.drain(&self.plugin, queue);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            queues = self
                .shared
                .queued
                .wait_timeout(queues, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What observation found about one of this plugin's jobs, once it
    /// ended: the refusals in policy terms on a host that explains denials
    /// ([`HostBuilder::explain_denials`]), every access in learn mode
    /// ([`HostBuilder::learn_mode`]). `None` for an unobserved job.
    pub fn observed(&self, job_id: &str) -> Option<Arc<ObservedJob>> {
        self.shared.owned_record(&self.plugin, job_id)?.observed
    }

    /// Stops reading one of this plugin's running jobs' `stream` and closes
    /// the host's end of its pipe, so the job's next write to it fails
    /// (`SIGPIPE`, or `EPIPE` where ignored) as it would in a shell pipeline
    /// whose reader has gone. For a consumer whose own reader went away
    /// (`jobwarden run | head -1`). No more output of that stream arrives;
    /// the job's other events still do. Returns false for a job that is
    /// not this plugin's or has ended.
    pub fn close_output(&self, job_id: &JobId, stream: crate::output::Stream) -> bool {
        match self.shared.owned_record(&self.plugin, job_id) {
            Some(record) if !record.status.is_finished() => {
                self.shared.send(Command::CloseOutput {
                    id: job_id.clone(),
                    stream,
                });
                true
            }
            _ => false,
        }
    }

    /// Current resource use of one of this plugin's running jobs, or the
    /// final figures of a finished one.
    pub fn usage(&self, job_id: &str) -> Option<Usage> {
        self.shared.owned_record(&self.plugin, job_id)?.usage
    }
}

impl JobHost for PluginHandle {
    fn spawn(&self, req: JobSpawnRequest) -> JobId {
        self.shared.spawn(&self.plugin, req, true).0
    }

    fn cancel(&self, job_id: &JobId) -> bool {
        let reason = format!("cancelled by plugin {}", self.plugin);
        self.cancel_because(job_id, reason)
    }

    fn status(&self, job_id: &JobId) -> Option<JobStatus> {
        self.shared
            .owned_record(&self.plugin, job_id)
            .map(|r| r.status)
    }

    fn drain_events(&self) -> Vec<JobEvent> {
        let mut queues = lock(&self.shared.queues);
        match queues.get_mut(&self.plugin) {
            Some(queue) if !queue.is_empty() => self.shared.drain(&self.plugin, queue),
            _ => Vec::new(),
        }
    }
}

impl PluginHandle {
    /// [`JobHost::cancel`] with the reason the job's `JobCancelled` gives,
    /// for embedders that know better than "cancelled by plugin NAME" (a
    /// command line cancelling on Ctrl-C says so).
    pub fn cancel_because(&self, job_id: &JobId, reason: impl Into<String>) -> bool {
        if !self.capabilities.cancel {
            // The contract's answer for "no cancellation was sent" is false;
            // the embedder hears why, since the plugin cannot be told more.
            self.shared.warn(format!(
                "plugin {} may not cancel jobs (its handle lacks the cancel capability); cancel of {job_id} refused",
                self.plugin
            ));
            return false;
        }
        match self.shared.owned_record(&self.plugin, job_id) {
            Some(record) if !record.status.is_finished() => {
                self.shared.send(Command::Cancel {
                    id: job_id.clone(),
                    reason: reason.into(),
                });
                true
            }
            _ => false,
        }
    }
}
