//! Shared helpers for the sandbox tests: a temp repo, a policy naming the
//! probe, a host, and a way to run one job to its end and look at what
//! happened. Every job is a real process under the real sandbox.

use jobwarden::contract::{JobEvent, JobSpawnRequest, STREAM_STDERR, STREAM_STDOUT, STREAM_SYSTEM};
use jobwarden::host::{JobEnd, PluginHandle, PolicyJobHost};
use jobwarden::policy::Policy;
use jobwarden::sandbox::EnforcementReport;
use jobwarden::{JobHost, JobId};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");

/// The enforcement line of the tests' policy: the embedded default's, so
/// the suite runs as a regular user too (confinement refused when it cannot
/// be applied; limits and cleanup reported, partial without a delegated
/// cgroup). Tests of refusals for limits use [`Fixture::all_required`].
pub const ENFORCEMENT: &str = r#"enforcement = { confinement = "required", limits = "best_effort", cleanup = "best_effort" }"#;

/// A policy for the sandbox tests. `{extra}` is spliced in at the end, so a
/// test can add sections (binary overrides, plugins).
pub fn policy_text(extra: &str) -> String {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    format!(
        r#"
version = 1
{ENFORCEMENT}
search_path = ["/usr/bin", "/bin"]

[env]
inherit = ["HOST_VISIBLE", "HOST_*"]
allow = ["PROBE_*", "LD_PRELOAD"]
set = {{ PATH = "/usr/bin:/bin", TMPDIR = "{{tmp}}" }}

[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/proc", "{probe_dir}"]
read_write = ["{{repo}}", "{{tmp}}", "/dev/null"]

[limits]
timeout_secs = 60
kill_grace_secs = 0.5

[binaries.probe]
path = "{PROBE}"

[binaries.sh]
path = "/bin/sh"

[plugins.tests]
binaries = ["probe", "sh"]
max_concurrent = 8

[plugins.other]
binaries = ["probe"]
{extra}
"#
    )
}

/// A temp repo and a host over it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub host: PolicyJobHost,
}

impl Fixture {
    pub fn new(extra_policy: &str) -> Self {
        Self::with(extra_policy, |b| b)
    }

    pub fn with(
        extra_policy: &str,
        configure: impl FnOnce(jobwarden::HostBuilder) -> jobwarden::HostBuilder,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo").canonicalize().unwrap_or_else(|_| {
            std::fs::create_dir_all(dir.path().join("repo")).unwrap();
            dir.path().join("repo").canonicalize().unwrap()
        });
        let text = policy_text(extra_policy);
        let policy = Policy::from_toml("sandbox-tests.toml", &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .policy;
        let builder = PolicyJobHost::builder(policy, &repo)
            .host_env(vec![
                ("HOST_VISIBLE".into(), "yes".into()),
                ("HOST_API_TOKEN".into(), "s3cr3t-token".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "s3cr3t-aws".into()),
                ("UNINHERITED".into(), "nope".into()),
            ])
            .tmp_dir(dir.path());
        let host = configure(builder).build().unwrap();
        Self { dir, repo, host }
    }

    /// The same fixture under `enforcement = "best_effort"`.
    pub fn best_effort(
        extra_policy: &str,
        configure: impl FnOnce(jobwarden::HostBuilder) -> jobwarden::HostBuilder,
    ) -> Self {
        Self::enforcing("enforcement = \"best_effort\"", extra_policy, configure)
    }

    /// The same fixture under `enforcement = "required"`: limits and
    /// cleanup refuse too.
    pub fn all_required(
        extra_policy: &str,
        configure: impl FnOnce(jobwarden::HostBuilder) -> jobwarden::HostBuilder,
    ) -> Self {
        Self::enforcing("enforcement = \"required\"", extra_policy, configure)
    }

    fn enforcing(
        line: &str,
        extra_policy: &str,
        configure: impl FnOnce(jobwarden::HostBuilder) -> jobwarden::HostBuilder,
    ) -> Self {
        let fx = Self::with(extra_policy, configure);
        let text = policy_text(extra_policy).replace(ENFORCEMENT, line);
        fx.host.set_policy(
            Policy::from_toml("enforcement.toml", &text)
                .unwrap_or_else(|e| panic!("{e}"))
                .policy,
        );
        fx
    }

    /// The control of a kernel-baseline test: the same fixture with `layers`
    /// of the baseline switched off (best effort, as their items are then
    /// not enforced).
    pub fn without(extra_policy: &str, layers: &[jobwarden::sandbox::BaselineLayer]) -> Self {
        Self::best_effort(extra_policy, |mut b| {
            for layer in layers {
                b = b.without_baseline(*layer);
            }
            b
        })
    }

    /// The control with the whole kernel baseline switched off.
    pub fn without_baseline(extra_policy: &str) -> Self {
        Self::without(extra_policy, &jobwarden::sandbox::BaselineLayer::ALL)
    }

    pub fn plugin(&self) -> PluginHandle {
        self.host.plugin("tests")
    }

    /// Runs the probe with `args` as plugin `tests` and waits for its end.
    pub fn probe(&self, args: &[&str]) -> Outcome {
        self.run(JobSpawnRequest::new("probe", args.iter().copied()))
    }

    /// Runs `request` as plugin `tests` and waits for its end.
    pub fn run(&self, request: JobSpawnRequest) -> Outcome {
        run_to_end(&self.plugin(), request, Duration::from_secs(60))
    }
}

