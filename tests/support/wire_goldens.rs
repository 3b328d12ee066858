//! The golden wire form of every contract value, shared by the tests that
//! check it (`contract_wire.rs`, and `lua_plugin.rs`, whose Lua tables must
//! convert back to exactly these).

#![allow(dead_code)]

use jobwarden::contract::*;

pub const AT: &str = "2026-11-26T14:37:50.960Z";

pub fn event(job_id: &str, make: impl FnOnce(JobId) -> JobEvent) -> JobEvent {
    make(job_id.into())
}

/// One case per variant, and one per optional field left empty.
pub fn event_goldens() -> Vec<(JobEvent, &'static str)> {
    vec![
        (
            event("job-1", |job_id| JobEvent::JobStarted {
                job_id,
                data: JobStartedData {
                    pid: Some(4242),
                    started_at: AT.into(),
                },
            }),
            r#"{"type":"job_started","job_id":"job-1","data":{"pid":4242,"started_at":"2026-11-26T14:37:50.960Z"}}"#,
        ),
        (
            event("job-1", |job_id| JobEvent::JobStarted {
                job_id,
                data: JobStartedData {
                    pid: None,
                    started_at: AT.into(),
                },
            }),
            r#"{"type":"job_started","job_id":"job-1","data":{"pid":null,"started_at":"2026-11-26T14:37:50.960Z"}}"#,
        ),
        (
            event("job-2", |job_id| JobEvent::JobProgress {
                job_id,
                data: JobProgressData {
                    percent: Some(42),
                    step: Some("Compiling module 3/7".into()),
                },
            }),
            r#"{"type":"job_progress","job_id":"job-2","data":{"percent":42,"step":"Compiling module 3/7"}}"#,
        ),
        (
            event("job-2", |job_id| JobEvent::JobProgress {
                job_id,
                data: JobProgressData {
                    percent: None,
                    step: None,
                },
            }),
            r#"{"type":"job_progress","job_id":"job-2","data":{"percent":null,"step":null}}"#,
        ),
        (
            event("job-3", |job_id| JobEvent::JobLogLine {
                job_id,
                data: JobLogLineData {
                    line: "\u{1b}[32mok\u{1b}[0m".into(),
                    stream: "stdout".into(),
                },
            }),
            r#"{"type":"job_log_line","job_id":"job-3","data":{"line":"\u001b[32mok\u001b[0m","stream":"stdout"}}"#,
        ),
        (
            // The bytes are an array of numbers, as serde writes a Vec<u8>.
            event("job-4", |job_id| JobEvent::JobOutputChunk {
                job_id,
                data: JobOutputChunkData {
                    bytes: vec![104, 105, 10],
                    stream: "stderr".into(),
                },
            }),
            r#"{"type":"job_output_chunk","job_id":"job-4","data":{"bytes":[104,105,10],"stream":"stderr"}}"#,
        ),
        (
            event("job-5", |job_id| JobEvent::JobCancelled {
                job_id,
                data: JobCancelledData {
                    reason: "timeout after 30 s".into(),
                    cancelled_at: AT.into(),
                },
            }),
            r#"{"type":"job_cancelled","job_id":"job-5","data":{"reason":"timeout after 30 s","cancelled_at":"2026-11-26T14:37:50.960Z"}}"#,
        ),
        (
            event("job-6", |job_id| JobEvent::JobCompleted {
                job_id,
                data: JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: Some("done\n".into()),
                },
            }),
            r#"{"type":"job_completed","job_id":"job-6","data":{"exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":"done\n"}}"#,
        ),
        (
            event("job-6", |job_id| JobEvent::JobCompleted {
                job_id,
                data: JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: None,
                },
            }),
            r#"{"type":"job_completed","job_id":"job-6","data":{"exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":null}}"#,
        ),
        (
            event("job-7", |job_id| JobEvent::JobFailed {
                job_id,
                data: JobFailedData {
                    exit_code: Some(2),
                    error: "exited with status 2".into(),
                    failed_at: AT.into(),
                },
            }),
            r#"{"type":"job_failed","job_id":"job-7","data":{"exit_code":2,"error":"exited with status 2","failed_at":"2026-11-26T14:37:50.960Z"}}"#,
        ),
        (
            event("job-7", |job_id| JobEvent::JobFailed {
                job_id,
                data: JobFailedData {
                    exit_code: None,
                    error: "killed by the CPU time limit".into(),
                    failed_at: AT.into(),
                },
            }),
            r#"{"type":"job_failed","job_id":"job-7","data":{"exit_code":null,"error":"killed by the CPU time limit","failed_at":"2026-11-26T14:37:50.960Z"}}"#,
        ),
    ]
}

pub fn status_goldens() -> Vec<(JobStatus, &'static str)> {
    vec![
        (JobStatus::Pending, r#""Pending""#),
        (
            JobStatus::Running {
                started_at: AT.into(),
                percent: Some(10),
            },
            r#"{"Running":{"started_at":"2026-11-26T14:37:50.960Z","percent":10}}"#,
        ),
        (
            JobStatus::Running {
                started_at: AT.into(),
                percent: None,
            },
            r#"{"Running":{"started_at":"2026-11-26T14:37:50.960Z","percent":null}}"#,
        ),
        (
            JobStatus::Cancelled {
                reason: "cancelled by plugin ci".into(),
            },
            r#"{"Cancelled":{"reason":"cancelled by plugin ci"}}"#,
        ),
        (
            JobStatus::Completed { exit_code: 0 },
            r#"{"Completed":{"exit_code":0}}"#,
        ),
        (
            JobStatus::Failed {
                exit_code: Some(1),
                error: "exited with status 1".into(),
            },
            r#"{"Failed":{"exit_code":1,"error":"exited with status 1"}}"#,
        ),
        (
            JobStatus::Failed {
                exit_code: None,
                error: "denied".into(),
            },
            r#"{"Failed":{"exit_code":null,"error":"denied"}}"#,
        ),
    ]
}
