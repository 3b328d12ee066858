//! jobwarden against the published `progit-plugin-sdk` 0.4 itself (feature
//! `progit`): every event variant, every `JobStatus` variant and
//! `JobSpawnRequest` serialise to the same bytes as the SDK's own values and
//! deserialise into each other; the conversions keep every field; and real
//! jobs under the real sandbox are driven through
//! `&dyn progit_plugin_sdk::traits::jobs::JobHost`.
//!
//! The SDK's values here are written out by hand, not converted from
//! jobwarden's, so the byte comparison does not trust the conversions it
//! also checks. The SDK's types have no `PartialEq`; they are compared
//! through their serialisation, which writes every field.

use jobwarden::contract as ours;
use progit_plugin_sdk::traits::jobs as sdk;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};

const AT: &str = "2026-11-26T14:37:50.960Z";

fn bytes(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// One value on both sides: same bytes, each side's bytes read by the other
/// side, and the conversion in both directions keeps every field.
fn same_on_the_wire<O, S>(ours: O, sdk: S)
where
    O: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + Clone + Into<S> + From<S>,
    S: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let ours_text = bytes(&ours);
    let sdk_text = bytes(&sdk);
    assert_eq!(
        ours_text, sdk_text,
        "jobwarden and the SDK write different bytes"
    );

    let read_by_sdk: S = serde_json::from_str(&ours_text)
        .unwrap_or_else(|e| panic!("the SDK cannot read jobwarden's {ours_text}: {e}"));
    assert_eq!(bytes(&read_by_sdk), ours_text);
    let read_by_ours: O = serde_json::from_str(&sdk_text)
        .unwrap_or_else(|e| panic!("jobwarden cannot read the SDK's {sdk_text}: {e}"));
    assert_eq!(read_by_ours, ours);

    let converted: S = ours.clone().into();
    assert_eq!(
        bytes(&converted),
        sdk_text,
        "conversion to the SDK lost something"
    );
    let back = O::from(converted);
    assert_eq!(
        back, ours,
        "the round trip through the SDK's type changed the value"
    );
    assert_eq!(O::from(sdk), ours, "conversion from the SDK lost something");
}

/// Every variant name a type's derived `Deserialize` knows, from serde's
/// "unknown variant `?`, expected one of …" error: generated from the enum
/// definition, so it grows with the enum.
fn variants_serde_knows<T: DeserializeOwned + std::fmt::Debug>(
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

/// The SDK variant's tag; exhaustive, so a variant the SDK adds stops this
/// compiling.
fn sdk_event_tag(event: &sdk::JobEvent) -> &'static str {
    match event {
        sdk::JobEvent::JobStarted { .. } => "job_started",
        sdk::JobEvent::JobProgress { .. } => "job_progress",
        sdk::JobEvent::JobLogLine { .. } => "job_log_line",
        sdk::JobEvent::JobOutputChunk { .. } => "job_output_chunk",
        sdk::JobEvent::JobCancelled { .. } => "job_cancelled",
        sdk::JobEvent::JobCompleted { .. } => "job_completed",
        sdk::JobEvent::JobFailed { .. } => "job_failed",
    }
}

fn sdk_status_tag(status: &sdk::JobStatus) -> &'static str {
    match status {
        sdk::JobStatus::Pending => "Pending",
        sdk::JobStatus::Running { .. } => "Running",
        sdk::JobStatus::Cancelled { .. } => "Cancelled",
        sdk::JobStatus::Completed { .. } => "Completed",
        sdk::JobStatus::Failed { .. } => "Failed",
    }
}

