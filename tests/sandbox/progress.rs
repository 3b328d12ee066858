//! Progress: declared through the line protocol or policy patterns,
//! sampled resource use as a heartbeat, usage figures, the exit summary.

use crate::harness::*;
use jobwarden::contract::{JobEvent, JobStatus};
use jobwarden::{JobHost, JobSpawnRequest};
use std::time::Duration;

fn progress(events: &[JobEvent]) -> Vec<(Option<u8>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::JobProgress { data, .. } => Some((data.percent, data.step.clone())),
            _ => None,
        })
        .collect()
}

const FAST: &str = "\n[plugins.tests.progress]\ninterval_ms = 200\n";

#[test]
fn the_line_protocol_declares_progress_and_is_not_shown() {
    let fx = Fixture::new(FAST);
    let out = fx.probe(&[
        "say",
        "300",
        "::progress:: 10 fetching",
        "ordinary output",
        "::progress:: 50% building",
        "::progress:: 3/4 linking",
        "::progress:: 250 nonsense is ignored",
    ]);
    assert_eq!(out.code(), 0);
    let seen = progress(&out.events);
    let declared: Vec<(Option<u8>, Option<String>)> =
        seen.iter().filter(|(p, _)| p.is_some()).cloned().collect();
    let mut percents: Vec<u8> = declared.iter().filter_map(|(p, _)| *p).collect();
    percents.dedup();
    assert_eq!(percents, [10, 50, 75], "{seen:#?}");
    assert!(
        declared
            .iter()
            .any(|(p, s)| *p == Some(50) && s.as_deref() == Some("building")),
        "{seen:#?}"
    );
    assert!(
        declared
            .iter()
            .any(|(p, s)| *p == Some(75) && s.as_deref() == Some("linking")),
        "{seen:#?}"
    );
    let stdout = out.stdout();
    assert!(stdout.contains(&"ordinary output".to_string()));
    assert!(
        !stdout.iter().any(|l| l.starts_with("::progress::")),
        "protocol lines are consumed: {stdout:?}"
    );
}

#[test]
fn policy_patterns_turn_output_into_progress() {
    let fx = Fixture::new(
        "\n[plugins.tests.progress]\ninterval_ms = 200\npatterns = ['^\\[(?P<current>\\d+)/(?P<total>\\d+)\\] (?P<step>.*)$']\n",
    );
    let out = fx.probe(&["say", "300", "[1/4] alpha", "[2/4] beta", "[4/4] delta"]);
    let seen = progress(&out.events);
    let mut declared: Vec<(u8, String)> = seen
        .iter()
        .filter_map(|(p, s)| Some(((*p)?, s.clone()?)))
        .collect();
    declared.dedup();
    assert_eq!(
        declared,
        [
            (25, "alpha".into()),
            (50, "beta".into()),
            (100, "delta".into())
        ],
        "{seen:#?}"
    );
    // Pattern lines are ordinary output too.
    assert_eq!(
        out.stdout().iter().filter(|l| l.starts_with('[')).count(),
        3
    );
}

#[test]
fn a_job_that_declares_nothing_gets_a_heartbeat() {
    let fx = Fixture::new(FAST);
    let out = fx.probe(&["sleep", "1.3"]);
    let beats = progress(&out.events);
    assert!(beats.len() >= 4, "one per 200 ms interval: {beats:#?}");
    for (percent, step) in &beats {
        assert_eq!(*percent, None);
        let step = step.as_deref().unwrap();
        assert!(
            step.starts_with("cpu ") && step.contains("rss") && step.ends_with("1 proc"),
            "{step}"
        );
    }
}

