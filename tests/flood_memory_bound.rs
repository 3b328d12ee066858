//! Invariant 6: no job, however much it prints, makes the host's memory grow
//! past a bound, and the bound follows from the queue settings
//! (policy/README.md, `[output]`). Each scenario runs in a child process
//! of this test (this binary again, with one scenario named in the
//! environment), which reports its resident memory before the flood and
//! its peak (`VmHWM`, the kernel's high-water mark) after it: measured,
//! not estimated, and no other test's allocations in the way.
//!
//! The scenarios: ten million one-byte lines with random bytes on stderr
//! at the same time; a single 1 GB line; 1 GB of 100-byte lines; and a
//! stalled reader — a plugin that waits (`when_full = "wait"`) and does
//! not drain, and `jobwarden run` writing into a pipe nobody reads yet.

// Linux only: reads /proc for the memory figures.
#![cfg(target_os = "linux")]

use jobwarden::contract::{JobEvent, STREAM_STDOUT, STREAM_SYSTEM};
use jobwarden::{JobHost, JobSpawnRequest, PluginHandle, Policy, PolicyJobHost};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");
const JOBWARDEN: &str = env!("CARGO_BIN_EXE_jobwarden");
const SCENARIO: &str = "JOBWARDEN_FLOOD_SCENARIO";

/// The policy's queue bound.
const QUEUE_BYTES: u64 = 16 << 20;
/// The documented bound on output in flight, for one plugin with one job:
/// the queue, the events of one read on their way into it, what the
/// consumer holds from its last drain (each at most the queue bound), the
/// unfinished lines of both streams (2 × 4 KiB), the tail (4 KiB) and the
/// host's read buffer (256 KiB); plus allocator slack for freed blocks
/// not yet returned to the kernel, which is what this measures.
const BOUND: u64 = 3 * QUEUE_BYTES + 2 * 4096 + 4096 + (256 << 10) + ALLOCATOR_SLACK;
const ALLOCATOR_SLACK: u64 = 8 << 20;

fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

fn own(field: &str) -> u64 {
    status_kib(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        field,
    ) * 1024
}