/// What one job did.
#[derive(Debug)]
pub struct Outcome {
    pub id: JobId,
    pub events: Vec<JobEvent>,
    pub end: Option<JobEnd>,
    pub enforcement: Option<EnforcementReport>,
}

impl Outcome {
    fn lines(&self, stream: &str) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                JobEvent::JobLogLine { data, .. } if data.stream == stream => {
                    Some(data.line.clone())
                }
                _ => None,
            })
            .collect()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.lines(STREAM_STDOUT)
    }

    pub fn stderr(&self) -> Vec<String> {
        self.lines(STREAM_STDERR)
    }

    pub fn system(&self) -> Vec<String> {
        self.lines(STREAM_SYSTEM)
    }

    pub fn terminal(&self) -> &JobEvent {
        self.events.last().expect("at least one event")
    }

    /// The exit code, panicking with the whole outcome if the job did not exit.
    pub fn code(&self) -> i32 {
        match &self.end {
            Some(JobEnd::Exited { code }) => *code,
            _ => panic!("the job did not exit normally: {self:#?}"),
        }
    }

    /// The failure text of a `JobFailed`.
    pub fn error(&self) -> String {
        match self.terminal() {
            JobEvent::JobFailed { data, .. } => data.error.clone(),
            other => panic!("expected JobFailed, got {other:?}\n{self:#?}"),
        }
    }

    /// Asserts that the probe's action was refused with `errno` (by name).
    pub fn assert_denied(&self, errno: &str) {
        let out = self.stdout().join("\n");
        assert!(
            out.contains(&format!("denied: {errno}")),
            "expected the kernel to refuse with {errno}; stdout:\n{out}\n{self:#?}"
        );
    }

    /// Asserts that the probe's action succeeded.
    pub fn assert_ok(&self) {
        let out = self.stdout().join("\n");
        assert!(
            out.contains(": ok"),
            "expected success; stdout:\n{out}\n{self:#?}"
        );
        assert_eq!(self.code(), 0);
    }
}

/// Spawns and collects events until the terminal one.
pub fn run_to_end(plugin: &PluginHandle, request: JobSpawnRequest, limit: Duration) -> Outcome {
    let id = plugin.spawn(request);
    let events = collect(plugin, &id, limit);
    Outcome {
        end: plugin.end(&id),
        enforcement: plugin.enforcement(&id),
        id,
        events,
    }
}

