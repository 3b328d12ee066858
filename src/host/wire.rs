//! jobwarden's own lines in a JSON event stream (`jobwarden run --json`),
//! beside the contract's events.
//!
//! The invariant: a line is either one of the contract's seven events,
//! exactly as the published SDK writes it, or a jobwarden extension line
//! whose `type` begins with `jobwarden.` — a prefix no contract event has —
//! so a reader tells them apart by `type` alone and a contract reader that
//! skips `jobwarden.*` lines sees a pure contract stream. Extension lines
//! have the events' shape (`type`, `job_id`, `data`) and are documented in
//! the README:
//!
//! - `jobwarden.enforcement`: the job's enforcement report, item by item;
//! - `jobwarden.usage`: after the terminal event, what the job used (wall
//!   time, CPU, peak resident memory, most processes seen at once) and what
//!   ended it (`killed_by`).

use super::{JobEnd, Usage};
use crate::contract::{JobEvent, JobId};
use crate::sandbox::EnforcementReport;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The `type` of the enforcement report line.
pub const ENFORCEMENT: &str = "jobwarden.enforcement";
/// The `type` of the usage line.
pub const USAGE: &str = "jobwarden.usage";
/// What every extension line's `type` begins with.
pub const EXTENSION_PREFIX: &str = "jobwarden.";

/// One jobwarden extension line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtensionLine {
    /// [`ENFORCEMENT`] or [`USAGE`] (later versions may add others, all
    /// beginning with [`EXTENSION_PREFIX`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// The job the line is about.
    pub job_id: JobId,
    /// The payload; its shape depends on `kind`.
    pub data: serde_json::Value,
}

impl ExtensionLine {
    /// The enforcement report of `job_id`: `platform`, the one-line
    /// `summary` the system log line shows, and every item (`name`,
    /// `status`, `short`, `detail`, `required`).
    pub fn enforcement(job_id: &str, report: &EnforcementReport) -> Self {
        Self {
            kind: ENFORCEMENT.into(),
            job_id: job_id.into(),
            data: json!({
                "platform": report.platform,
                "summary": report.summary_line(),
                "items": report.items,
            }),
        }
    }

    /// What `job_id` used and how it ended; `error` is its `JobFailed`
    /// error or `JobCancelled` reason, if it had one.
    pub fn usage(job_id: &str, usage: &Usage, end: Option<&JobEnd>, error: Option<&str>) -> Self {
        Self {
            kind: USAGE.into(),
            job_id: job_id.into(),
            data: json!({
                "wall_secs": usage.elapsed.as_secs_f64(),
                "cpu_secs": usage.cpu_time.as_secs_f64(),
                "peak_rss_bytes": usage.peak_rss_bytes,
                // Samples can miss a short job; its first process was there.
                "peak_processes": if ran(end) { usage.peak_processes.max(1) } else { usage.peak_processes },
                "end": end,
                "killed_by": end.and_then(|end| killed_by(end, error.unwrap_or_default())),
            }),
        }
    }

    /// The line as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an extension line serialises")
    }
}

/// One line of a `run --json` stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WireLine {
    /// One of the contract's events.
    Event(JobEvent),
    /// A jobwarden extension line.
    Extension(ExtensionLine),
}

impl WireLine {
    /// Reads one line: an extension line by its `type`, else a contract
    /// event in the SDK's nested shape.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(line)?;
        let is_extension = value
            .get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.starts_with(EXTENSION_PREFIX));
        if is_extension {
            serde_json::from_value(value).map(WireLine::Extension)
        } else {
            serde_json::from_value(value).map(WireLine::Event)
        }
    }
}

/// Whether a job with this end ran at all.
fn ran(end: Option<&JobEnd>) -> bool {
    matches!(
        end,
        Some(
            JobEnd::Exited { .. } | JobEnd::Signaled { .. } | JobEnd::TimedOut | JobEnd::Cancelled
        )
    )
}

/// What ended a job, in one word: `timeout`, `cancel`, the limit that
/// killed it (`cpu`, `memory`, `file_size`), or `signal` for any other
/// signal; `None` when it exited or never ran. `error` is its terminal
/// event's text, whose words name the limit (see `conclude.rs`).
pub fn killed_by(end: &JobEnd, error: &str) -> Option<&'static str> {
    match end {
        JobEnd::TimedOut => Some("timeout"),
        JobEnd::Cancelled => Some("cancel"),
        JobEnd::Signaled { .. } => Some(
            super::conclude::LIMIT_KILLS
                .iter()
                .find(|(words, _)| error.contains(words))
                .map_or("signal", |(_, limit)| limit),
        ),
        _ => None,
    }
}