#[test]
fn a_busy_two_process_tree_is_sampled_whole() {
    let fx = Fixture::new(FAST);
    let plugin = fx.plugin();
    let id = plugin.spawn(JobSpawnRequest::new("probe", ["spin-tree", "2", "2"]));
    let mut events = Vec::new();
    let mut best = None;
    while !events.iter().any(JobEvent::is_terminal) {
        events.extend(plugin.wait_events(Duration::from_millis(100)));
        if let Some(usage) = plugin.usage(&id)
            && usage.processes >= 2
            && usage.cpu_percent > 0.0
        {
            best = Some(usage);
        }
    }
    let usage = best.expect("a sample saw both processes using CPU");
    assert!(
        usage.rss_bytes > 0 && usage.peak_rss_bytes >= usage.rss_bytes,
        "{usage:?}"
    );
    assert!(
        progress(&events)
            .iter()
            .any(|(_, s)| s.as_deref().is_some_and(|s| s.ends_with("2 procs")))
    );
    let last = plugin.usage(&id).unwrap();
    assert!(
        last.cpu_time >= Duration::from_secs(2),
        "both spun for 2 s of CPU: {last:?}"
    );
    assert!(last.elapsed > Duration::ZERO);
    // The exit summary names wall time, CPU and peak memory, before the end.
    let n = events.len();
    let JobEvent::JobLogLine { data, .. } = &events[n - 2] else {
        panic!("{events:#?}")
    };
    assert!(
        data.line.starts_with("jobwarden: finished in ") && data.line.contains("peak rss"),
        "{}",
        data.line
    );
}

#[test]
fn running_status_carries_the_latest_percent() {
    let fx = Fixture::new(FAST);
    let plugin = fx.plugin();
    let id = plugin.spawn(JobSpawnRequest::new(
        "probe",
        ["say", "1500", "::progress:: 42 halfway", "::progress:: 43"],
    ));
    let seen = eventually(Duration::from_secs(5), || {
        matches!(
            plugin.status(&id),
            Some(JobStatus::Running {
                percent: Some(42),
                ..
            })
        )
    });
    assert!(seen, "{:?}", plugin.status(&id));
    let _ = collect(&plugin, &id, Duration::from_secs(10));
}

/// The ready-made pattern documented in policy/README.md for cargo.
const CARGO_PATTERN: &str =
    r"^\s*Building \[[ =>]*\] (?P<current>\d+)/(?P<total>\d+)(?:: (?P<step>.*))?$";

#[test]
fn the_documented_cargo_pattern_reads_carriage_return_redraws() {
    let fx = Fixture::new(&format!(
        "\n[plugins.tests.progress]\ninterval_ms = 200\npatterns = ['{CARGO_PATTERN}']\n"
    ));
    // cargo redraws its bar with `\r` and clears the line with ESC [K.
    let out = fx.probe(&[
        "say",
        "300",
        "\r\u{1b}[K    Building [=>        ] 1/4: serde\r\u{1b}[K    Building [====>     ] 2/4: tokio, serde_json",
        "\r\u{1b}[K    Building [=========>] 4/4: jobwarden(bin)\r\u{1b}[K",
    ]);
    let mut declared: Vec<(u8, String)> = progress(&out.events)
        .into_iter()
        .filter_map(|(p, s)| Some((p?, s?)))
        .collect();
    declared.dedup();
    assert_eq!(
        declared.last(),
        Some(&(100, "jobwarden(bin)".to_string())),
        "{declared:#?}"
    );
    assert!(
        out.stdout()
            .iter()
            .all(|l| !l.contains('\r') && !l.contains('\u{1b}')),
        "{:?}",
        out.stdout()
    );
}

#[test]
fn the_readme_documents_the_tested_cargo_pattern() {
    let readme = std::fs::read_to_string("policy/README.md").unwrap();
    assert!(
        readme.contains(&format!("patterns = ['{CARGO_PATTERN}']")),
        "policy/README.md and this test disagree"
    );
}

#[test]
fn declared_progress_goes_out_when_printed_not_at_the_next_sample() {
    // Sampling once a minute: a job of about a second gets at most the
    // first sample, so every declared step seen came out when it was
    // printed (at most one per 100 ms; these are 300 ms apart).
    let fx = Fixture::new("\n[plugins.tests.progress]\ninterval_ms = 60000\n");
    let out = fx.probe(&[
        "say",
        "300",
        "::progress:: 10 fetching",
        "::progress:: 50 building",
        "::progress:: 3/4 linking",
    ]);
    assert_eq!(out.code(), 0);
    let seen = progress(&out.events);
    let mut percents: Vec<u8> = seen.iter().filter_map(|(p, _)| *p).collect();
    percents.dedup();
    assert_eq!(percents, [10, 50, 75], "{seen:#?}");
}