/// Each event variant on both sides, with every optional field both set and
/// empty.
fn event_pairs() -> Vec<(ours::JobEvent, sdk::JobEvent)> {
    vec![
        (
            ours::JobEvent::JobStarted {
                job_id: "job-1".into(),
                data: ours::JobStartedData {
                    pid: Some(4242),
                    started_at: AT.into(),
                },
            },
            sdk::JobEvent::JobStarted {
                job_id: "job-1".into(),
                data: sdk::JobStartedData {
                    pid: Some(4242),
                    started_at: AT.into(),
                },
            },
        ),
        (
            ours::JobEvent::JobStarted {
                job_id: "job-1".into(),
                data: ours::JobStartedData {
                    pid: None,
                    started_at: AT.into(),
                },
            },
            sdk::JobEvent::JobStarted {
                job_id: "job-1".into(),
                data: sdk::JobStartedData {
                    pid: None,
                    started_at: AT.into(),
                },
            },
        ),
        (
            ours::JobEvent::JobProgress {
                job_id: "job-2".into(),
                data: ours::JobProgressData {
                    percent: Some(42),
                    step: Some("Compiling module 3/7".into()),
                },
            },
            sdk::JobEvent::JobProgress {
                job_id: "job-2".into(),
                data: sdk::JobProgressData {
                    percent: Some(42),
                    step: Some("Compiling module 3/7".into()),
                },
            },
        ),
        (
            ours::JobEvent::JobProgress {
                job_id: "job-2".into(),
                data: ours::JobProgressData {
                    percent: None,
                    step: None,
                },
            },
            sdk::JobEvent::JobProgress {
                job_id: "job-2".into(),
                data: sdk::JobProgressData {
                    percent: None,
                    step: None,
                },
            },
        ),
        (
            ours::JobEvent::JobLogLine {
                job_id: "job-3".into(),
                data: ours::JobLogLineData {
                    line: "\u{1b}[32mok\u{1b}[0m \"quoted\" ü".into(),
                    stream: ours::STREAM_SYSTEM.into(),
                },
            },
            sdk::JobEvent::JobLogLine {
                job_id: "job-3".into(),
                data: sdk::JobLogLineData {
                    line: "\u{1b}[32mok\u{1b}[0m \"quoted\" ü".into(),
                    stream: "system".into(),
                },
            },
        ),
        (
            ours::JobEvent::JobOutputChunk {
                job_id: "job-4".into(),
                data: ours::JobOutputChunkData {
                    bytes: vec![0, 104, 105, 10, 255],
                    stream: ours::STREAM_STDERR.into(),
                },
            },
            sdk::JobEvent::JobOutputChunk {
                job_id: "job-4".into(),
                data: sdk::JobOutputChunkData {
                    bytes: vec![0, 104, 105, 10, 255],
                    stream: "stderr".into(),
                },
            },
        ),
        (
            ours::JobEvent::JobCancelled {
                job_id: "job-5".into(),
                data: ours::JobCancelledData {
                    reason: "timeout after 30 s".into(),
                    cancelled_at: AT.into(),
                },
            },
            sdk::JobEvent::JobCancelled {
                job_id: "job-5".into(),
                data: sdk::JobCancelledData {
                    reason: "timeout after 30 s".into(),
                    cancelled_at: AT.into(),
                },
            },
        ),
        (
            ours::JobEvent::JobCompleted {
                job_id: "job-6".into(),
                data: ours::JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: Some("done\n".into()),
                },
            },
            sdk::JobEvent::JobCompleted {
                job_id: "job-6".into(),
                data: sdk::JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: Some("done\n".into()),
                },
            },
        ),
        (
            ours::JobEvent::JobCompleted {
                job_id: "job-6".into(),
                data: ours::JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: None,
                },
            },
            sdk::JobEvent::JobCompleted {
                job_id: "job-6".into(),
                data: sdk::JobCompletedData {
                    exit_code: 0,
                    completed_at: AT.into(),
                    output_tail: None,
                },
            },
        ),
        (
            ours::JobEvent::JobFailed {
                job_id: "job-7".into(),
                data: ours::JobFailedData {
                    exit_code: Some(-2),
                    error: "exited with status 2".into(),
                    failed_at: AT.into(),
                },
            },
            sdk::JobEvent::JobFailed {
                job_id: "job-7".into(),
                data: sdk::JobFailedData {
                    exit_code: Some(-2),
                    error: "exited with status 2".into(),
                    failed_at: AT.into(),
                },
            },
        ),
        (
            ours::JobEvent::JobFailed {
                job_id: "job-7".into(),
                data: ours::JobFailedData {
                    exit_code: None,
                    error: "denied: binary `bash` is not listed".into(),
                    failed_at: AT.into(),
                },
            },
            sdk::JobEvent::JobFailed {
                job_id: "job-7".into(),
                data: sdk::JobFailedData {
                    exit_code: None,
                    error: "denied: binary `bash` is not listed".into(),
                    failed_at: AT.into(),
                },
            },
        ),
    ]
}

