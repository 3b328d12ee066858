//! Section 10: what observation costs. Every observed open is a round trip
//! to the host thread (seccomp user notification), so the measure is a job
//! doing nothing but opens — 100,000 of one file — unobserved, in learn
//! mode and under `--why` (`explain_denials`), and the same with every
//! open refused; then a short job (`/bin/true`), where observation is
//! paid once per process start. All runs alternate in one loop, so load
//! from other builds falls on every variant alike.

use crate::linux::{PROBE, median, ms, ratio, tempdir};
use jobwarden::contract::JobSpawnRequest;
use jobwarden::{JobEnd, JobHost, PluginHandle, Policy, PolicyJobHost};
use std::path::Path;
use std::time::{Duration, Instant};

/// The bench policy, best effort (learn mode switches Landlock off).
fn policy() -> std::sync::Arc<Policy> {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let text = format!(
        r#"
version = 1
enforcement = "best_effort"
search_path = ["/usr/bin", "/bin"]
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{probe_dir}"]
read_write = ["{{repo}}", "{{tmp}}", "/dev/null"]
[limits]
timeout_secs = 600
[binaries.probe]
path = "{PROBE}"
[binaries.true]
[plugins.bench]
binaries = ["probe", "true"]
"#
    );
    Policy::from_toml("bench-observe.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

/// Runs one job to its end; returns its wall time (spawn → terminal event)
/// and how it ended.
fn timed(plugin: &PluginHandle, request: JobSpawnRequest) -> (Duration, Option<JobEnd>) {
    let start = Instant::now();
    let id = plugin.spawn(request);
    loop {
        for event in plugin.wait_events(Duration::from_secs(5)) {
            if event.is_terminal() && event.job_id() == &id {
                return (start.elapsed(), plugin.end(&id));
            }
        }
    }
}

pub fn observation_overhead(quick: bool) {
    let opens: u64 = if quick { 10_000 } else { 100_000 };
    let runs = if quick { 2 } else { 7 };
    let short_runs = if quick { 10 } else { 100 };
    println!("10. observation: {opens} opens of one file, and /bin/true");
    let dir = tempdir();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let granted = repo.join("granted.txt");
    std::fs::write(&granted, "x").unwrap();
    let refused = dir.path().join("refused.txt");
    std::fs::write(&refused, "x").unwrap();
    let host = |configure: fn(jobwarden::HostBuilder) -> jobwarden::HostBuilder| {
        configure(PolicyJobHost::builder(policy(), &repo).tmp_dir(dir.path()))
            .build()
            .expect("a host")
    };
    let plain = host(|b| b);
    let why = host(|b| b.explain_denials());
    let learn = host(|b| b.learn_mode());
    let reopen = |path: &Path| {
        JobSpawnRequest::new(
            "probe",
            [
                "reopen".to_string(),
                path.display().to_string(),
                opens.to_string(),
            ],
        )
    };
    let (p, w, l) = (
        plain.plugin("bench"),
        why.plugin("bench"),
        learn.plugin("bench"),
    );
    let mut times: [Vec<Duration>; 5] = Default::default();
    for _ in 0..runs {
        let (t, end) = timed(&p, reopen(&granted));
        assert_eq!(
            end,
            Some(JobEnd::Exited { code: 0 }),
            "the granted opens failed"
        );
        times[0].push(t);
        times[1].push(timed(&l, reopen(&granted)).0);
        times[2].push(timed(&w, reopen(&granted)).0);
        let (t, end) = timed(&p, reopen(&refused));
        assert_ne!(
            end,
            Some(JobEnd::Exited { code: 0 }),
            "the refused opens succeeded"
        );
        times[3].push(t);
        times[4].push(timed(&w, reopen(&refused)).0);
    }
    let [base, learned, explained, base_refused, explained_refused] = times.map(median);
    println!(
        "   {opens} granted opens: unobserved {} · learn {} ({}) · --why {} ({})",
        ms(base),
        ms(learned),
        ratio(learned, base),
        ms(explained),
        ratio(explained, base)
    );
    println!(
        "   {opens} refused opens: unobserved {} · --why {} ({})",
        ms(base_refused),
        ms(explained_refused),
        ratio(explained_refused, base_refused)
    );
    let per_call = explained.saturating_sub(base).as_secs_f64() * 1e6 / opens as f64;
    println!("   each observed call costs about {per_call:.1} µs (--why, granted opens)");
    let truth = || JobSpawnRequest::new("true", Vec::<String>::new());
    let mut short: [Vec<Duration>; 2] = Default::default();
    for _ in 0..short_runs {
        short[0].push(timed(&p, truth()).0);
        short[1].push(timed(&w, truth()).0);
    }
    let [base, explained] = short.map(median);
    println!(
        "   spawn → end of /bin/true: unobserved {} · --why {} ({})",
        ms(base),
        ms(explained),
        ratio(explained, base)
    );
    println!();
}