/// Collects the events of job `id` until its terminal event.
pub fn collect(plugin: &PluginHandle, id: &JobId, limit: Duration) -> Vec<JobEvent> {
    let deadline = Instant::now() + limit;
    let mut mine = Vec::new();
    loop {
        for event in plugin.wait_events(Duration::from_millis(200)) {
            assert_eq!(
                event.job_id(),
                id,
                "these helpers run one job at a time per plugin"
            );
            let terminal = event.is_terminal();
            mine.push(event);
            if terminal {
                return mine;
            }
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not end within {limit:?}: {mine:#?}"
        );
    }
}

/// True while a process with this pid exists (zombies included).
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to `limit` for `cond`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// True when process `pid` has ended: it no longer exists, or it is a
/// zombie nobody reaped yet (a dead escapee re-parented to this test
/// process, which reaps only what it knows).
pub fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
    }
}

/// Kills `pid` and reaps it if it became this process's child (orphans
/// are re-parented to the test process once a host made it a subreaper).
pub fn kill_and_reap(pid: i32) {
    // SAFETY: kill(2) and waitpid(2) with integers; WNOHANG never blocks
    // on a process that is not our child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    reap_if_ours(pid);
}

/// Reaps `pid` if it is a zombie child of this process (waits briefly for
/// it to die).
pub fn reap_if_ours(pid: i32) {
    for _ in 0..100 {
        // SAFETY: waitpid with WNOHANG on one pid.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if r != 0 {
            return; // reaped, or not our child (ECHILD)
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The variable that tells a child test which role its parent gave it.
const CHILD_ROLE: &str = "JOBWARDEN_TEST_CHILD";

/// A command running test `name` of this test binary in a child process.
/// Child tests are `#[ignore]`d (they only make sense run by their parent)
/// and begin with [`child_role`]. Some tests need a process of their own:
/// a host that runs as another user, holds a terminal, or is killed.
pub fn child_test(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, name);
    command
}

/// Checks that this child test was started by its parent (not by
/// `cargo test -- --ignored`).
pub fn child_role(name: &str) {
    assert_eq!(
        std::env::var(CHILD_ROLE).as_deref(),
        Ok(name),
        "{name} runs only as the child process of its parent test"
    );
}

/// Asserts that a child test ran and passed, showing its output if not.
pub fn assert_child_passed(output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Fixture {
    /// The plan the host would make for `request` from plugin `plugin`,
    /// without running it: for tests that change the world between the
    /// decision and the start.
    pub fn plan(&self, plugin: &str, request: &JobSpawnRequest) -> jobwarden::Plan {
        let job_tmp = self.dir.path().join(format!("planned-{}", unique()));
        let ctx = jobwarden::DecisionContext {
            repo: &self.repo,
            home: None,
            job_tmp: &job_tmp,
            host_env: &[],
        };
        jobwarden::decide(&self.host.policy(), plugin, request, &ctx)
            .unwrap_or_else(|denial| panic!("{denial}"))
    }
}

/// Prepares `plan` as the host would (opens and hashes the program,
/// opens the working directory, builds the Landlock ruleset, creates the
/// job's cgroups) without starting it.
pub fn prepare(
    plan: &jobwarden::Plan,
) -> Result<jobwarden::sandbox::Prepared, jobwarden::sandbox::PrepareError> {
    use jobwarden::sandbox::{HostSupport, SupportOptions};
    let support = HostSupport::detect(&SupportOptions::default());
    // Named like a host's job cgroups, after this (live) process, so no
    // other host removes them as stale.
    let job_name = format!("jobwarden-{}-test-{}", std::process::id(), unique());
    jobwarden::sandbox::prepare(
        plan,
        &support,
        &job_name,
        &mut jobwarden::sandbox::HashCache::default(),
    )
}

/// A number not used before in this process.
pub fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Copies the probe to `path` (mode 0755), with `extra` bytes appended
/// (an ELF file runs the same with trailing bytes; its hash differs).
pub fn copy_probe(path: &Path, extra: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = std::fs::read(PROBE).unwrap();
    bytes.extend_from_slice(extra);
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The sha256 of a file, in hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