fn status_pairs() -> Vec<(ours::JobStatus, sdk::JobStatus)> {
    vec![
        (ours::JobStatus::Pending, sdk::JobStatus::Pending),
        (
            ours::JobStatus::Running {
                started_at: AT.into(),
                percent: Some(10),
            },
            sdk::JobStatus::Running {
                started_at: AT.into(),
                percent: Some(10),
            },
        ),
        (
            ours::JobStatus::Running {
                started_at: AT.into(),
                percent: None,
            },
            sdk::JobStatus::Running {
                started_at: AT.into(),
                percent: None,
            },
        ),
        (
            ours::JobStatus::Cancelled {
                reason: "cancelled by plugin ci".into(),
            },
            sdk::JobStatus::Cancelled {
                reason: "cancelled by plugin ci".into(),
            },
        ),
        (
            ours::JobStatus::Completed { exit_code: 0 },
            sdk::JobStatus::Completed { exit_code: 0 },
        ),
        (
            ours::JobStatus::Failed {
                exit_code: Some(1),
                error: "exited with status 1".into(),
            },
            sdk::JobStatus::Failed {
                exit_code: Some(1),
                error: "exited with status 1".into(),
            },
        ),
        (
            ours::JobStatus::Failed {
                exit_code: None,
                error: "denied".into(),
            },
            sdk::JobStatus::Failed {
                exit_code: None,
                error: "denied".into(),
            },
        ),
    ]
}

#[test]
fn the_sdk_in_the_build_is_the_one_targeted() {
    assert_eq!(
        progit_plugin_sdk::SDK_API_VERSION,
        jobwarden::progit::TARGET_SDK_API_VERSION
    );
    assert!(
        progit_plugin_sdk::VERSION.starts_with("0.4."),
        "{}",
        progit_plugin_sdk::VERSION
    );
}

