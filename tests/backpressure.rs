//! Invariant 12, for a plugin: with `output.when_full = "wait"` a plugin
//! that drains slowly receives every line in order, its job waiting in
//! `write` meanwhile; with `drop_oldest` (the default) the oldest output
//! goes and a `system` line says how much, as before. Timeouts, cancels and
//! the host's shutdown still work while a job waits, and other plugins'
//! jobs are not held up by it.

// Linux only: the jobs are coreutils under Linux policies.
#![cfg(target_os = "linux")]

use jobwarden::contract::{JobEvent, STREAM_STDOUT, STREAM_SYSTEM};
use jobwarden::{JobHost, JobSpawnRequest, PluginHandle, Policy, PolicyJobHost};
use std::time::{Duration, Instant};

/// A small queue (100 events) so the job has to wait many times.
fn host(dir: &std::path::Path, when_full: &str) -> PolicyJobHost {
    let text = format!(
        r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache"]
read_write = ["{{repo}}", "{{tmp}}", "/dev/null"]
[limits]
timeout_secs = 120
kill_grace_secs = 0.5
[binaries.seq]
path = "/usr/bin/seq"
[binaries.yes]
path = "/usr/bin/yes"
[plugins.slow]
binaries = ["seq", "yes"]
[plugins.slow.output]
max_queued_events = 100
max_queued_bytes = "64 KiB"
when_full = "{when_full}"
[plugins.other]
binaries = ["seq"]
"#
    );
    let policy = Policy::from_toml("backpressure.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    PolicyJobHost::builder(policy, dir)
        .tmp_dir(dir)
        .build()
        .unwrap()
}

fn stdout_line(event: &JobEvent) -> Option<&str> {
    match event {
        JobEvent::JobLogLine { data, .. } if data.stream == STREAM_STDOUT => Some(&data.line),
        _ => None,
    }
}

fn is_drop_notice(event: &JobEvent) -> bool {
    matches!(event, JobEvent::JobLogLine { data, .. }
        if data.stream == STREAM_SYSTEM && data.line.contains("were dropped"))
}

/// Drains like a render loop that falls behind: a pause between drains.
/// Returns every event and the largest drain.
fn drain_slowly(plugin: &PluginHandle, pause: Duration) -> (Vec<JobEvent>, usize) {
    let started = Instant::now();
    let (mut all, mut largest) = (Vec::new(), 0);
    loop {
        let events = plugin.drain_events();
        largest = largest.max(events.len());
        let ended = events.iter().any(JobEvent::is_terminal);
        all.extend(events);
        if ended {
            return (all, largest);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no terminal event"
        );
        std::thread::sleep(pause);
    }
}

#[test]
fn a_waiting_plugin_that_drains_slowly_gets_every_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "wait");
    let plugin = host.plugin("slow");
    plugin.spawn(JobSpawnRequest::new("seq", ["1", "20000"]));
    let (events, largest) = drain_slowly(&plugin, Duration::from_millis(2));
    let lines: Vec<&str> = events.iter().filter_map(stdout_line).collect();
    let expected: Vec<String> = (1..=20_000).map(|i| i.to_string()).collect();
    assert!(
        lines == expected,
        "{} lines, first {:?}",
        lines.len(),
        &lines[..5.min(lines.len())]
    );
    assert!(!events.iter().any(is_drop_notice), "nothing was dropped");
    assert!(
        matches!(events.last(), Some(JobEvent::JobCompleted { .. })),
        "{:?}",
        events.last()
    );
    // The queue stayed within its bound: the job waited instead.
    assert!(largest <= 100 + 8, "a drain returned {largest} events");
}

#[test]
fn drop_oldest_still_drops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "drop_oldest");
    let plugin = host.plugin("slow");
    plugin.spawn(JobSpawnRequest::new("seq", ["1", "200000"]));
    // Nobody drains until the job is over: it never waits.
    let id = "job-1".to_string();
    let started = Instant::now();
    while !plugin.status(&id).is_some_and(|s| s.is_finished()) {
        assert!(started.elapsed() < Duration::from_secs(300), "never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = plugin.drain_events();
    assert!(events.len() <= 100 + 8, "{} events kept", events.len());
    assert!(events.iter().any(is_drop_notice), "the drop is reported");
    let kept: Vec<u64> = events
        .iter()
        .filter_map(stdout_line)
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(!kept.is_empty());
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "kept lines in order");
    assert_eq!(kept.last(), Some(&200_000), "the newest lines are kept");
    assert!(matches!(events.last(), Some(JobEvent::JobCompleted { .. })));
}

/// Waits until `plugin`'s job `id` has been waiting a while without a
/// drain, then drains to the end. `yes` never ends by itself, so only the
/// stop (timeout or cancel) can end it.
fn stall_then_drain(plugin: &PluginHandle) -> Vec<JobEvent> {
    std::thread::sleep(Duration::from_secs(3));
    drain_slowly(plugin, Duration::from_millis(1)).0
}

#[test]
fn a_timeout_ends_a_job_that_waits_for_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "wait");
    let plugin = host.plugin("slow");
    let mut request = JobSpawnRequest::new("yes", Vec::<String>::new());
    request.timeout_secs = 1;
    plugin.spawn(request);
    let events = stall_then_drain(&plugin);
    match events.last() {
        Some(JobEvent::JobCancelled { data, .. }) => {
            assert!(data.reason.contains("timeout after 1 s"), "{}", data.reason)
        }
        other => panic!("{other:?}"),
    }
    assert!(!events.iter().any(is_drop_notice));
}

#[test]
fn a_cancel_ends_a_job_that_waits_for_a_drain() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "wait");
    let plugin = host.plugin("slow");
    let id = plugin.spawn(JobSpawnRequest::new("yes", Vec::<String>::new()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(plugin.cancel(&id));
    let events = stall_then_drain(&plugin);
    match events.last() {
        Some(JobEvent::JobCancelled { data, .. }) => {
            assert!(
                data.reason.contains("cancelled by plugin slow"),
                "{}",
                data.reason
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn other_plugins_run_while_a_job_waits() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "wait");
    let waiting = host.plugin("slow");
    waiting.spawn(JobSpawnRequest::new("yes", Vec::<String>::new()));
    std::thread::sleep(Duration::from_millis(500));
    let other = host.plugin("other");
    let (events, _) = {
        other.spawn(JobSpawnRequest::new("seq", ["1", "5000"]));
        drain_slowly(&other, Duration::from_millis(1))
    };
    let lines = events.iter().filter_map(stdout_line).count();
    assert_eq!(lines, 5000);
    assert!(matches!(events.last(), Some(JobEvent::JobCompleted { .. })));
}

#[test]
fn shutdown_does_not_wait_for_a_plugin_that_never_drains() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "wait");
    let plugin = host.plugin("slow");
    let id = plugin.spawn(JobSpawnRequest::new("yes", Vec::<String>::new()));
    std::thread::sleep(Duration::from_millis(500));
    let (done, finished) = std::sync::mpsc::channel();
    let dropper = std::thread::spawn(move || {
        drop(host);
        let _ = done.send(());
    });
    // Not a timing assertion: a host that waited for the drain would never
    // return at all.
    finished
        .recv_timeout(Duration::from_secs(120))
        .expect("shutdown returned");
    dropper.join().unwrap();
    let events = plugin.drain_events();
    assert!(
        events.iter().any(|e| e.is_terminal() && e.job_id() == &id),
        "the job ended"
    );
}
