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
mod finish;
mod sampler;
mod supervisor;

pub use audit::AuditLog;

use crate::contract::{
    JobEvent, JobFailedData, JobHost, JobId, JobSpawnRequest, JobStatus, timestamp_now,
};
use crate::decision::{DecisionContext, Denial, Plan, decide};
use crate::output::queue::EventQueue;
use crate::policy::Policy;
use crate::sandbox::EnforcementReport;
use crate::sandbox::os::{HostSupport, SupportOptions};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// How many finished jobs' records are kept for `status` queries.
pub const FINISHED_JOBS_KEPT: usize = 4096;

/// Something the host wants its embedder to know that is not an error of
/// any one job: a cgroup it could not remove, an audit write that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostWarning {
    pub message: String,
}

type WarningSink = Arc<dyn Fn(HostWarning) + Send + Sync>;

/// Why a host could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("cannot use {} as the repository: {source}", path.display())]
    Repo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the job directory root {}: {source}", path.display())]
    TmpRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the host thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("cannot set up the poller: {0}")]
    Poller(#[source] std::io::Error),
    #[error("cannot watch the policy file {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
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
}

/// How a job ended, structured for Rust callers (the contract's events
/// carry the same facts as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobEnd {
    /// Refused by a policy rule (at spawn, or a binary hash at start).
    Denied { rule: String },
    /// Refused because `enforcement = "required"` and this machine cannot
    /// apply everything the plan asks.
    EnforcementUnavailable,
    /// jobwarden could not start it (a system call failed, exec failed).
    StartFailed,
    /// The first process exited with this status.
    Exited { code: i32 },
    /// The first process was killed by this signal.
    Signaled { signal: i32 },
    /// Killed at its timeout.
    TimedOut,
    /// Cancelled by the plugin or by host shutdown.
    Cancelled,
}

#[derive(Debug, Clone)]
struct JobRecord {
    plugin: Arc<str>,
    status: JobStatus,
    /// Shared between jobs with equal reports (see `Supervisor::share`):
    /// thousands of finished records then cost little.
    enforcement: Option<Arc<EnforcementReport>>,
    usage: Option<Usage>,
    end: Option<JobEnd>,
}

#[derive(Default)]
struct JobTable {
    records: HashMap<JobId, JobRecord>,
    finished: VecDeque<JobId>,
}