#[test]
fn every_event_is_byte_identical_to_the_sdks() {
    for (ours, sdk) in event_pairs() {
        same_on_the_wire(ours, sdk);
    }
    // The SDK's own test of the shape, on jobwarden's bytes.
    let (started, _) = event_pairs().remove(0);
    assert!(bytes(&started).contains(r#""data":{"pid":4242"#));
}

#[test]
fn every_sdk_event_variant_is_covered_and_jobwarden_has_the_same_ones() {
    let sdk_variants = variants_serde_knows::<sdk::JobEvent>(serde_json::json!({"type": "?"}));
    let our_variants = variants_serde_knows::<ours::JobEvent>(serde_json::json!({"type": "?"}));
    assert_eq!(our_variants, sdk_variants);
    let covered: BTreeSet<String> = event_pairs()
        .iter()
        .map(|(_, sdk)| sdk_event_tag(sdk).to_string())
        .collect();
    assert_eq!(covered, sdk_variants, "an event variant has no pair above");
}

#[test]
fn every_status_is_byte_identical_to_the_sdks() {
    for (ours, sdk) in status_pairs() {
        same_on_the_wire(ours, sdk);
    }
}

#[test]
fn every_sdk_status_variant_is_covered_and_jobwarden_has_the_same_ones() {
    let sdk_variants = variants_serde_knows::<sdk::JobStatus>(serde_json::json!("?"));
    let our_variants = variants_serde_knows::<ours::JobStatus>(serde_json::json!("?"));
    assert_eq!(our_variants, sdk_variants);
    let covered: BTreeSet<String> = status_pairs()
        .iter()
        .map(|(_, sdk)| sdk_status_tag(sdk).to_string())
        .collect();
    assert_eq!(covered, sdk_variants, "a status variant has no pair above");
}

#[test]
fn spawn_requests_are_byte_identical_to_the_sdks() {
    // One environment variable: a HashMap's iteration order differs between
    // two maps, on both sides, so several variables are compared as values.
    same_on_the_wire(
        ours::JobSpawnRequest {
            label: "plan devnet".into(),
            binary: "citadel".into(),
            args: vec!["plan".into(), "--env".into(), "devnet".into()],
            cwd: Some("infra".into()),
            env: HashMap::from([("CITADEL_ENV".into(), "devnet".into())]),
            timeout_secs: 60,
        },
        sdk::JobSpawnRequest {
            label: "plan devnet".into(),
            binary: "citadel".into(),
            args: vec!["plan".into(), "--env".into(), "devnet".into()],
            cwd: Some("infra".into()),
            env: HashMap::from([("CITADEL_ENV".into(), "devnet".into())]),
            timeout_secs: 60,
        },
    );
    same_on_the_wire(
        ours::JobSpawnRequest::new("git", ["status"]),
        sdk::JobSpawnRequest {
            label: "git".into(),
            binary: "git".into(),
            args: vec!["status".into()],
            cwd: None,
            env: HashMap::new(),
            timeout_secs: 0,
        },
    );

    let env: HashMap<String, String> = (0..20).map(|i| (format!("V{i}"), i.to_string())).collect();
    let ours = ours::JobSpawnRequest {
        env: env.clone(),
        ..ours::JobSpawnRequest::new("make", ["-j4"])
    };
    let converted = sdk::JobSpawnRequest::from(ours.clone());
    assert_eq!(converted.env, env);
    assert_eq!(
        serde_json::to_value(&converted).unwrap(),
        serde_json::to_value(&ours).unwrap()
    );
    assert_eq!(ours::JobSpawnRequest::from(converted), ours);

    // A plugin that leaves out the defaulted fields reads the same on both sides.
    let minimal = r#"{"label":"status","binary":"git","args":["status"]}"#;
    let sdk: sdk::JobSpawnRequest = serde_json::from_str(minimal).unwrap();
    let ours: ours::JobSpawnRequest = serde_json::from_str(minimal).unwrap();
    assert_eq!(bytes(&sdk), bytes(&ours));
}

#[test]
fn manifests_decide_whether_a_plugin_gets_a_handle_and_whether_it_may_cancel() {
    use jobwarden::JobCapabilities;
    use jobwarden::progit::manifest_job_capabilities;
    use progit_plugin_sdk::manifest::PluginManifest;

    let manifest = |capabilities: &str| -> PluginManifest {
        serde_json::from_str(&format!(
            r#"{{"name":"tests","version":"1.0.0","description":"d","author":"a","license":"MIT"{capabilities}}}"#
        ))
        .unwrap()
    };
    let cases = [
        ("", None),
        (r#","capabilities":{}"#, None),
        (r#","capabilities":{"jobs":false,"jobs_cancel":true}"#, None),
        (
            r#","capabilities":{"jobs":true}"#,
            Some(JobCapabilities::SPAWN_ONLY),
        ),
        (
            r#","capabilities":{"jobs":true,"jobs_cancel":false}"#,
            Some(JobCapabilities::SPAWN_ONLY),
        ),
        (
            r#","capabilities":{"jobs":true,"jobs_cancel":true}"#,
            Some(JobCapabilities::ALL),
        ),
    ];
    for (capabilities, expected) in cases {
        assert_eq!(
            manifest_job_capabilities(&manifest(capabilities)),
            expected,
            "{capabilities}"
        );
    }
}

// The sandbox tests' helpers: a temp repo, a policy naming the probe, a host.
#[cfg(target_os = "linux")]
#[path = "sandbox/harness.rs"]
#[allow(dead_code)]
mod harness;

/// Real jobs under the real Linux sandbox, driven only through the SDK's
/// trait object.
#[cfg(target_os = "linux")]
mod through_the_sdk_trait {
    use super::sdk;
    use crate::harness::{Fixture, alive, eventually};
    use jobwarden::JobCapabilities;
    use progit_plugin_sdk::manifest::PluginManifest;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    fn request(binary: &str, args: &[&str]) -> sdk::JobSpawnRequest {
        sdk::JobSpawnRequest {
            label: format!("{binary} {}", args.join(" ")),
            binary: binary.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: None,
            env: HashMap::new(),
            timeout_secs: 0,
        }
    }

    /// Drains through the trait, every 10 ms as a render loop would, until
    /// job `id`'s terminal event.
    fn drain_until_end(jobs: &dyn sdk::JobHost, id: &str) -> Vec<sdk::JobEvent> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut events = Vec::new();
        loop {
            for event in jobs.drain_events() {
                let terminal = matches!(
                    event,
                    sdk::JobEvent::JobCompleted { .. }
                        | sdk::JobEvent::JobFailed { .. }
                        | sdk::JobEvent::JobCancelled { .. }
                );
                let mine = job_id(&event) == id;
                events.push(event);
                if terminal && mine {
                    return events;
                }
            }
            assert!(Instant::now() < deadline, "no terminal event: {events:#?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn job_id(event: &sdk::JobEvent) -> &str {
        match event {
            sdk::JobEvent::JobStarted { job_id, .. }
            | sdk::JobEvent::JobProgress { job_id, .. }
            | sdk::JobEvent::JobLogLine { job_id, .. }
            | sdk::JobEvent::JobOutputChunk { job_id, .. }
            | sdk::JobEvent::JobCancelled { job_id, .. }
            | sdk::JobEvent::JobCompleted { job_id, .. }
            | sdk::JobEvent::JobFailed { job_id, .. } => job_id,
        }
    }

    fn stdout_lines(events: &[sdk::JobEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                sdk::JobEvent::JobLogLine { data, .. } if data.stream == "stdout" => {
                    Some(data.line.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_job_runs_end_to_end_through_the_sdk_trait() {
        let fx = Fixture::new("");
        let boxed: Box<dyn sdk::JobHost> = Box::new(fx.host.plugin("tests"));
        let jobs: &dyn sdk::JobHost = boxed.as_ref();

        let id = jobs.spawn(request("probe", &["lines", "3", "8"]));
        let events = drain_until_end(jobs, &id);
        assert!(
            matches!(&events[0], sdk::JobEvent::JobStarted { data, .. } if data.pid.is_some()),
            "{events:#?}"
        );
        let sdk::JobEvent::JobLogLine { data, .. } = &events[1] else {
            panic!("{events:#?}")
        };
        assert_eq!(data.stream, "system");
        assert!(
            data.line.starts_with("jobwarden: enforced: "),
            "{}",
            data.line
        );
        assert_eq!(stdout_lines(&events).len(), 3 + 1, "{events:#?}");
        let sdk::JobEvent::JobCompleted { data, .. } = events.last().unwrap() else {
            panic!("{events:#?}")
        };
        assert_eq!(data.exit_code, 0);
        assert!(data.output_tail.as_deref().unwrap().contains("line 2"));
        assert!(
            matches!(
                jobs.status(&id),
                Some(sdk::JobStatus::Completed { exit_code: 0 })
            ),
            "{:?}",
            jobs.status(&id)
        );
        assert!(!jobs.cancel(&id), "a finished job cannot be cancelled");
        assert!(jobs.drain_events().is_empty());
        assert!(jobs.status(&"job-999".to_string()).is_none());
    }

    #[test]
    fn a_running_job_is_cancelled_through_the_sdk_trait_and_its_process_is_gone() {
        let fx = Fixture::new("");
        let handle = fx.host.plugin("tests");
        let jobs: &dyn sdk::JobHost = &handle;
        let id = jobs.spawn(request("probe", &["sleep", "30"]));
        assert!(eventually(Duration::from_secs(10), || matches!(
            jobs.status(&id),
            Some(sdk::JobStatus::Running { .. })
        )));
        assert!(jobs.cancel(&id));
        let events = drain_until_end(jobs, &id);
        let Some(sdk::JobEvent::JobStarted { data, .. }) = events.first() else {
            panic!("{events:#?}")
        };
        let pid = data.pid.unwrap() as i32;
        let sdk::JobEvent::JobCancelled { data, .. } = events.last().unwrap() else {
            panic!("{events:#?}")
        };
        assert_eq!(data.reason, "cancelled by plugin tests");
        assert!(
            matches!(jobs.status(&id), Some(sdk::JobStatus::Cancelled { reason }) if reason == "cancelled by plugin tests")
        );
        assert!(
            !alive(pid),
            "the cancelled job's process {pid} is still there"
        );
        assert!(!jobs.cancel(&id));
    }

    #[test]
    fn a_denied_request_is_one_job_failed_through_the_sdk_trait() {
        let fx = Fixture::new("");
        let handle = fx.host.plugin("tests");
        let jobs: &dyn sdk::JobHost = &handle;
        let id = jobs.spawn(request("bash", &["-c", "id"]));
        let events = drain_until_end(jobs, &id);
        assert_eq!(events.len(), 1, "{events:#?}");
        let sdk::JobEvent::JobFailed { data, .. } = &events[0] else {
            panic!("{events:#?}")
        };
        assert_eq!(data.exit_code, None);
        assert!(
            data.error.contains("plugins.tests.binaries"),
            "{}",
            data.error
        );
        assert!(data.error.contains("hint"), "{}", data.error);
        let Some(sdk::JobStatus::Failed { exit_code, error }) = jobs.status(&id) else {
            panic!("{:?}", jobs.status(&id))
        };
        assert_eq!(exit_code, None);
        assert_eq!(&error, &data.error);
        assert!(!jobs.cancel(&id));

        // A plugin the policy does not name is refused the same way.
        let stranger = fx.host.plugin("stranger");
        let jobs: &dyn sdk::JobHost = &stranger;
        let id = jobs.spawn(request("probe", &["print", "x"]));
        let events = drain_until_end(jobs, &id);
        assert!(
            matches!(&events[..], [sdk::JobEvent::JobFailed { data, .. }] if data.error.contains("`plugins`")),
            "{events:#?}"
        );
    }

    #[test]
    fn a_manifest_without_jobs_cancel_gets_a_handle_whose_cancel_is_refused() {
        let fx = Fixture::new("");
        let manifest = |capabilities: &str| -> PluginManifest {
            serde_json::from_str(&format!(
                r#"{{"name":"tests","version":"1.0.0","description":"d","author":"a","license":"MIT","capabilities":{capabilities}}}"#
            ))
            .unwrap()
        };
        assert!(
            fx.host
                .plugin_for_manifest(&manifest(r#"{"jobs":false}"#))
                .is_none(),
            "no jobs capability, no handle"
        );
        let handle = fx
            .host
            .plugin_for_manifest(&manifest(r#"{"jobs":true,"jobs_cancel":false}"#))
            .expect("jobs = true gives a handle");
        assert_eq!(handle.name(), "tests");
        assert_eq!(handle.capabilities(), JobCapabilities::SPAWN_ONLY);
        let jobs: Box<dyn sdk::JobHost> = Box::new(handle);

        let id = jobs.spawn(request("probe", &["sleep", "1"]));
        assert!(eventually(Duration::from_secs(10), || matches!(
            jobs.status(&id),
            Some(sdk::JobStatus::Running { .. })
        )));
        assert!(
            !jobs.cancel(&id),
            "jobs_cancel = false, yet cancel was sent"
        );
        let events = drain_until_end(jobs.as_ref(), &id);
        assert!(
            matches!(events.last(), Some(sdk::JobEvent::JobCompleted { data, .. }) if data.exit_code == 0),
            "the refused cancel must not end the job: {events:#?}"
        );
        assert!(
            fx.host
                .take_warnings()
                .iter()
                .any(|w| w.message.contains("may not cancel")),
        );
    }
}
