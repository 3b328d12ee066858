//! Golden tests of the contract's wire format: the exact JSON of every
//! `JobEvent` and `JobStatus` variant and of `JobSpawnRequest`, and a round
//! trip of each. A change here breaks every plugin that parses events.
//!
//! The shape is the published `progit-plugin-sdk` 0.4's: each event's
//! payload nested under `data`. With `--features progit`, `tests/progit.rs`
//! also compares these bytes with the SDK's own types.

#[path = "support/wire_goldens.rs"]
mod wire_goldens;

use jobwarden::contract::*;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use wire_goldens::{AT, event_goldens, status_goldens};

fn golden<T>(value: T, expected: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(&value).unwrap();
    assert_eq!(text, expected, "wire format changed");
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(back, value, "round trip changed the value");
}

/// The same events in the flat shape jobwarden wrote before it followed the
/// published SDK (the earlier contract text's `#[serde(flatten)]`).
fn flat_event_goldens() -> Vec<(JobEvent, &'static str)> {
    let flat = [
        r#"{"type":"job_started","job_id":"job-1","pid":4242,"started_at":"2026-11-26T14:37:50.960Z"}"#,
        r#"{"type":"job_started","job_id":"job-1","pid":null,"started_at":"2026-11-26T14:37:50.960Z"}"#,
        r#"{"type":"job_progress","job_id":"job-2","percent":42,"step":"Compiling module 3/7"}"#,
        r#"{"type":"job_progress","job_id":"job-2","percent":null,"step":null}"#,
        r#"{"type":"job_log_line","job_id":"job-3","line":"\u001b[32mok\u001b[0m","stream":"stdout"}"#,
        r#"{"type":"job_output_chunk","job_id":"job-4","bytes":[104,105,10],"stream":"stderr"}"#,
        r#"{"type":"job_cancelled","job_id":"job-5","reason":"timeout after 30 s","cancelled_at":"2026-11-26T14:37:50.960Z"}"#,
        r#"{"type":"job_completed","job_id":"job-6","exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":"done\n"}"#,
        r#"{"type":"job_completed","job_id":"job-6","exit_code":0,"completed_at":"2026-11-26T14:37:50.960Z","output_tail":null}"#,
        r#"{"type":"job_failed","job_id":"job-7","exit_code":2,"error":"exited with status 2","failed_at":"2026-11-26T14:37:50.960Z"}"#,
        r#"{"type":"job_failed","job_id":"job-7","exit_code":null,"error":"killed by the CPU time limit","failed_at":"2026-11-26T14:37:50.960Z"}"#,
    ];
    let nested = event_goldens();
    assert_eq!(flat.len(), nested.len(), "one flat text per golden");
    nested
        .into_iter()
        .zip(flat)
        .map(|((event, _), text)| (event, text))
        .collect()
}

/// The serde tag of an event. The match is exhaustive: a new variant stops
/// this compiling until it gets an arm here.
fn event_tag(event: &JobEvent) -> &'static str {
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

/// The serde tag of a status, exhaustively.
fn status_tag(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "Pending",
        JobStatus::Running { .. } => "Running",
        JobStatus::Cancelled { .. } => "Cancelled",
        JobStatus::Completed { .. } => "Completed",
        JobStatus::Failed { .. } => "Failed",
    }
}

/// Every variant name the type's own derived `Deserialize` knows, read from
/// serde's "unknown variant `?`, expected one of `a`, `b`, …" error. This
/// list comes from the enum definition itself, so it grows with the enum
/// whether or not anyone remembers these tests.
fn variants_serde_knows<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    unknown: serde_json::Value,
) -> BTreeSet<String> {
    let err = serde_json::from_value::<T>(unknown)
        .unwrap_err()
        .to_string();
    let list = err
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("serde's unknown-variant message changed: {err}"))
        .1;
    list.split(", ")
        .map(|name| name.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn every_event_serialises_to_its_golden_and_back() {
    for (event, expected) in event_goldens() {
        golden(event, expected);
    }
}

#[test]
fn every_event_variant_has_a_golden() {
    let all = variants_serde_knows::<JobEvent>(json!({"type": "?", "job_id": "x"}));
    assert_eq!(all.len(), 7, "{all:?}");
    let goldens = event_goldens();
    let covered: BTreeSet<String> = goldens
        .iter()
        .map(|(event, _)| event_tag(event).to_string())
        .collect();
    assert_eq!(
        covered, all,
        "every JobEvent variant needs a golden in event_goldens()"
    );
    // The exhaustive match and the tags on the wire agree.
    for (event, text) in &goldens {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["type"], event_tag(event), "{text}");
    }
}

#[test]
fn every_event_nests_its_payload_under_data() {
    for (event, text) in event_goldens() {
        let value = serde_json::to_value(&event).unwrap();
        let mut keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["data", "job_id", "type"], "{text}");
        assert!(value["data"].is_object(), "{text}");
        assert_eq!(&value["job_id"], event.job_id().as_str(), "{text}");
    }
}

#[test]
fn the_flat_shape_of_the_earlier_text_is_still_read_but_never_written() {
    let flat = flat_event_goldens();
    let covered: BTreeSet<&str> = flat.iter().map(|(event, _)| event_tag(event)).collect();
    assert_eq!(covered.len(), 7, "a flat case per variant: {covered:?}");
    for (event, text) in flat {
        assert_eq!(
            JobEvent::from_json(text).unwrap(),
            event,
            "flat text read: {text}"
        );
        assert_ne!(serde_json::to_string(&event).unwrap(), text);
        // Serde's own Deserialize is the SDK's: nested only, like the SDK's
        // type, so a consumer sees the same answer from both.
        let err = serde_json::from_str::<JobEvent>(text).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
    }
    for (event, text) in event_goldens() {
        assert_eq!(JobEvent::from_json(text).unwrap(), event, "nested: {text}");
    }
}

#[test]
fn reading_an_event_names_the_shape_that_failed() {
    let err = JobEvent::from_json("job_started").unwrap_err();
    assert!(matches!(err, ReadEventError::Json(_)), "{err}");
    assert!(err.to_string().contains("one JSON object"), "{err}");

    let err =
        JobEvent::from_json(r#"{"type":"job_started","job_id":"j","data":{"pid":1}}"#).unwrap_err();
    assert!(matches!(err, ReadEventError::Nested(_)), "{err}");
    assert!(err.to_string().contains("started_at"), "{err}");
    assert!(err.to_string().contains("progit-plugin-sdk 0.4"), "{err}");

    let err = JobEvent::from_json(r#"{"type":"job_started","job_id":"j","pid":1}"#).unwrap_err();
    assert!(matches!(err, ReadEventError::Flat(_)), "{err}");
    assert!(err.to_string().contains("started_at"), "{err}");
    assert!(err.to_string().contains("\"data\""), "{err}");

    let err = JobEvent::from_json(r#"{"type":"job_finished","job_id":"j","data":{}}"#).unwrap_err();
    assert!(err.to_string().contains("job_finished"), "{err}");
}

#[test]
fn every_status_serialises_to_its_golden_and_back() {
    for (status, expected) in status_goldens() {
        golden(status, expected);
    }
}

#[test]
fn every_status_variant_has_a_golden() {
    let all = variants_serde_knows::<JobStatus>(json!("?"));
    assert_eq!(all.len(), 5, "{all:?}");
    let covered: BTreeSet<String> = status_goldens()
        .iter()
        .map(|(status, _)| status_tag(status).to_string())
        .collect();
    assert_eq!(
        covered, all,
        "every JobStatus variant needs a golden in status_goldens()"
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
