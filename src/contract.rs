//! The ProGit `JobHost` contract: the types a plugin sees and the trait a host
//! implements.
//!
//! These types mirror `progit_plugin_sdk::traits::jobs` of the published
//! `progit-plugin-sdk` 0.4 with the same names, fields, field order and serde
//! attributes, so every value serialises to the same bytes as the SDK's and
//! deserialises from them. Golden tests in `tests/contract_wire.rs` pin the
//! JSON of every variant; with the `progit` feature, `tests/progit.rs`
//! compares those bytes with the SDK's own types.
//!
//! # Wire shape
//!
//! Every event is `{"type": …, "job_id": …, "data": {…}}`: the payload is a
//! nested object, as the SDK 0.4 serialises it, as its doc comment promises
//! and as its tests assert ("data must be a nested object, not flattened"),
//! so Lua plugins receive `event.data.line`:
//!
//! ```json
//! {"type":"job_started","job_id":"job-1","data":{"pid":4242,"started_at":"2026-11-26T14:37:50.960Z"}}
//! ```
//!
//! An earlier text of the contract put `#[serde(flatten)]` on every `data`
//! field, which produced a flat object
//! (`{"type":"job_started","job_id":"job-1","pid":4242,…}`); jobwarden
//! emitted that shape before it followed the published SDK. Nothing writes
//! it any more; [`JobEvent::from_json`] still reads it, for logs kept from
//! then. Serde's own `Deserialize` of [`JobEvent`] is the SDK's: nested only.
//!
//! `JobStatus` carries no serde attributes in the contract, so it uses serde's
//! default external tagging: `"Pending"`, `{"Running":{"started_at":…,"percent":…}}`.

mod flat;

pub use flat::ReadEventError;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Opaque job identifier. Plugins must treat it as an opaque string; jobwarden
/// hands out `job-1`, `job-2`, … and never reuses one within a host.
pub type JobId = String;

/// What a plugin asks the host to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpawnRequest {
    /// Label shown in a TUI's job list. Control characters are refused, since a
    /// label is printed verbatim by the embedding UI.
    pub label: String,
    /// The name of a binary the policy trusts (`git`, `citadel`), never a path:
    /// the policy, not the request, decides which file runs.
    pub binary: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Working directory: absent or empty means the repo root; relative paths
    /// are taken from the repo root; absolute ones must lie inside the repo.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Variables the plugin wants to inject. Each must be allowed by the policy.
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// Wall-clock limit in seconds; `0` means the policy's default.
    #[serde(default)]
    pub timeout_secs: u64,
}

impl JobSpawnRequest {
    /// A request for `binary` with `args`, labelled with the binary's name,
    /// in the repo root, with no injected environment and the default timeout.
    pub fn new<I, S>(binary: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let binary = binary.into();
        Self {
            label: binary.clone(),
            binary,
            args: args.into_iter().map(Into::into).collect(),
            cwd: None,
            env: HashMap::new(),
            timeout_secs: 0,
        }
    }

    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets the working directory (relative to the repo, or absolute inside it).
    pub fn with_cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Adds a variable to inject.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets the timeout in seconds (0 = the policy's default).
    pub fn with_timeout_secs(mut self, secs: u64) -> Self {
        self.timeout_secs = secs;
        self
    }
}

/// Everything the host reports about a job, in order.
///
/// Serialised as `{"type": "job_…", "job_id": "…", "data": {…}}` with the
/// payload nested under `data`, byte for byte as `progit-plugin-sdk` 0.4.
///
/// Per job, `JobStarted` comes first (unless the job was refused before it
/// started), every output and progress event comes before the terminal event,
/// and there is exactly one terminal event: `JobCompleted`, `JobFailed` or
/// `JobCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job's first process exists.
    JobStarted {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobStartedData,
    },
    /// How far the job is, or a heartbeat with its resource use.
    JobProgress {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobProgressData,
    },
    /// One sanitised line of the job's stdout or stderr, or a `system` line
    /// written by jobwarden itself (enforcement report, drops, exit summary).
    JobLogLine {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobLogLineData,
    },
    /// A chunk of output, for policies that choose chunk mode.
    JobOutputChunk {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobOutputChunkData,
    },
    /// Terminal: cancelled by the plugin, by its timeout or by host shutdown.
    JobCancelled {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobCancelledData,
    },
    /// Terminal: the job's first process exited with status 0.
    JobCompleted {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobCompletedData,
    },
    /// Terminal: refused by the policy, failed to start, exited non-zero or
    /// was killed by a signal or a limit.
    JobFailed {
        /// The job the event is about.
        job_id: JobId,
        /// What the event says (nested under `data` on the wire).
        data: JobFailedData,
    },
}

impl JobEvent {
    /// The job this event is about.
    pub fn job_id(&self) -> &JobId {
        match self {
            JobEvent::JobStarted { job_id, .. }
            | JobEvent::JobProgress { job_id, .. }
            | JobEvent::JobLogLine { job_id, .. }
            | JobEvent::JobOutputChunk { job_id, .. }
            | JobEvent::JobCancelled { job_id, .. }
            | JobEvent::JobCompleted { job_id, .. }
            | JobEvent::JobFailed { job_id, .. } => job_id,
        }
    }

