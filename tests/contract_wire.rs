//! Golden tests of the contract's wire format: the exact JSON of every
//! `JobEvent` and `JobStatus` variant and of `JobSpawnRequest`, and a round
//! trip of each. A change here breaks every plugin that parses events.

use jobwarden::contract::*;
use serde_json::json;
use std::collections::HashMap;

fn golden<T>(value: T, expected: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(&value).unwrap();
    assert_eq!(text, expected, "wire format changed");
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(back, value, "round trip changed the value");
}

const AT: &str = "2026-11-26T14:37:50.960Z";

#[test]
fn job_started_is_flat() {
    golden(
        JobEvent::JobStarted {
            job_id: "job-1".into(),
            data: JobStartedData {
                pid: Some(4242),
                started_at: AT.into(),
            },
        },
        r#"{"type":"job_started","job_id":"job-1","pid":4242,"started_at":"2026-11-26T14:37:50.960Z"}"#,
    );
    golden(
        JobEvent::JobStarted {
            job_id: "job-1".into(),
            data: JobStartedData {
                pid: None,
                started_at: AT.into(),
            },
        },
        r#"{"type":"job_started","job_id":"job-1","pid":null,"started_at":"2026-11-26T14:37:50.960Z"}"#,
    );
}

#[test]
fn job_progress() {
    golden(
        JobEvent::JobProgress {
            job_id: "job-2".into(),
            data: JobProgressData {
                percent: Some(42),
                step: Some("Compiling module 3/7".into()),
            },
        },
        r#"{"type":"job_progress","job_id":"job-2","percent":42,"step":"Compiling module 3/7"}"#,
    );
    golden(
        JobEvent::JobProgress {
            job_id: "job-2".into(),
            data: JobProgressData {
                percent: None,
                step: None,
            },
        },
        r#"{"type":"job_progress","job_id":"job-2","percent":null,"step":null}"#,
    );
}

#[test]
fn job_log_line() {
    golden(
        JobEvent::JobLogLine {
            job_id: "job-3".into(),
            data: JobLogLineData {
                line: "\u{1b}[32mok\u{1b}[0m".into(),
                stream: "stdout".into(),
            },
        },
        r#"{"type":"job_log_line","job_id":"job-3","line":"\u001b[32mok\u001b[0m","stream":"stdout"}"#,
    );
}

#[test]
fn job_output_chunk_bytes_are_a_number_array() {
    golden(
        JobEvent::JobOutputChunk {
            job_id: "job-4".into(),
            data: JobOutputChunkData {
                bytes: vec![104, 105, 10],
                stream: "stderr".into(),
            },
        },
        r#"{"type":"job_output_chunk","job_id":"job-4","bytes":[104,105,10],"stream":"stderr"}"#,
    );
}

#[test]
fn job_cancelled() {
    golden(
        JobEvent::JobCancelled {
            job_id: "job-5".into(),
            data: JobCancelledData {
                reason: "timeout after 30 s".into(),
                cancelled_at: AT.into(),
            },
        },
        r#"{"type":"job_cancelled","job_id":"job-5","reason":"timeout after 30 s","cancelled_at":"2026-11-26T14:37:50.960Z"}"#,
    );
}

#[test]
fn job_completed() {
    golden(
        JobEvent::JobCompleted {
            job_id: "job-6".into(),
            data: JobCompletedData {
                exit_code: 0,
                completed_at: AT.into(),
                output_tail: Some("done\n".into()),
            },
        },
        r#"{"type":"job_completed","job_id":"job-6","exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":"done\n"}"#,
    );
    golden(
        JobEvent::JobCompleted {
            job_id: "job-6".into(),
            data: JobCompletedData {
                exit_code: 0,
                completed_at: AT.into(),
                output_tail: None,
            },
        },
        r#"{"type":"job_completed","job_id":"job-6","exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":null}"#,
    );
}

#[test]
fn job_failed() {
    golden(
        JobEvent::JobFailed {
            job_id: "job-7".into(),
            data: JobFailedData {
                exit_code: Some(2),
                error: "exited with status 2".into(),
                failed_at: AT.into(),
            },
        },
        r#"{"type":"job_failed","job_id":"job-7","exit_code":2,"error":"exited with status 2","failed_at":"2026-11-26T14:37:50.960Z"}"#,
    );
    golden(
        JobEvent::JobFailed {
            job_id: "job-7".into(),
            data: JobFailedData {
                exit_code: None,
                error: "killed by the CPU time limit".into(),
                failed_at: AT.into(),
            },
        },
        r#"{"type":"job_failed","job_id":"job-7","exit_code":null,"error":"killed by the CPU time limit","failed_at":"2026-11-26T14:37:50.960Z"}"#,
    );
}

