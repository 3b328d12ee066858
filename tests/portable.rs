//! The host's promises that hold on every platform, tested with real jobs
//! on whichever platform runs the tests: natively on Linux, and on Windows
//! (in CI, the Windows build of this file runs under Wine). Where a
//! platform confines less, the tests assert that the report says so and
//! that a `required` policy refuses.

#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use jobwarden::contract::{JobEvent, JobSpawnRequest, STREAM_STDOUT};
use jobwarden::host::{JobEnd, PluginHandle, PolicyJobHost};
use jobwarden::platform::ENV_IGNORE_CASE;
use jobwarden::policy::Policy;
use jobwarden::sandbox::PLATFORM;
use jobwarden::sandbox::{EnforcementReport, Status};
use jobwarden::{JobHost, JobId};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");

fn policy(enforcement: &str, limits: &str) -> Arc<Policy> {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let text = format!(
        r#"
version = 1
enforcement = "{enforcement}"
[env]
allow = ["PROBE_*"]
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", '{probe_dir}']
read_write = ["{{tmp}}"]
[limits]
timeout_secs = 60
kill_grace_secs = 0.3
{limits}
[binaries.probe]
path = '{PROBE}'
[plugins.tests]
binaries = ["probe"]
"#
    );
    Policy::from_toml("portable.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

struct Fixture {
    _dir: tempfile::TempDir,
    host: PolicyJobHost,
}

impl Fixture {
    fn new(policy: Arc<Policy>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let host = PolicyJobHost::builder(policy, &repo)
            .tmp_dir(dir.path())
            .build()
            .unwrap();
        Self { _dir: dir, host }
    }

    fn run(&self, request: JobSpawnRequest) -> Outcome {
        let plugin = self.host.plugin("tests");
        let id = plugin.spawn(request);
        self.finish(&plugin, id)
    }

    fn finish(&self, plugin: &PluginHandle, id: JobId) -> Outcome {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !events.last().is_some_and(JobEvent::is_terminal) {
            assert!(Instant::now() < deadline, "no terminal event: {events:#?}");
            events.extend(plugin.wait_events(Duration::from_millis(100)));
        }
        Outcome {
            end: plugin.end(&id),
            report: plugin.enforcement(&id),
            events,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    events: Vec<JobEvent>,
    end: Option<JobEnd>,
    report: Option<EnforcementReport>,
}

impl Outcome {
    fn stdout(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                JobEvent::JobLogLine { data, .. } if data.stream == STREAM_STDOUT => {
                    Some(format!("{}\n", data.line))
                }
                _ => None,
            })
            .collect()
    }

    fn status(&self, item: &str) -> Status {
        let report = self.report.as_ref().expect("a report");
        report
            .item(item)
            .unwrap_or_else(|| panic!("no {item}: {report}"))
            .status
    }

    /// The pids the probe's `tree` action printed.
    fn children(&self) -> Vec<u32> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("probe: child pid ")?.trim().parse().ok())
            .collect()
    }
}

