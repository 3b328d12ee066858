//! Invariant 6: no job, however much it prints, makes the host's memory grow
//! past a bound. A job floods 1 GB of lines while nobody drains; the host's
//! resident memory must stay within the queue bound plus a small overhead.
//!
//! Its own test binary, so no other test's allocations disturb the reading.

// Linux only: reads /proc for the host's memory.
#![cfg(target_os = "linux")]

use jobwarden::contract::JobEvent;
use jobwarden::{JobHost, JobSpawnRequest, Policy, PolicyJobHost};
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");
const FLOOD_BYTES: u64 = 1_000_000_000;
/// The policy's queue bound, plus room for allocator slack and buffers.
const QUEUE_BYTES: u64 = 16 << 20;
const ALLOWED_GROWTH: u64 = QUEUE_BYTES + (48 << 20);

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_gigabyte_flood_nobody_drains_keeps_the_host_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let probe_dir = std::path::Path::new(PROBE)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let policy = Policy::from_toml(
        "flood.toml",
        &format!(
            r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{probe_dir}"]
[output]
max_queued_events = 10000
max_queued_bytes = "16 MiB"
[limits]
timeout_secs = 600
[binaries.probe]
path = "{PROBE}"
[plugins.flood]
binaries = ["probe"]
"#
        ),
    )
    .unwrap()
    .policy;
    let host = PolicyJobHost::builder(policy, dir.path())
        .tmp_dir(dir.path())
        .build()
        .unwrap();
    let plugin = host.plugin("flood");
    let before = rss();
    let started = Instant::now();
    let id = plugin.spawn(JobSpawnRequest::new(
        "probe",
        ["flood".to_string(), FLOOD_BYTES.to_string()],
    ));
    let mut peak = before;
    // Nobody drains: watch the status until the job ends.
    while !plugin.status(&id).is_some_and(|s| s.is_finished()) {
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the flood did not finish"
        );
    }
    peak = peak.max(rss());
    let growth = peak.saturating_sub(before);
    eprintln!(
        "flood of {} MB took {:.1} s; host RSS {} MiB -> peak {} MiB (+{} MiB, bound +{} MiB)",
        FLOOD_BYTES / 1_000_000,
        started.elapsed().as_secs_f64(),
        before >> 20,
        peak >> 20,
        growth >> 20,
        ALLOWED_GROWTH >> 20
    );
    assert!(
        growth <= ALLOWED_GROWTH,
        "host memory grew by {} MiB",
        growth >> 20
    );

    // Now drain: lifecycle events survived, and the drop is reported.
    let events = plugin.drain_events();
    assert!(
        matches!(events.first(), Some(JobEvent::JobStarted { .. })),
        "{:?}",
        events.first()
    );
    assert!(events.last().unwrap().is_terminal());
    assert!(
        events.iter().any(|e| matches!(e, JobEvent::JobLogLine { data, .. } if data.stream == "system" && data.line.contains("were dropped"))),
        "the drop is reported"
    );
    let kept: u64 = events
        .iter()
        .map(|e| jobwarden::output::queue::cost(e) as u64)
        .sum();
    assert!(kept <= QUEUE_BYTES + (1 << 20), "{kept} bytes kept");
}
