//! The contract's types, whatever their wire shape: every event, status and
//! request survives a trip through JSON unchanged, and the questions the host
//! asks of an event (whose is it, does it end the job, may a full queue drop
//! it) have the documented answers for every variant.
//!
//! `tests/contract_wire.rs` pins the exact bytes of each variant; these tests
//! say what must hold for any encoding, so they keep checking the types when
//! the wire shape changes.

use jobwarden::contract::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobLogLineData,
    JobOutputChunkData, JobProgressData, JobSpawnRequest, JobStartedData, JobStatus, STREAM_STDERR,
    STREAM_STDOUT, STREAM_SYSTEM, format_timestamp,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any characters, including the ones JSON must escape.
    proptest::string::string_regex("(?s).{0,12}").unwrap()
}

fn stream() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(STREAM_STDOUT.to_string()),
        Just(STREAM_STDERR.to_string()),
        Just(STREAM_SYSTEM.to_string()),
        text(),
    ]
}

fn event() -> impl Strategy<Value = JobEvent> {
    let id = "job-[0-9]{1,3}";
    prop_oneof![
        (id, any::<Option<u32>>(), text()).prop_map(|(job_id, pid, started_at)| {
            JobEvent::JobStarted {
                job_id,
                data: JobStartedData { pid, started_at },
            }
        }),
        (id, any::<Option<u8>>(), proptest::option::of(text())).prop_map(
            |(job_id, percent, step)| JobEvent::JobProgress {
                job_id,
                data: JobProgressData { percent, step },
            }
        ),
        (id, text(), stream()).prop_map(|(job_id, line, stream)| JobEvent::JobLogLine {
            job_id,
            data: JobLogLineData { line, stream },
        }),
        (id, proptest::collection::vec(any::<u8>(), 0..16), stream()).prop_map(
            |(job_id, bytes, stream)| JobEvent::JobOutputChunk {
                job_id,
                data: JobOutputChunkData { bytes, stream },
            }
        ),
        (id, text(), text()).prop_map(|(job_id, reason, cancelled_at)| {
            JobEvent::JobCancelled {
                job_id,
                data: JobCancelledData {
                    reason,
                    cancelled_at,
                },
            }
        }),
        (id, any::<i32>(), text(), proptest::option::of(text())).prop_map(
            |(job_id, exit_code, completed_at, output_tail)| JobEvent::JobCompleted {
                job_id,
                data: JobCompletedData {
                    exit_code,
                    completed_at,
                    output_tail,
                },
            }
        ),
        (id, any::<Option<i32>>(), text(), text()).prop_map(
            |(job_id, exit_code, error, failed_at)| JobEvent::JobFailed {
                job_id,
                data: JobFailedData {
                    exit_code,
                    error,
                    failed_at,
                },
            }
        ),
    ]
}