/// Whether `pid` still runs, asked of the probe (not as a job).
fn alive(pid: u32) -> bool {
    std::process::Command::new(PROBE)
        .args(["alive", &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits up to 5 s for every pid to be gone (a killed process is reaped
/// by the host's reaper shortly after).
fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left: Vec<u32> = pids.to_vec();
    while !left.is_empty() && Instant::now() < deadline {
        left.retain(|p| alive(*p));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        left.is_empty(),
        "processes of the job outlived it: {left:?}"
    );
}

#[test]
fn a_job_runs_and_its_report_says_what_this_platform_enforced() {
    let fixture = Fixture::new(policy("best_effort", ""));
    let out = fixture.run(JobSpawnRequest::new("probe", ["say", "0", "one", "two"]));
    assert_eq!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
    assert!(out.stdout().contains("one\ntwo\n"), "{out:#?}");
    let report = out.report.as_ref().unwrap();
    assert_eq!(report.platform, PLATFORM);
    let filesystem = report.item("filesystem").unwrap();
    if PLATFORM == "linux" {
        assert_eq!(filesystem.status, Status::Enforced, "{report}");
    } else {
        assert_eq!(filesystem.status, Status::NotEnforced, "{report}");
        assert!(
            filesystem.detail.contains(&format!(
                "not enforced on {}",
                if PLATFORM == "macos" {
                    "macOS"
                } else {
                    "Windows"
                }
            )),
            "{report}"
        );
    }
    // The summary line after JobStarted says the same.
    let summary = out
        .events
        .iter()
        .find_map(|e| match e {
            JobEvent::JobLogLine { data, .. } if data.line.starts_with("jobwarden: enforced:") => {
                Some(data.line.clone())
            }
            _ => None,
        })
        .expect("an enforcement line");
    if PLATFORM != "linux" {
        assert!(summary.contains("filesystem NOT enforced"), "{summary}");
    }
}

#[test]
fn a_required_policy_runs_only_where_everything_is_enforced() {
    let fixture = Fixture::new(policy("required", ""));
    let out = fixture.run(JobSpawnRequest::new("probe", ["print", "hello"]));
    if PLATFORM == "linux" {
        assert_eq!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
    } else {
        assert_eq!(out.end, Some(JobEnd::EnforcementUnavailable), "{out:#?}");
        let JobEvent::JobFailed { data, .. } = out.events.last().unwrap() else {
            panic!("{out:#?}")
        };
        assert!(
            data.error.contains("filesystem NOT enforced"),
            "{}",
            data.error
        );
        assert!(data.error.contains("best_effort"), "{}", data.error);
        assert!(
            out.stdout().is_empty(),
            "the job must not have run: {out:#?}"
        );
    }
}

#[test]
fn a_timeout_ends_the_whole_tree() {
    let fixture = Fixture::new(policy("best_effort", ""));
    let request = JobSpawnRequest::new("probe", ["tree", "3", "30"]).with_timeout_secs(2);
    let out = fixture.run(request);
    assert_eq!(out.end, Some(JobEnd::TimedOut), "{out:#?}");
    let children = out.children();
    assert_eq!(children.len(), 3, "{out:#?}");
    assert_all_gone(&children);
}

#[test]
fn cancel_ends_the_whole_tree() {
    let fixture = Fixture::new(policy("best_effort", ""));
    let plugin = fixture.host.plugin("tests");
    let id = plugin.spawn(JobSpawnRequest::new("probe", ["tree", "3", "30"]));
    // Cancel once the tree exists.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|e: &JobEvent| {
        matches!(e, JobEvent::JobLogLine { data, .. } if data.line.starts_with("probe: tree of"))
    }) {
        assert!(Instant::now() < deadline, "the tree never started: {seen:#?}");
        seen.extend(plugin.wait_events(Duration::from_millis(100)));
    }
    assert!(plugin.cancel(&id));
    let mut out = fixture.finish(&plugin, id);
    seen.append(&mut out.events);
    out.events = seen;
    assert_eq!(out.end, Some(JobEnd::Cancelled), "{out:#?}");
    assert_all_gone(&out.children());
}

#[test]
fn environment_names_follow_the_platform_case_rules() {
    let fixture = Fixture::new(policy("best_effort", ""));
    let request = JobSpawnRequest::new("probe", ["env"]).with_env("probe_flag", "on");
    let out = fixture.run(request);
    if ENV_IGNORE_CASE {
        assert_eq!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
        assert!(out.stdout().contains("PROBE_FLAG=on"), "{out:#?}");
    } else {
        assert!(matches!(out.end, Some(JobEnd::Denied { .. })), "{out:#?}");
    }
}

/// What a limit test needs: a cgroup controller on Linux, job object
/// limits that are enforced (not Wine) on Windows.
fn limit_requirement(linux: &'static str) -> &'static str {
    if cfg!(windows) {
        "windows-job-limits"
    } else if cfg!(target_os = "macos") {
        "macos-limits"
    } else {
        linux
    }
}

#[test]
fn the_process_limit_holds_for_the_whole_tree() {
    let fixture = Fixture::new(policy("best_effort", "processes = 3"));
    let out = fixture.run(JobSpawnRequest::new("probe", ["tree", "6", "5"]));
    if out.status("processes") != Status::Enforced {
        skip!(
            limit_requirement("cgroup-pids"),
            "this machine does not enforce a process limit for the tree"
        );
    }
    assert!(out.stdout().contains("denied"), "{out:#?}");
    assert_ne!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
    assert!(out.children().len() < 6, "{out:#?}");
}

#[test]
fn the_memory_limit_holds() {
    let fixture = Fixture::new(policy("best_effort", "memory = \"128MiB\""));
    let out = fixture.run(JobSpawnRequest::new("probe", ["alloc", "512"]));
    if out.status("memory") != Status::Enforced {
        skip!(
            limit_requirement("cgroup-memory"),
            "this machine does not enforce a memory limit"
        );
    }
    assert!(!out.stdout().contains("512 MiB touched"), "{out:#?}");
    assert_ne!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
}

/// Windows runs `<path>.exe` for a program path without that suffix, so a
/// policy naming anything else is refused rather than run a different file.
#[cfg(windows)]
#[test]
fn on_windows_only_an_exe_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tool.bat");
    std::fs::write(&script, "@echo off\r\necho ran\r\n").unwrap();
    let text = format!(
        "version = 1\nenforcement = \"best_effort\"\n[binaries.tool]\npath = '{}'\n[plugins.tests]\nbinaries = [\"tool\"]\n",
        script.display()
    );
    let policy = Policy::from_toml("exe.toml", &text).unwrap().policy;
    let fixture = Fixture::new(policy);
    let out = fixture.run(JobSpawnRequest::new("tool", Vec::<String>::new()));
    assert_eq!(
        out.end,
        Some(JobEnd::Denied {
            rule: "binaries.tool.path".into()
        }),
        "{out:#?}"
    );
    assert!(!out.stdout().contains("ran"), "{out:#?}");
}