impl JobTable {
    fn finish(&mut self, id: &JobId, status: JobStatus) {
        if let Some(record) = self.records.get_mut(id) {
            record.status = status;
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
struct Accepted {
    id: JobId,
    plugin: Arc<str>,
    plan: Plan,
}

enum Command {
    Start(Box<Accepted>),
    Cancel { id: JobId, reason: String },
    Shutdown,
}

/// State shared between the handles (any thread) and the host thread.
struct Shared {
    policy: RwLock<Arc<Policy>>,
    repo: PathBuf,
    home: Option<PathBuf>,
    host_env: Vec<(String, String)>,
    tmp_root: PathBuf,
    support: HostSupport,
    next_id: AtomicU64,
    jobs: Mutex<JobTable>,
    queues: Mutex<HashMap<Arc<str>, EventQueue>>,
    /// Signalled whenever events are queued, for `wait_events`.
    queued: Condvar,
    commands: Mutex<Vec<Command>>,
    waker: Arc<mio::Waker>,
    shutting_down: AtomicBool,
    audit: Option<AuditLog>,
    warnings: Option<WarningSink>,
    kept_warnings: Mutex<VecDeque<HostWarning>>,
}

impl Shared {
    fn warn(&self, message: String) {
        let warning = HostWarning { message };
        if let Some(sink) = &self.warnings {
            sink(warning.clone());
        }
        let mut kept = self.kept_warnings.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back(warning);
        while kept.len() > 100 {
            kept.pop_front();
        }
    }

    /// Loads the policy file again; keeps the old policy if it does not validate.
    fn reload(&self, path: &Path) {
        match Policy::load(path) {
            Ok(loaded) => {
                let current = self
                    .policy
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .origin
                    .sha256
                    .clone();
                if loaded.policy.origin.sha256 == current {
                    return;
                }
                *self.policy.write().unwrap_or_else(|e| e.into_inner()) = loaded.policy.clone();
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

    fn send(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        if let Err(e) = self.waker.wake() {
            self.warn(format!("cannot wake the host thread: {e}"));
        }
    }

    fn push_events(&self, plugin: &Arc<str>, events: impl ExactSizeIterator<Item = JobEvent>) {
        if events.len() == 0 {
            return;
        }
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(plugin.clone())
            .or_insert_with(default_queue)
            .extend(events);
        drop(queues);
        self.queued.notify_all();
    }

    fn set_end(&self, id: &JobId, status: JobStatus, end: JobEnd) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = jobs.records.get_mut(id) {
            record.end = Some(end);
        }
        jobs.finish(id, status);
    }

    fn decide(&self, plugin: &str, id: &str, request: &JobSpawnRequest) -> Result<Plan, Denial> {
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let job_tmp = self.tmp_root.join(id);
        let ctx = DecisionContext {
            repo: &self.repo,
            home: self.home.as_deref(),
            job_tmp: &job_tmp,
            host_env: &self.host_env,
        };
        let outcome = decide(&policy, plugin, request, &ctx);
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
    fn spawn(
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
                self.jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .records
                    .insert(
                        id.clone(),
                        JobRecord {
                            plugin: plugin.clone(),
                            status: JobStatus::Pending,
                            enforcement: None,
                            usage: None,
                            end: None,
                        },
                    );
                self.send(Command::Start(Box::new(Accepted {
                    id: id.clone(),
                    plugin: plugin.clone(),
                    plan,
                })));
                (id, Ok(()))
            }
            Err(denial) => {
                if keep_denied {
                    let error = denial.to_string();
                    {
                        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                        jobs.records.insert(
                            id.clone(),
                            JobRecord {
                                plugin: plugin.clone(),
                                status: JobStatus::Pending,
                                enforcement: None,
                                usage: None,
                                end: Some(JobEnd::Denied {
                                    rule: denial.rule.clone(),
                                }),
                            },
                        );
                        jobs.finish(
                            &id,
                            JobStatus::Failed {
                                exit_code: None,
                                error: error.clone(),
                            },
                        );
                    }
                    self.push_events(
                        plugin,
                        std::iter::once(JobEvent::JobFailed {
                            job_id: id.clone(),
                            data: JobFailedData {
                                exit_code: None,
                                error,
                                failed_at: timestamp_now(),
                            },
                        }),
                    );
                }
                (id, Err(denial))
            }
        }
    }

    fn owned_record(&self, plugin: &str, id: &str) -> Option<JobRecord> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.records
            .get(id)
            .filter(|r| &*r.plugin == plugin)
            .cloned()
    }
}

fn default_queue() -> EventQueue {
    EventQueue::new(
        crate::decision::DEFAULT_MAX_QUEUED_EVENTS as usize,
        crate::decision::DEFAULT_MAX_QUEUED_BYTES as usize,
    )
}

/// Options for a host.
pub struct HostBuilder {
    policy: Arc<Policy>,
    repo: PathBuf,
    audit_log: Option<PathBuf>,
    warnings: Option<WarningSink>,
    support: SupportOptions,
    home: Option<Option<PathBuf>>,
    host_env: Option<Vec<(String, String)>>,
    tmp_dir: Option<PathBuf>,
    watch: Option<PathBuf>,
}

impl HostBuilder {
    /// Reloads the policy from `path` whenever the file changes — only when
    /// the new file validates; otherwise the previous policy stays and the
    /// diagnostics go to the warning sink. Running and pending jobs keep the
    /// plan they were given.
    pub fn watch_policy(mut self, path: impl Into<PathBuf>) -> Self {
        self.watch = Some(path.into());
        self
    }

    /// Writes a JSONL audit record per decision and per job end to `path`.
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_log = Some(path.into());
        self
    }

    /// Calls `sink` for every host warning (the library never prints).
    pub fn on_warning(mut self, sink: impl Fn(HostWarning) + Send + Sync + 'static) -> Self {
        self.warnings = Some(Arc::new(sink));
        self
    }

    /// Testing aid: pretend the kernel's Landlock ABI is at most `abi`
    /// (0 = no Landlock). Also read from `JOBWARDEN_LANDLOCK_ABI_MAX`.
    pub fn landlock_abi_max(mut self, abi: u32) -> Self {
        self.support.landlock_abi_max = Some(abi);
        self
    }

    /// Testing aid: do not use cgroups. Also read from `JOBWARDEN_CGROUP=off`.
    pub fn without_cgroups(mut self) -> Self {
        self.support.no_cgroups = true;
        self
    }

    /// The home directory for `{home}` (default: `HOME`).
    pub fn home(mut self, home: Option<PathBuf>) -> Self {
        self.home = Some(home);
        self
    }

    /// The host environment `env.inherit` draws from (default: this process's).
    pub fn host_env(mut self, env: Vec<(String, String)>) -> Self {
        self.host_env = Some(env);
        self
    }

    /// Where per-job directories are created (default: the system temp dir).
    pub fn tmp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tmp_dir = Some(dir.into());
        self
    }

    /// Starts the host and its thread.
    pub fn build(self) -> Result<PolicyJobHost, HostError> {
        let repo = self.repo.canonicalize().map_err(|source| HostError::Repo {
            path: self.repo.clone(),
            source,
        })?;
        if !repo.is_dir() {
            return Err(HostError::Repo {
                path: repo,
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let tmp_base = self.tmp_dir.unwrap_or_else(std::env::temp_dir);
        let tmp_root = make_tmp_root(&tmp_base).map_err(|source| HostError::TmpRoot {
            path: tmp_base.clone(),
            source,
        })?;
        let audit = match &self.audit_log {
            Some(path) => Some(AuditLog::open(path).map_err(|source| HostError::Audit {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let support = HostSupport::detect(&self.support);
        let poll = mio::Poll::new().map_err(HostError::Poller)?;
        let waker =
            mio::Waker::new(poll.registry(), supervisor::WAKER).map_err(HostError::Poller)?;
        let shared = Arc::new(Shared {
            policy: RwLock::new(self.policy),
            repo,
            home: self
                .home
                .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from)),
            host_env: self.host_env.unwrap_or_else(|| {
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect()
            }),
            tmp_root,
            support,
            next_id: AtomicU64::new(0),
            jobs: Mutex::new(JobTable::default()),
            queues: Mutex::new(HashMap::new()),
            queued: Condvar::new(),
            commands: Mutex::new(Vec::new()),
            waker: Arc::new(waker),
            shutting_down: AtomicBool::new(false),
            audit,
            warnings: self.warnings,
            kept_warnings: Mutex::new(VecDeque::new()),
        });
        let watcher = match &self.watch {
            Some(path) => Some(watch(&shared, path).map_err(|source| HostError::Watch {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jobwarden-host".into())
            .spawn(move || supervisor::run(thread_shared, poll))
            .map_err(HostError::Thread)?;
        Ok(PolicyJobHost {
            shared,
            thread: Mutex::new(Some(thread)),
            _watcher: watcher,
        })
    }
}

/// Watches `path`'s directory (editors replace files by renaming) and
/// reloads the policy when the file changes.
fn watch(shared: &Arc<Shared>, path: &Path) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let file = path.canonicalize().map_err(notify::Error::io)?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let weak = Arc::downgrade(shared);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if !ours || !(event.kind.is_modify() || event.kind.is_create()) {
            return;
        }
        // Let an editor finish writing before reading.
        std::thread::sleep(Duration::from_millis(150));
        if let Some(shared) = weak.upgrade() {
            shared.reload(&file);
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

fn make_tmp_root(base: &Path) -> std::io::Result<PathBuf> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("jobwarden-{}-{nonce:08x}", std::process::id()));
    crate::sandbox::os::create_private_dir(&dir)?;
    Ok(dir)
}

/// The host: owns the policy, the host thread and every job.
pub struct PolicyJobHost {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        HostBuilder {
            policy,
            repo: repo_root.as_ref().to_path_buf(),
            audit_log: None,
            warnings: None,
            support: SupportOptions::from_env(),
            home: None,
            host_env: None,
            tmp_dir: None,
            watch: None,
        }
    }

    /// The handle a plugin gets: it sees, cancels and drains only its own jobs.
    pub fn plugin(&self, name: &str) -> PluginHandle {
        PluginHandle {
            shared: self.shared.clone(),
            plugin: Arc::from(name),
        }
    }

    /// What was enforced for a job (any plugin's), once it has started.
    pub fn enforcement(&self, job_id: &str) -> Option<EnforcementReport> {
        let jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
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
        self.shared
            .policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the policy for new requests; running and pending jobs keep
    /// the plan they were given.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        *self
            .shared
            .policy
            .write()
            .unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// The last warnings (at most 100), oldest first, removed from the host.
    pub fn take_warnings(&self) -> Vec<HostWarning> {
        self.shared
            .kept_warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Cancels every job, waits for the grace period, kills what is left,
    /// reaps everything and stops the host thread. Events stay drainable.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.shared.send(Command::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            self.shared.warn("the host thread panicked".into());
        }
        let _ = std::fs::remove_dir_all(&self.shared.tmp_root);
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
}

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.plugin
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
        let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(queue) = queues.get_mut(&self.plugin)
                && !queue.is_empty()
            {
                return queue.drain();
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
        match self.shared.owned_record(&self.plugin, job_id) {
            Some(record) if !record.status.is_finished() => {
                self.shared.send(Command::Cancel {
                    id: job_id.clone(),
                    reason: format!("cancelled by plugin {}", self.plugin),
                });
                true
            }
            _ => false,
        }
    }

    fn status(&self, job_id: &JobId) -> Option<JobStatus> {
        self.shared
            .owned_record(&self.plugin, job_id)
            .map(|r| r.status)
    }

    fn drain_events(&self) -> Vec<JobEvent> {
        let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
        match queues.get_mut(&self.plugin) {
            Some(queue) if !queue.is_empty() => queue.drain(),
            _ => Vec::new(),
        }
    }
}
