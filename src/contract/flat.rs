//! Reading an event in either wire shape. jobwarden writes only the nested
//! shape of `progit-plugin-sdk` 0.4; [`JobEvent::from_json`] reads that and
//! the flat shape of the earlier contract text, so event logs kept from
//! before the change (`run --json` output) stay readable.
//!
//! The shapes are told apart by the `data` key: every nested event has one,
//! and no flat event does, since no payload of any variant has a field
//! called `data`.

use super::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobId, JobLogLineData,
    JobOutputChunkData, JobProgressData, JobStartedData,
};
use serde::Deserialize;

/// Why [`JobEvent::from_json`] could not read an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadEventError {
    /// The text is not JSON at all.
    #[error("a job event must be one JSON object: {0}")]
    Json(#[source] serde_json::Error),
    /// The object has a `data` key but is not a valid nested event.
    #[error(
        "not a job event in the nested shape {{\"type\", \"job_id\", \"data\": {{…}}}} of progit-plugin-sdk 0.4: {0}"
    )]
    Nested(#[source] serde_json::Error),
    /// The object has no `data` key and is not a valid flat event either.
    #[error(
        "not a job event: without a \"data\" object it is read in the flat shape of the earlier contract text, and that failed: {0}; events are written as {{\"type\", \"job_id\", \"data\": {{…}}}}"
    )]
    Flat(#[source] serde_json::Error),
}

impl JobEvent {
    /// Reads one event written in the SDK 0.4's nested shape (what jobwarden
    /// writes) or in the flat shape of the earlier contract text.
    ///
    /// Serde's `Deserialize` of [`JobEvent`] accepts only the nested shape,
    /// exactly like the SDK's own type; use this where old logs may be read.
    pub fn from_json(text: &str) -> Result<JobEvent, ReadEventError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(ReadEventError::Json)?;
        if value.get("data").is_some() {
            serde_json::from_value(value).map_err(ReadEventError::Nested)
        } else {
            serde_json::from_value::<FlatEvent>(value)
                .map(JobEvent::from)
                .map_err(ReadEventError::Flat)
        }
    }
}

/// The flat shape: the earlier text's attributes, `#[serde(flatten)]` on
/// every payload. Read only; never written.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", rename = "JobEvent")]
#[allow(
    clippy::enum_variant_names,
    reason = "the variant names are the contract's, and make the wire tags"
)]
enum FlatEvent {
    JobStarted {
        job_id: JobId,
        #[serde(flatten)]
        data: JobStartedData,
    },
    JobProgress {
        job_id: JobId,
        #[serde(flatten)]
        data: JobProgressData,
    },
    JobLogLine {
        job_id: JobId,
        #[serde(flatten)]
        data: JobLogLineData,
    },
    JobOutputChunk {
        job_id: JobId,
        #[serde(flatten)]
        data: JobOutputChunkData,
    },
    JobCancelled {
        job_id: JobId,
        #[serde(flatten)]
        data: JobCancelledData,
    },
    JobCompleted {
        job_id: JobId,
        #[serde(flatten)]
        data: JobCompletedData,
    },
    JobFailed {
        job_id: JobId,
        #[serde(flatten)]
        data: JobFailedData,
    },
}

impl From<FlatEvent> for JobEvent {
    fn from(event: FlatEvent) -> Self {
        match event {
            FlatEvent::JobStarted { job_id, data } => JobEvent::JobStarted { job_id, data },
            FlatEvent::JobProgress { job_id, data } => JobEvent::JobProgress { job_id, data },
            FlatEvent::JobLogLine { job_id, data } => JobEvent::JobLogLine { job_id, data },
            FlatEvent::JobOutputChunk { job_id, data } => JobEvent::JobOutputChunk { job_id, data },
            FlatEvent::JobCancelled { job_id, data } => JobEvent::JobCancelled { job_id, data },
            FlatEvent::JobCompleted { job_id, data } => JobEvent::JobCompleted { job_id, data },
            FlatEvent::JobFailed { job_id, data } => JobEvent::JobFailed { job_id, data },
        }
    }
}
