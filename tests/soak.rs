//! Soak: thousands of jobs through one host — success, failure, timeout,
//! cancel, denial, output floods and process trees, interleaved — and then
//! the host's descriptors, threads and zombie children are back where they
//! started and its memory did not grow beyond a small bound.
//!
//! CI runs 500 jobs. The long run is a command:
//!
//! ```sh
//! JOBWARDEN_SOAK_JOBS=10000 cargo test --release --test soak -- --nocapture
//! ```

// Linux only: it counts descriptors, threads and zombies in /proc.
#![cfg(target_os = "linux")]

use jobwarden::contract::JobEvent;
use jobwarden::host::{JobEnd, PolicyJobHost};
use jobwarden::policy::Policy;
use jobwarden::{JobHost, JobId, JobSpawnRequest};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Success,
    Failure,
    Timeout,
    Cancel,
    Denied,
    Flood,
    Tree,
}

const KINDS: [Kind; 7] = [
    Kind::Success,
    Kind::Failure,
    Kind::Timeout,
    Kind::Cancel,
    Kind::Denied,
    Kind::Flood,
    Kind::Tree,
];

fn request(kind: Kind) -> JobSpawnRequest {
    let probe = |args: &[&str]| JobSpawnRequest::new("probe", args.iter().copied());
    match kind {
        Kind::Success => probe(&["print", "hello"]),
        Kind::Failure => probe(&["exit", "3"]),
        Kind::Timeout => probe(&["sleep", "30"]).with_timeout_secs(1),
        Kind::Cancel => probe(&["sleep", "30"]),
        Kind::Denied => JobSpawnRequest::new("bash", ["-c", "id"]),
        Kind::Flood => probe(&["flood", "1000000"]),
        Kind::Tree => probe(&["tree", "3", "0.05"]),
    }
}

fn expected(kind: Kind, end: &JobEnd) -> bool {
    match kind {
        Kind::Success | Kind::Flood | Kind::Tree => *end == JobEnd::Exited { code: 0 },
        Kind::Failure => *end == JobEnd::Exited { code: 3 },
        Kind::Timeout => *end == JobEnd::TimedOut,
        Kind::Cancel => *end == JobEnd::Cancelled,
        Kind::Denied => matches!(end, JobEnd::Denied { .. }),
    }
}

/// The host process's resources, from /proc.
#[derive(Debug, Clone, Copy)]
struct Resources {
    fds: usize,
    threads: usize,
    zombies: usize,
    rss_kib: u64,
}

fn resources() -> Resources {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let me = std::process::id().to_string();
    let zombies = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …: split after the last ')'.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let mut fields = rest.split_whitespace();
            fields.next() == Some("Z") && fields.next() == Some(me.as_str())
        })
        .count();
    Resources {
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        threads: field("Threads:") as usize,
        zombies,
        rss_kib: field("VmRSS:"),
    }
}

fn policy() -> std::sync::Arc<Policy> {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let text = format!(
        r#"
version = 1
enforcement = "required"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", '{probe_dir}']
read_write = ["{{tmp}}"]
[limits]
timeout_secs = 60
kill_grace_secs = 0.2
processes = 64
memory = "256MiB"
[output]
max_queued_events = 4096
[binaries.probe]
path = '{PROBE}'
[plugins.soak]
binaries = ["probe"]
max_concurrent = 16
"#
    );
    Policy::from_toml("soak.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

/// Runs `count` jobs of the mix through `host`, cancelling the cancel kind
/// once started; returns how each ended.
fn run_mix(host: &PolicyJobHost, count: usize) -> HashMap<Kind, usize> {
    let plugin = host.plugin("soak");
    let mut kinds: HashMap<JobId, Kind> = HashMap::new();
    let mut done: HashMap<JobId, ()> = HashMap::new();
    let mut tally: HashMap<Kind, usize> = HashMap::new();
    let mut submitted = 0;
    let deadline = Instant::now() + Duration::from_secs(60 + count as u64 / 5);
    while done.len() < count {
        assert!(
            Instant::now() < deadline,
            "soak stalled: {} of {count} done",
            done.len()
        );
        // Keep a bounded number waiting, as a TUI would.
        while submitted < count && submitted - done.len() < 64 {
            let kind = KINDS[submitted % KINDS.len()];
            kinds.insert(plugin.spawn(request(kind)), kind);
            submitted += 1;
        }
        for event in plugin.wait_events(Duration::from_millis(50)) {
            let id = event.job_id().to_string();
            let kind = kinds[&id];
            if let JobEvent::JobStarted { .. } = event
                && kind == Kind::Cancel
            {
                assert!(plugin.cancel(&id));
            }
            if event.is_terminal() {
                assert!(
                    done.insert(id.clone(), ()).is_none(),
                    "two terminal events for {id}"
                );
                let end = plugin.end(&id).expect("an ended job has an end");
                assert!(expected(kind, &end), "{kind:?} job {id} ended {end:?}");
                *tally.entry(kind).or_default() += 1;
            }
        }
    }
    tally
}

#[test]
fn thousands_of_jobs_leave_the_host_as_they_found_it() {
    let count: usize = std::env::var("JOBWARDEN_SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let host = PolicyJobHost::builder(policy(), &repo)
        .tmp_dir(dir.path())
        .build()
        .unwrap();

    // Warm up: first-use allocations (the sampler, lazily built tables).
    run_mix(&host, 2 * KINDS.len());
    std::thread::sleep(Duration::from_millis(500));
    let before = resources();

    let started = Instant::now();
    let tally = run_mix(&host, count);
    let elapsed = started.elapsed();

    // Reaping of killed trees finishes shortly after their jobs end.
    let settle = Instant::now() + Duration::from_secs(10);
    let mut after = resources();
    while (after.fds != before.fds || after.threads != before.threads || after.zombies > 0)
        && Instant::now() < settle
    {
        std::thread::sleep(Duration::from_millis(100));
        after = resources();
    }
    let growth_kib = after.rss_kib.saturating_sub(before.rss_kib);
    println!(
        "soak: {count} jobs in {:.1} s ({:.0} jobs/s); {tally:?}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    println!("soak: before {before:?}");
    println!("soak: after  {after:?} (rss +{growth_kib} KiB)");
    assert_eq!(tally.values().sum::<usize>(), count);
    assert_eq!(after.fds, before.fds, "descriptors leaked");
    assert_eq!(after.threads, before.threads, "threads leaked");
    assert_eq!(after.zombies, 0, "zombie children left");
    // The last 4096 finished jobs' records are kept for `status` (about
    // 2 KiB each, reports shared); everything else is reused.
    assert!(growth_kib < 16 * 1024, "RSS grew by {growth_kib} KiB");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() <= 2,
        "job directories left behind"
    );
}
