//! Per-job event order, plugin isolation, the enforcement line, pending
//! jobs and output sanitising.

use crate::harness::*;
use jobwarden::contract::{JobEvent, JobStatus};
use jobwarden::sandbox::{ItemKind, TreeMechanism};
use jobwarden::{JobHost, JobSpawnRequest};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn events_arrive_in_order_for_every_job() {
    let fx = Fixture::new("");
    let plugin = fx.plugin();
    let ids: Vec<_> = (0..6)
        .map(|i| {
            plugin.spawn(JobSpawnRequest::new(
                "probe",
                ["lines".to_string(), format!("{}", 200 + i)],
            ))
        })
        .collect();
    let mut per_job: HashMap<String, Vec<JobEvent>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while per_job
        .values()
        .filter(|v| v.last().is_some_and(JobEvent::is_terminal))
        .count()
        < ids.len()
    {
        for e in plugin.wait_events(Duration::from_millis(100)) {
            per_job.entry(e.job_id().clone()).or_default().push(e);
        }
        assert!(std::time::Instant::now() < deadline);
    }
    for (i, id) in ids.iter().enumerate() {
        let events = &per_job[id];
        assert!(
            matches!(events[0], JobEvent::JobStarted { .. }),
            "{id}: {:?}",
            events[0]
        );
        assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
        assert!(events.last().unwrap().is_terminal());
        let JobEvent::JobLogLine { data, .. } = &events[1] else {
            panic!()
        };
        assert!(
            data.line.starts_with("jobwarden: enforced: "),
            "the enforcement line follows JobStarted: {}",
            data.line
        );
        let numbers: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::JobLogLine { data, .. } if data.stream == "stdout" => data
                    .line
                    .strip_prefix("line ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok(),
                _ => None,
            })
            .collect();
        assert_eq!(numbers, (0..200 + i).collect::<Vec<_>>(), "{id}");
    }
}

#[test]
fn a_second_plugin_cannot_see_or_cancel_the_first_ones_jobs() {
    let fx = Fixture::new("");
    let mine = fx.plugin();
    let theirs = fx.host.plugin("other");
    let id = mine.spawn(JobSpawnRequest::new("probe", ["sleep", "30"]));
    assert!(mine.status(&id).is_some());
    assert_eq!(theirs.status(&id), None);
    assert!(!theirs.cancel(&id));
    assert!(theirs.enforcement(&id).is_none());
    std::thread::sleep(Duration::from_millis(200));
    assert!(theirs.drain_events().is_empty());
    assert!(
        mine.cancel(&id),
        "the job ended early: {:?} {:?}",
        mine.status(&id),
        mine.drain_events()
    );
    let events = collect(&mine, &id, Duration::from_secs(10));
    assert!(matches!(events.last(), Some(JobEvent::JobCancelled { .. })));
}

#[test]
fn jobs_beyond_the_concurrency_limit_wait_and_start_in_order() {
    let fx = Fixture::new("\n[plugins.serial]\nbinaries = [\"probe\"]\nmax_concurrent = 1\n");
    let plugin = fx.host.plugin("serial");
    let first = plugin.spawn(JobSpawnRequest::new("probe", ["sleep", "0.5"]));
    let second = plugin.spawn(JobSpawnRequest::new("probe", ["print", "second"]));
    let third = plugin.spawn(JobSpawnRequest::new("probe", ["print", "third"]));
    std::thread::sleep(Duration::from_millis(150));
    assert!(matches!(
        plugin.status(&first),
        Some(JobStatus::Running { .. })
    ));
    assert_eq!(plugin.status(&second), Some(JobStatus::Pending));
    assert_eq!(plugin.status(&third), Some(JobStatus::Pending));
    let mut starts = Vec::new();
    let mut ended = 0;
    while ended < 3 {
        for e in plugin.wait_events(Duration::from_millis(100)) {
            if let JobEvent::JobStarted { job_id, .. } = &e {
                starts.push(job_id.clone());
            }
            ended += e.is_terminal() as usize;
        }
    }
    assert_eq!(starts, [first, second, third]);
}

#[test]
fn a_pending_job_can_be_cancelled() {
    let fx = Fixture::new("\n[plugins.serial]\nbinaries = [\"probe\"]\nmax_concurrent = 1\n");
    let plugin = fx.host.plugin("serial");
    let first = plugin.spawn(JobSpawnRequest::new("probe", ["sleep", "0.3"]));
    let second = plugin.spawn(JobSpawnRequest::new("probe", ["print", "never"]));
    std::thread::sleep(Duration::from_millis(100));
    assert!(plugin.cancel(&second));
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e: &JobEvent| e.is_terminal() && e.job_id() == &first)
    {
        events.extend(plugin.wait_events(Duration::from_millis(100)));
    }
    let second_events: Vec<_> = events.iter().filter(|e| e.job_id() == &second).collect();
    assert_eq!(second_events.len(), 1, "{second_events:?}");
    assert!(matches!(second_events[0], JobEvent::JobCancelled { .. }));
}