fn policy(extra: &str) -> std::sync::Arc<Policy> {
    let probe_dir = std::path::Path::new(PROBE)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let text = format!(
        r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/zero", "/dev/urandom", "{probe_dir}"]
read_write = ["{{repo}}", "{{tmp}}", "/dev/null"]
[output]
max_queued_events = 10000
max_queued_bytes = "16 MiB"
[limits]
timeout_secs = 900
[binaries.probe]
path = "{PROBE}"
[binaries.sh]
path = "/bin/sh"
helpers = ["/usr/bin", "/bin"]
[plugins.flood]
binaries = ["probe", "sh"]
[plugins.waits]
binaries = ["probe", "sh"]
[plugins.waits.output]
when_full = "wait"
{extra}
"#
    );
    Policy::from_toml("flood.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

fn sh(script: &str) -> JobSpawnRequest {
    JobSpawnRequest::new("sh", ["-c".to_string(), script.to_string()])
}

/// Waits for the job's end without draining a single event.
fn wait_undrained(plugin: &PluginHandle, id: &str) {
    let started = Instant::now();
    let id = id.to_string();
    while !plugin.status(&id).is_some_and(|s| s.is_finished()) {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the flood did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_drop_notice(event: &JobEvent) -> bool {
    matches!(event, JobEvent::JobLogLine { data, .. }
        if data.stream == STREAM_SYSTEM && data.line.contains("were dropped"))
}

/// Runs in the child: one scenario against a host in this process.
fn run_scenario(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let host = PolicyJobHost::builder(policy(""), dir.path())
        .tmp_dir(dir.path())
        .build()
        .unwrap();
    // Warm up: the first job's one-time costs are not output.
    let warm = host.plugin("flood");
    let id = warm.spawn(sh("true"));
    wait_undrained(&warm, &id);
    warm.drain_events();
    let before = own("VmRSS:");
    let summary = match name {
        "tiny_lines" => {
            let plugin = host.plugin("flood");
            let id = plugin.spawn(sh(
                "head -c 20000000 /dev/urandom >&2 & yes | head -n 10000000; wait",
            ));
            wait_undrained(&plugin, &id);
            let events = plugin.drain_events();
            assert!(events.last().unwrap().is_terminal());
            assert!(events.iter().any(is_drop_notice), "the drop is reported");
            format!("{} events kept", events.len())
        }
        "gigabyte_line" => {
            let plugin = host.plugin("flood");
            let id = plugin.spawn(sh("head -c 1000000000 /dev/zero | tr '\\0' y"));
            wait_undrained(&plugin, &id);
            let events = plugin.drain_events();
            assert!(events.last().unwrap().is_terminal());
            format!("{} events kept", events.len())
        }
        "gigabyte_of_lines" => {
            let plugin = host.plugin("flood");
            let id = plugin.spawn(JobSpawnRequest::new(
                "probe",
                ["flood".to_string(), 1_000_000_000.to_string()],
            ));
            wait_undrained(&plugin, &id);
            let events = plugin.drain_events();
            assert!(events.last().unwrap().is_terminal());
            assert!(events.iter().any(is_drop_notice), "the drop is reported");
            format!("{} events kept", events.len())
        }
        "stalled_reader" | "stalled_reader_long_lines" => {
            // Tiny lines are the worst case for events per byte, long ones
            // for bytes per event. The plugin waits, and does not drain for
            // three seconds, then drains everything, each drain held while
            // the next fills up.
            let plugin = host.plugin("waits");
            let (script, expected) = if name == "stalled_reader" {
                ("yes | head -n 3000000", 3_000_000)
            } else {
                (
                    "yes \"$(head -c 4000 /dev/zero | tr '\\0' x)\" | head -n 100000",
                    100_000,
                )
            };
            plugin.spawn(sh(script));
            std::thread::sleep(Duration::from_secs(3));
            let mut lines = 0u64;
            let mut held = Vec::new();
            loop {
                let events = plugin.wait_events(Duration::from_millis(100));
                let ended = events.iter().any(JobEvent::is_terminal);
                lines += events
                    .iter()
                    .filter(|e| matches!(e, JobEvent::JobLogLine { data, .. } if data.stream == STREAM_STDOUT))
                    .count() as u64;
                assert!(!events.iter().any(is_drop_notice));
                // The consumer holds its last drain while the next fills.
                let previous = std::mem::replace(&mut held, events);
                drop(previous);
                if ended {
                    break;
                }
            }
            drop(held);
            assert_eq!(lines, expected, "every line arrived");
            format!("{lines} lines")
        }
        other => panic!("unknown scenario {other}"),
    };
    let peak = own("VmHWM:");
    drop(host);
    println!("MEASURED {before} {peak} {summary}");
}

/// The child's hook: does nothing unless the parent named a scenario.
#[test]
fn scenario_child() {
    if let Ok(name) = std::env::var(SCENARIO) {
        run_scenario(&name);
    }
}

/// Runs `name` in a child process; returns (RSS before, peak RSS).
fn measure(name: &str) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "scenario_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("MEASURED ").map(|(_, m)| m))
        .unwrap_or_else(|| panic!("{name}: no measurement in {stdout}"));
    let mut words = line.split(' ');
    let before: u64 = words.next().unwrap().parse().unwrap();
    let peak: u64 = words.next().unwrap().parse().unwrap();
    let rest: Vec<&str> = words.collect();
    report(name, before, peak, &rest.join(" "));
    (before, peak)
}

fn report(name: &str, before: u64, peak: u64, summary: &str) {
    eprintln!(
        "{name}: RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB, bound +{} MiB); {summary}",
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        peak.saturating_sub(before) as f64 / 1048576.0,
        BOUND >> 20
    );
    assert!(
        peak.saturating_sub(before) <= BOUND,
        "{name}: the host grew by {} MiB, past the bound of {} MiB",
        peak.saturating_sub(before) >> 20,
        BOUND >> 20
    );
}

#[test]
fn ten_million_one_byte_lines_and_random_bytes_on_stderr() {
    measure("tiny_lines");
}

#[test]
fn a_single_gigabyte_line() {
    measure("gigabyte_line");
}

#[test]
fn a_gigabyte_of_lines_nobody_drains() {
    measure("gigabyte_of_lines");
}

#[test]
fn a_waiting_plugin_that_stalls() {
    measure("stalled_reader");
}

#[test]
fn a_waiting_plugin_that_stalls_on_long_lines() {
    measure("stalled_reader_long_lines");
}

/// `jobwarden run` into a pipe nobody reads for three seconds: the CLI is
/// the host here, so its own peak is read from `/proc/PID/status` until it
/// exits (the high-water mark only grows, so the last reading is the peak
/// up to its last moments), against the same CLI running a job that prints
/// nothing. Every byte arrives.
#[test]
fn run_into_a_stalled_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache"]
read_write = ["{repo}", "{tmp}", "/dev/null"]
[output]
max_queued_events = 10000
max_queued_bytes = "16 MiB"
[binaries.sh]
path = "/bin/sh"
helpers = ["/usr/bin", "/bin"]
[plugins.cli]
binaries = ["sh"]
"#,
    )
    .unwrap();
    let cli = |script: &str| {
        Command::new(JOBWARDEN)
            .args(["run", "--policy"])
            .arg(&policy)
            .arg("--repo")
            .arg(dir.path())
            .args(["--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The baseline: the same CLI running a job that prints nothing.
    let mut quiet = cli("sleep 2");
    std::thread::sleep(Duration::from_secs(1));
    let before = std::fs::read_to_string(format!("/proc/{}/status", quiet.id()))
        .map(|s| status_kib(&s, "VmHWM:") * 1024)
        .unwrap();
    assert!(quiet.wait().unwrap().success());

    let mut child = cli("yes | head -n 5000000");
    let status_path = format!("/proc/{}/status", child.id());
    let (done, finished) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while finished.try_recv().is_err() {
            match std::fs::read_to_string(&status_path) {
                Ok(s) if s.contains("VmHWM:") => peak = peak.max(status_kib(&s, "VmHWM:") * 1024),
                _ => break,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut out = child.stdout.take().unwrap();
    let (mut bytes, mut buf) = (0u64, vec![0u8; 65536]);
    let mut all_y = true;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        all_y &= buf[..n].iter().all(|b| *b == b'y' || *b == b'\n');
        bytes += n as u64;
    }
    let code = child.wait().unwrap();
    let _ = done.send(());
    let peak = watcher.join().unwrap();
    assert!(code.success(), "{code}");
    assert_eq!(bytes, 10_000_000, "every byte arrived");
    assert!(all_y);
    report(
        "run into a stalled pipe",
        before,
        peak,
        "10000000 bytes delivered",
    );
}