    /// True for the three events that end a job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobEvent::JobCancelled { .. }
                | JobEvent::JobCompleted { .. }
                | JobEvent::JobFailed { .. }
        )
    }

    /// True for job output (log lines from stdout/stderr and chunks): the only
    /// events a full queue may drop. Lifecycle events, progress and `system`
    /// lines are never dropped.
    pub fn is_droppable_output(&self) -> bool {
        match self {
            JobEvent::JobLogLine { data, .. } => data.stream != STREAM_SYSTEM,
            JobEvent::JobOutputChunk { .. } => true,
            _ => false,
        }
    }
}

/// `stream` value of lines read from the job's stdout.
pub const STREAM_STDOUT: &str = "stdout";
/// `stream` value of lines read from the job's stderr.
pub const STREAM_STDERR: &str = "stderr";
/// `stream` value of lines jobwarden writes about the job.
pub const STREAM_SYSTEM: &str = "system";

/// Payload of [`JobEvent::JobStarted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStartedData {
    /// Process id of the job's first process (also its session and group id on Unix).
    pub pid: Option<u32>,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-26T14:37:50.960Z`.
    pub started_at: String,
}

/// Payload of [`JobEvent::JobProgress`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgressData {
    /// 0–100 when the job declared how far it is; `None` otherwise.
    pub percent: Option<u8>,
    /// The latest declared step, or the job's resource use when it declared none.
    pub step: Option<String>,
}

/// Payload of [`JobEvent::JobLogLine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLogLineData {
    /// The line without its terminator, sanitised as the policy says.
    pub line: String,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
}

/// Payload of [`JobEvent::JobOutputChunk`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutputChunkData {
    /// The bytes as read (sanitised unless the policy says `raw`). Serialised
    /// by serde as an array of numbers.
    pub bytes: Vec<u8>,
    /// `stdout` or `stderr`.
    pub stream: String,
}

/// Payload of [`JobEvent::JobCancelled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCancelledData {
    /// Why, in words: `timeout after 30 s`, `cancelled by plugin ci`, …
    pub reason: String,
    /// RFC 3339 UTC.
    pub cancelled_at: String,
}

/// Payload of [`JobEvent::JobCompleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCompletedData {
    /// Always 0: a non-zero exit is a [`JobEvent::JobFailed`].
    pub exit_code: i32,
    /// RFC 3339 UTC.
    pub completed_at: String,
    /// The last bytes of stdout (the policy's `output.tail_bytes`), sanitised;
    /// `None` when the policy keeps no tail.
    pub output_tail: Option<String>,
}

/// Payload of [`JobEvent::JobFailed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailedData {
    /// The exit status, or `None` when the job never ran or died by a signal.
    pub exit_code: Option<i32>,
    /// What went wrong, naming the policy rule or the limit where there is one.
    pub error: String,
    /// RFC 3339 UTC.
    pub failed_at: String,
}

/// The host side of the contract: what a plugin may ask of the host.
///
/// A plugin never holds a thread or a process; it asks the host and watches
/// events. Every method must return quickly: a TUI calls them from its render
/// loop.
pub trait JobHost: Send + Sync {
    /// Ask for a job. Always returns an id; a refused request yields a single
    /// `JobFailed` event whose error names the rule that refused it.
    fn spawn(&self, req: JobSpawnRequest) -> JobId;

    /// Cancel one of this plugin's jobs. True when a cancellation was started;
    /// false when the job had already ended, is not this plugin's, or the
    /// handle may not cancel (see [`crate::capabilities`]).
    fn cancel(&self, job_id: &JobId) -> bool;

    /// A snapshot of one of this plugin's jobs; `None` for an unknown id.
    fn status(&self, job_id: &JobId) -> Option<JobStatus>;

    /// Every event for this plugin's jobs since the previous call. Never blocks.
    fn drain_events(&self) -> Vec<JobEvent>;
}

/// A job's state, for lists in a UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Accepted and waiting for a free slot under the plugin's concurrency limit.
    Pending,
    /// Running since `started_at`; `percent` is the latest declared progress.
    Running {
        /// When the first process started (RFC 3339, UTC).
        started_at: String,
        /// The latest progress the job declared, 0–100.
        percent: Option<u8>,
    },
    /// Ended by a cancel, a timeout or host shutdown.
    Cancelled {
        /// Who or what cancelled it, in words.
        reason: String,
    },
    /// Exited with status 0.
    Completed {
        /// Always 0.
        exit_code: i32,
    },
    /// Refused, failed to start, exited non-zero or was killed.
    Failed {
        /// The exit status, when the job ran and exited on its own.
        exit_code: Option<i32>,
        /// Why it failed, in words that name the problem and the fix.
        error: String,
    },
}

impl JobStatus {
    /// True once the job has ended, however it ended.
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running { .. })
    }
}

/// The current time as the contract's timestamps want it: RFC 3339, UTC,
/// milliseconds, `Z` suffix.
pub fn timestamp_now() -> String {
    format_timestamp(chrono::Utc::now())
}

/// Formats a UTC time as the contract's timestamps want it.
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