#[test]
fn every_event_variant_has_a_golden_test() {
    // If a variant is added to the contract, this match stops compiling and
    // points here: add its golden test above.
    fn covered(event: &JobEvent) -> &'static str {
        match event {
            JobEvent::JobStarted { .. } => "job_started",
            JobEvent::JobProgress { .. } => "job_progress",
            JobEvent::JobLogLine { .. } => "job_log_line",
            JobEvent::JobOutputChunk { .. } => "job_output_chunk",
            JobEvent::JobCancelled { .. } => "job_cancelled",
            JobEvent::JobCompleted { .. } => "job_completed",
            JobEvent::JobFailed { .. } => "job_failed",
        }
    }
    let event = JobEvent::JobStarted {
        job_id: "x".into(),
        data: JobStartedData {
            pid: None,
            started_at: AT.into(),
        },
    };
    assert_eq!(covered(&event), "job_started");
}

#[test]
fn job_status_uses_external_tagging() {
    golden(JobStatus::Pending, r#""Pending""#);
    golden(
        JobStatus::Running {
            started_at: AT.into(),
            percent: Some(10),
        },
        r#"{"Running":{"started_at":"2026-11-26T14:37:50.960Z","percent":10}}"#,
    );
    golden(
        JobStatus::Running {
            started_at: AT.into(),
            percent: None,
        },
        r#"{"Running":{"started_at":"2026-11-26T14:37:50.960Z","percent":null}}"#,
    );
    golden(
        JobStatus::Cancelled {
            reason: "cancelled by plugin ci".into(),
        },
        r#"{"Cancelled":{"reason":"cancelled by plugin ci"}}"#,
    );
    golden(
        JobStatus::Completed { exit_code: 0 },
        r#"{"Completed":{"exit_code":0}}"#,
    );
    golden(
        JobStatus::Failed {
            exit_code: Some(1),
            error: "exited with status 1".into(),
        },
        r#"{"Failed":{"exit_code":1,"error":"exited with status 1"}}"#,
    );
    golden(
        JobStatus::Failed {
            exit_code: None,
            error: "denied".into(),
        },
        r#"{"Failed":{"exit_code":null,"error":"denied"}}"#,
    );
}

#[test]
fn spawn_request_with_every_field() {
    let request = JobSpawnRequest {
        label: "plan devnet".into(),
        binary: "citadel".into(),
        args: vec!["plan".into(), "--env".into(), "devnet".into()],
        cwd: Some("infra".into()),
        env: HashMap::from([("CITADEL_ENV".to_string(), "devnet".to_string())]),
        timeout_secs: 60,
    };
    golden(
        request,
        r#"{"label":"plan devnet","binary":"citadel","args":["plan","--env","devnet"],"cwd":"infra","env":{"CITADEL_ENV":"devnet"},"timeout_secs":60}"#,
    );
}

#[test]
fn spawn_request_defaults_fill_in_missing_fields() {
    let minimal = json!({"label": "status", "binary": "git", "args": ["status"]});
    let request: JobSpawnRequest = serde_json::from_value(minimal).unwrap();
    assert_eq!(
        request,
        JobSpawnRequest::new("git", ["status"]).with_label("status")
    );
    assert_eq!(request.cwd, None);
    assert!(request.env.is_empty());
    assert_eq!(request.timeout_secs, 0);
    // Serialising writes every field, defaults included.
    golden(
        request,
        r#"{"label":"status","binary":"git","args":["status"],"cwd":null,"env":{},"timeout_secs":0}"#,
    );
}

#[test]
fn spawn_request_requires_label_binary_and_args() {
    for missing in ["label", "binary", "args"] {
        let mut value = json!({"label": "l", "binary": "git", "args": []});
        value.as_object_mut().unwrap().remove(missing);
        let err = serde_json::from_value::<JobSpawnRequest>(value).unwrap_err();
        assert!(err.to_string().contains(missing), "{err}");
    }
}

#[test]
fn timestamps_are_rfc3339_utc_with_millis() {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T14:37:50.96+02:00")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(format_timestamp(at), "2026-11-26T12:37:50.960Z");
    let now = timestamp_now();
    assert!(now.ends_with('Z') && now.len() == AT.len(), "{now}");
}