fn status() -> impl Strategy<Value = JobStatus> {
    prop_oneof![
        Just(JobStatus::Pending),
        (text(), any::<Option<u8>>()).prop_map(|(started_at, percent)| JobStatus::Running {
            started_at,
            percent
        }),
        text().prop_map(|reason| JobStatus::Cancelled { reason }),
        any::<i32>().prop_map(|exit_code| JobStatus::Completed { exit_code }),
        (any::<Option<i32>>(), text())
            .prop_map(|(exit_code, error)| JobStatus::Failed { exit_code, error }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_event_survives_json(event in event()) {
        let json = serde_json::to_string(&event).unwrap();
        let back: JobEvent = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn every_status_survives_json(status in status()) {
        let json = serde_json::to_string(&status).unwrap();
        let back: JobStatus = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, status);
    }

    #[test]
    fn every_request_survives_json(
        binary in "[a-z]{1,8}",
        args in proptest::collection::vec(text(), 0..4),
        label in text(),
        cwd in proptest::option::of(text()),
        env in proptest::collection::hash_map("[A-Z_]{1,6}", text(), 0..3),
        timeout in any::<u64>(),
    ) {
        let mut request = JobSpawnRequest::new(binary, args).with_label(label);
        request.cwd = cwd;
        request.env = env;
        request.timeout_secs = timeout;
        let json = serde_json::to_string(&request).unwrap();
        let back: JobSpawnRequest = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, request);
    }
}

fn line(stream: &str) -> JobEvent {
    JobEvent::JobLogLine {
        job_id: "job-1".into(),
        data: JobLogLineData {
            line: "x".into(),
            stream: stream.into(),
        },
    }
}

#[test]
fn what_the_host_asks_of_each_event() {
    let at = "2026-11-26T14:37:50.960Z".to_string();
    // (event, ends the job, may be dropped from a full queue)
    let cases = [
        (
            JobEvent::JobStarted {
                job_id: "job-1".into(),
                data: JobStartedData {
                    pid: Some(1),
                    started_at: at.clone(),
                },
            },
            false,
            false,
        ),
        (
            JobEvent::JobProgress {
                job_id: "job-1".into(),
                data: JobProgressData {
                    percent: Some(5),
                    step: None,
                },
            },
            false,
            false,
        ),
        (line(STREAM_STDOUT), false, true),
        (line(STREAM_STDERR), false, true),
        (line(STREAM_SYSTEM), false, false),
        (
            JobEvent::JobOutputChunk {
                job_id: "job-1".into(),
                data: JobOutputChunkData {
                    bytes: b"x".to_vec(),
                    stream: STREAM_STDOUT.into(),
                },
            },
            false,
            true,
        ),
        (
            JobEvent::JobCancelled {
                job_id: "job-1".into(),
                data: JobCancelledData {
                    reason: "r".into(),
                    cancelled_at: at.clone(),
                },
            },
            true,
            false,
        ),
        (
            JobEvent::JobCompleted {
                job_id: "job-1".into(),
                data: JobCompletedData {
                    exit_code: 0,
                    completed_at: at.clone(),
                    output_tail: None,
                },
            },
            true,
            false,
        ),
        (
            JobEvent::JobFailed {
                job_id: "job-1".into(),
                data: JobFailedData {
                    exit_code: Some(1),
                    error: "e".into(),
                    failed_at: at,
                },
            },
            true,
            false,
        ),
    ];
    for (event, terminal, droppable) in cases {
        assert_eq!(event.job_id(), "job-1", "{event:?}");
        assert_eq!(event.is_terminal(), terminal, "{event:?}");
        assert_eq!(event.is_droppable_output(), droppable, "{event:?}");
    }
}

#[test]
fn which_statuses_are_finished() {
    let cases = [
        (JobStatus::Pending, false),
        (
            JobStatus::Running {
                started_at: String::new(),
                percent: None,
            },
            false,
        ),
        (
            JobStatus::Cancelled {
                reason: String::new(),
            },
            true,
        ),
        (JobStatus::Completed { exit_code: 0 }, true),
        (
            JobStatus::Failed {
                exit_code: None,
                error: String::new(),
            },
            true,
        ),
    ];
    for (status, finished) in cases {
        assert_eq!(status.is_finished(), finished, "{status:?}");
    }
}

#[test]
fn a_request_names_its_defaults() {
    let request = JobSpawnRequest::new("git", ["status"]);
    assert_eq!(request.label, "git");
    assert_eq!(request.binary, "git");
    assert_eq!(request.args, ["status"]);
    assert_eq!(request.cwd, None);
    assert!(request.env.is_empty());
    assert_eq!(request.timeout_secs, 0);
    let request = request
        .with_label("l")
        .with_cwd("sub")
        .with_env("A", "1")
        .with_timeout_secs(9);
    assert_eq!(request.label, "l");
    assert_eq!(request.cwd.as_deref(), Some("sub"));
    assert_eq!(request.env["A"], "1");
    assert_eq!(request.timeout_secs, 9);
    // A plugin may leave out what has a default.
    let parsed: JobSpawnRequest =
        serde_json::from_str(r#"{"label":"l","binary":"git","args":[]}"#).unwrap();
    assert_eq!(
        parsed,
        JobSpawnRequest::new("git", Vec::<String>::new()).with_label("l")
    );
}

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    use chrono::TimeZone;
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 11, 26, 14, 37, 50)
        .unwrap()
        + chrono::Duration::milliseconds(960);
    assert_eq!(format_timestamp(at), "2026-11-26T14:37:50.960Z");
    let now = jobwarden::contract::timestamp_now();
    assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok(), "{now}");
    assert!(now.ends_with('Z') && now.len() == 24, "{now}");
}