#[test]
fn output_is_sanitised_but_keeps_colours() {
    let fx = Fixture::new("");
    let out = fx.probe(&[
        "print",
        "\u{1b}[31mred\u{1b}[0m\u{1b}]0;pwned\u{7}\u{1b}[2J",
    ]);
    let line = &out.stdout()[0];
    assert!(line.contains("\u{1b}[31mred\u{1b}[0m"), "{line:?}");
    assert!(!line.contains("]0;"), "{line:?}");
    assert!(!line.contains("[2J"), "{line:?}");
}

#[test]
fn stdout_and_stderr_are_read_concurrently() {
    // 1 MiB on stderr before a word on stdout would deadlock a reader that
    // reads stdout to the end first.
    let fx = Fixture::new("");
    let script = "i=0; while [ $i -lt 20000 ]; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx >&2; i=$((i+1)); done; echo done";
    let out = fx.run(JobSpawnRequest::new("sh", ["-c", script]));
    assert_eq!(out.code(), 0);
    assert_eq!(out.stdout(), ["done"]);
    assert_eq!(out.stderr().len(), 20000);
}

#[test]
fn completion_carries_the_stdout_tail_and_failures_the_status() {
    let fx = Fixture::new("");
    let out = fx.probe(&["print", "hello tail"]);
    let JobEvent::JobCompleted { data, .. } = out.terminal() else {
        panic!("{out:#?}")
    };
    assert!(data.output_tail.as_deref().unwrap().contains("hello tail"));
    let out = fx.probe(&["exit", "3"]);
    let JobEvent::JobFailed { data, .. } = out.terminal() else {
        panic!("{out:#?}")
    };
    assert_eq!(data.exit_code, Some(3));
    assert_eq!(data.error, "exited with status 3");
    // The exit summary precedes the terminal event.
    let n = out.events.len();
    let JobEvent::JobLogLine { data, .. } = &out.events[n - 2] else {
        panic!()
    };
    assert!(
        data.line.starts_with("jobwarden: finished in"),
        "{}",
        data.line
    );
}

#[test]
fn the_enforcement_report_is_available_through_the_api() {
    let fx = Fixture::new("");
    let out = fx.probe(&["print", "x"]);
    let report = fx.host.enforcement(&out.id).expect("recorded");
    assert_eq!(report.platform, "linux");
    for name in [
        "filesystem",
        "network",
        "scopes",
        "session",
        "no_new_privs",
        "tree_cleanup",
    ] {
        assert!(report.item(name).is_some(), "{name} missing from\n{report}");
    }
    // Confinement is enforced on every machine the tests run on, as root
    // and as a regular user. Limits and cleanup may be weaker only where
    // this host really lacks the cgroup that gives them, and then the
    // report must say so (a regular user without a delegated cgroup).
    let support = fx.host.support();
    for item in report.weaker_than_asked() {
        let lacking = match item.kind {
            ItemKind::Memory => support.tree_mechanism(TreeMechanism::Memory).is_none(),
            ItemKind::Processes => support.tree_mechanism(TreeMechanism::Processes).is_none(),
            ItemKind::TreeCleanup => support.tree_mechanism(TreeMechanism::Kill).is_none(),
            _ => false,
        };
        assert!(
            lacking,
            "{} is {} although this host has what it needs:\n{report}",
            item.kind, item.status
        );
        assert!(
            item.detail.contains("cgroup"),
            "a partial limit names the missing cgroup: {item:?}"
        );
    }
}

#[test]
fn chunk_mode_delivers_bytes_sanitised() {
    let fx = Fixture::new(
        "\n[plugins.chunks]\nbinaries = [\"probe\"]\n[plugins.chunks.output]\nmode = \"chunks\"\n",
    );
    let plugin = fx.host.plugin("chunks");
    let out = run_to_end(
        &plugin,
        JobSpawnRequest::new("probe", ["print", "a\u{1b}[32mb\u{1b}]0;t\u{7}c"]),
        Duration::from_secs(10),
    );
    let bytes: Vec<u8> = out
        .events
        .iter()
        .filter_map(|e| match e {
            JobEvent::JobOutputChunk { data, .. } if data.stream == "stdout" => {
                Some(data.bytes.clone())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert!(!bytes.is_empty(), "{out:#?}");
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("a\u{1b}[32mbc\n"), "{text:?}");
    assert!(
        out.stdout().is_empty(),
        "chunk mode sends no stdout log lines"
    );
}
