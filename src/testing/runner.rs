//! Running a test file: static cases through the decision alone, live cases
//! as real jobs under a real host, each judged against what it expects.
//!
//! A live case that needs confinement this machine cannot give is reported
//! as [`Verdict::CannotConfine`] with the reason, never as passed: a skip
//! for an admin trying a policy on a weaker machine, a failure for CI
//! (`jobwarden test --require-live`), which must prove the confinement.

use super::cases::{
    Case, CaseKind, Decision, Home, KilledBy, LiveExpectation, PolicyRef, TestFile,
};
use crate::contract::{JobEvent, JobSpawnRequest, STREAM_STDERR, STREAM_STDOUT};
use crate::decision::{DecisionContext, decide};
use crate::host::{JobEnd, PolicyJobHost};
use crate::policy::{
    BinaryRule, EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, LoadError, PathTemplate, Policy, Sourced,
};
use crate::sandbox::{EnforcementReport, Status};
use crate::{JobHost, PluginHandle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options for running test files.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The `jobwarden-probe` binary for `probe_as` cases; when absent those
    /// cases are skipped.
    pub probe: Option<PathBuf>,
    /// Detection options for the hosts of live cases (testing aids only).
    pub support: crate::sandbox::SupportOptions,
}

/// A case's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The decision or the job was what the case expected.
    Pass,
    /// What was expected and what happened.
    Fail(String),
    /// Why this machine cannot run the case: its program is not installed,
    /// or (not root) its unconfined control failed for want of a right the
    /// user does not have either, such as reading `/etc/shadow`.
    Skip(String),
    /// Why this machine cannot prove the case: it cannot confine the job
    /// as the case needs, the probe is missing, or (root) the unconfined
    /// control failed too (the refusal would not be the sandbox's).
    CannotConfine(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// 1-based line of the case in its file.
    pub line: usize,
    /// Whether the case ran a job (rather than only the decision).
    pub live: bool,
    /// What became of it.
    pub verdict: Verdict,
    /// How long the case took (the decision, or the whole job).
    pub duration: Duration,
}

/// A file's results.
#[derive(Debug, Clone)]
pub struct FileResult {
    /// The test file.
    pub file: PathBuf,
    /// The policy under test: its path, or `<embedded default policy>`.
    pub policy: String,
    /// Set when the policy or workspace could not be set up; every case failed.
    pub error: Option<String>,
    /// One result per case, in file order.
    pub results: Vec<CaseResult>,
}

/// Runs every case of `file`.
pub fn run_file(file: &TestFile, options: &RunOptions) -> FileResult {
    let policy_name = match &file.policy {
        PolicyRef::File(p) => p.display().to_string(),
        PolicyRef::Embedded => EMBEDDED_DEFAULT_NAME.to_string(),
    };
    let fail_all = |error: String| FileResult {
        file: file.path.clone(),
        policy: policy_name.clone(),
        results: file
            .cases
            .iter()
            .map(|c| CaseResult {
                name: c.name.clone(),
                line: c.line,
                live: matches!(c.kind, CaseKind::Live(_)),
                verdict: Verdict::Fail(
                    "not run: the policy or workspace could not be set up".into(),
                ),
                duration: Duration::ZERO,
            })
            .collect(),
        error: Some(error),
    };
    let loaded = match &file.policy {
        PolicyRef::File(path) => Policy::load(path),
        PolicyRef::Embedded => Policy::from_toml(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT),
    };
    let policy = match loaded {
        Ok(loaded) => loaded.policy,
        Err(LoadError::Invalid(report)) => return fail_all(report.render()),
        Err(e) => return fail_all(e.to_string()),
    };
    let workspace = match Workspace::new(file) {
        Ok(w) => w,
        Err(e) => return fail_all(format!("cannot set up the test workspace: {e}")),
    };

    let mut results = Vec::new();
    // Cases that expect a refusal run on a host that observes them, so the
    // refusal is judged from what the sandbox refused, not from wording.
    let mut hosts: [Option<PolicyJobHost>; 2] = [None, None];
    let derived = with_probes(&policy, file, options.probe.as_deref());
    for case in &file.cases {
        let started = Instant::now();
        let verdict = match &case.kind {
            CaseKind::Static(decision) => run_static(&policy, &workspace, case, decision),
            CaseKind::Live(expectation) => {
                let control = expectation
                    .unconfined_control
                    .then(|| run_unconfined(&derived, &workspace, case))
                    .flatten();
                if case.probe_as && options.probe.is_none() {
                    Verdict::CannotConfine("jobwarden-probe was not found next to jobwarden".into())
                } else if let Some(why) = control {
                    if crate::platform::is_superuser() {
                        Verdict::CannotConfine(why)
                    } else {
                        // A normal user may not do it either: the case
                        // needs a user who may (root) to prove anything,
                        // as a case needs its program installed.
                        Verdict::Skip(format!(
                            "{why}; only a user the system lets do it (root) can prove this case"
                        ))
                    }
                } else {
                    let observe = expectation.denied_by_sandbox;
                    let host = &mut hosts[usize::from(observe)];
                    if host.is_none() {
                        let mut builder = PolicyJobHost::builder(derived.clone(), &workspace.repo)
                            .home(Some(workspace.home.clone()))
                            .tmp_dir(workspace.dir.path())
                            .support_options(options.support.clone());
                        if observe {
                            builder = builder.explain_denials();
                        }
                        match builder.build() {
                            Ok(h) => *host = Some(h),
                            Err(e) => return fail_all(format!("cannot start a host: {e}")),
                        }
                    }
                    let host = host.as_ref().expect("just built");
                    run_live(&host.plugin(&case.plugin), &workspace, case, expectation)
                }
            }
        };
        results.push(CaseResult {
            name: case.name.clone(),
            line: case.line,
            live: matches!(case.kind, CaseKind::Live(_)),
            verdict,
            duration: started.elapsed(),
        });
    }
    drop(hosts);
    FileResult {
        file: file.path.clone(),
        policy: policy_name,
        error: None,
        results,
    }
}

/// The throwaway repository and home for a file's cases.
struct Workspace {
    dir: tempfile::TempDir,
    repo: PathBuf,
    home: PathBuf,
    host_env: Vec<(String, String)>,
}

impl Workspace {
    fn new(file: &TestFile) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("jobwarden-test-")
            .tempdir()?;
        // A fixture repository is copied, so live cases never change the
        // source tree the tests live in.
        let repo = match &file.repo {
            Some(fixture) => {
                let repo = dir.path().join("repo");
                copy_tree(fixture, &repo)?;
                repo.canonicalize()?
            }
            None => {
                let repo = dir.path().join("repo");
                make_git_repo(&repo)?;
                repo.canonicalize()?
            }
        };
        let home = match file.home {
            Home::Real => std::env::var_os("HOME")
                .map(PathBuf::from)
                .ok_or_else(|| std::io::Error::other("HOME is not set"))?,
            Home::Fixture => {
                let home = dir.path().join("home");
                make_decoy_home(&home)?;
                home.canonicalize()?
            }
        };
        Ok(Self {
            dir,
            repo,
            home,
            host_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        })
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{repo}", &self.repo.to_string_lossy())
            .replace("{home}", &self.home.to_string_lossy())
    }

    fn request(&self, case: &Case, binary: &str) -> JobSpawnRequest {
        JobSpawnRequest {
            label: case.label.clone().unwrap_or_else(|| binary.to_string()),
            binary: binary.to_string(),
            args: case.args.iter().map(|a| self.fill(a)).collect(),
            cwd: case.cwd.as_deref().map(|c| self.fill(c)),
            env: case
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.fill(v)))
                .collect(),
            timeout_secs: case.timeout_secs,
        }
    }
}

/// Copies a directory tree (files, directories and symlinks as links).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            crate::platform::copy_symlink(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A repository git recognises without running git: `HEAD`, `objects`, `refs`.
fn make_git_repo(repo: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(repo.join(".git/objects"))?;
    std::fs::create_dir_all(repo.join(".git/refs/heads"))?;
    std::fs::create_dir_all(repo.join(".git/refs/tags"))?;
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n")?;
    std::fs::write(
        repo.join(".git/config"),
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n",
    )?;
    std::fs::write(
        repo.join("README.md"),
        "a throwaway repository for jobwarden policy tests\n",
    )?;
    Ok(())
}

/// A home with decoy secrets for hostile cases to try to read.
fn make_decoy_home(home: &Path) -> std::io::Result<()> {
    let files = [
        (
            ".ssh/id_rsa",
            "-----BEGIN OPENSSH PRIVATE KEY-----\ndecoy\n-----END OPENSSH PRIVATE KEY-----\n",
        ),
        (
            ".aws/credentials",
            "[default]\naws_secret_access_key = decoy\n",
        ),
        (".cargo/credentials.toml", "[registry]\ntoken = \"decoy\"\n"),
        (".gitconfig", "[user]\n\tname = decoy\n"),
        (".aws/config", "[default]\nregion = eu-central-1\n"),
    ];
    for (name, contents) in files {
        let path = home.join(name);
        std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// The policy with, for every `probe_as = "B"` case, a binary that is the
/// probe under B's rules (its layers and helpers, no argument rules),
/// allowed to every plugin that may run B.
fn with_probes(policy: &Arc<Policy>, file: &TestFile, probe: Option<&Path>) -> Arc<Policy> {
    let Some(probe) = probe else {
        return policy.clone();
    };
    let Ok(template) = PathTemplate::parse(&probe.to_string_lossy()) else {
        return policy.clone();
    };
    let mut derived = (**policy).clone();
    for case in file.cases.iter().filter(|c| c.probe_as) {
        let Some(original) = policy.binaries.get(&case.binary) else {
            continue;
        };
        let name = probe_name(&case.binary);
        let rule = BinaryRule {
            name: name.clone(),
            key: format!("binaries.{name}"),
            path: Some(Sourced::new(template.clone(), "jobwarden test (probe)")),
            sha256: None,
            args: Default::default(),
            ..original.clone()
        };
        derived.binaries.insert(name.clone(), rule);
        for plugin in derived
            .plugins
            .values_mut()
            .chain(derived.catch_all.iter_mut())
        {
            if plugin.binaries.iter().any(|b| b.value == case.binary) {
                plugin
                    .binaries
                    .push(Sourced::new(name.clone(), "jobwarden test (probe)"));
            }
        }
    }
    Arc::new(derived)
}

/// The case's command run as an ordinary process, without any
/// confinement (the policy's program, arguments, environment and working
/// directory): `None` when it succeeded, else why the case proves nothing
/// here. A case that expects the sandbox to refuse something the host
/// itself may not do (read `/etc/shadow` as a normal user) would otherwise
/// pass on file permissions alone.
fn run_unconfined(policy: &Policy, workspace: &Workspace, case: &Case) -> Option<String> {
    let binary = if case.probe_as {
        probe_name(&case.binary)
    } else {
        case.binary.clone()
    };
    let job_tmp = workspace.dir.path().join("unconfined-control");
    let ctx = DecisionContext {
        repo: &workspace.repo,
        home: Some(&workspace.home),
        job_tmp: &job_tmp,
        host_env: &workspace.host_env,
    };
    // A request the policy refuses is reported by the live run itself.
    let plan = decide(
        policy,
        &case.plugin,
        &workspace.request(case, &binary),
        &ctx,
    )
    .ok()?;
    let _ = std::fs::create_dir_all(&job_tmp);
    let started = std::process::Command::new(&plan.program)
        .args(&plan.args)
        .env_clear()
        .envs(&plan.env)
        .current_dir(&plan.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match started {
        Ok(child) => child,
        Err(e) => return Some(format!("the unconfined control could not start: {e}")),
    };
    let deadline = Instant::now() + LIVE_SLACK;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Some("the unconfined control did not finish".into());
            }
        }
    };
    let _ = std::fs::remove_dir_all(&job_tmp);
    (!status.success()).then(|| {
        format!(
            "run unconfined, the same command fails too ({status}): a refusal would not prove the sandbox here"
        )
    })
}

fn probe_name(binary: &str) -> String {
    format!("jobwarden-probe-as-{binary}")
}

fn run_static(policy: &Policy, workspace: &Workspace, case: &Case, expected: &Decision) -> Verdict {
    let job_tmp = workspace.dir.path().join("static-job");
    let ctx = DecisionContext {
        repo: &workspace.repo,
        home: Some(&workspace.home),
        job_tmp: &job_tmp,
        host_env: &workspace.host_env,
    };
    let outcome = decide(
        policy,
        &case.plugin,
        &workspace.request(case, &case.binary),
        &ctx,
    );
    match (expected, outcome) {
        (Decision::Allow, Ok(_)) => Verdict::Pass,
        // Every rule allowed it; only this machine lacks the program.
        (Decision::Allow, Err(denial)) if is_missing_program(&denial.rule, &denial.reason) => {
            Verdict::Skip(format!(
                "every policy rule allows it, but the program is not installed here ({})",
                denial.reason
            ))
        }
        (Decision::Allow, Err(denial)) => Verdict::Fail(format!("expected allow, got {denial}")),
        (Decision::Deny { .. }, Ok(_)) => Verdict::Fail("expected deny, got allow".into()),
        (Decision::Deny { rule: None }, Err(_)) => Verdict::Pass,
        (Decision::Deny { rule: Some(rule) }, Err(denial)) => {
            if rule_matches(rule, &denial.rule) {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("expected a denial by `{rule}`, got {denial}"))
            }
        }
    }
}

/// A denial that only says the program is not on this machine.
fn is_missing_program(rule: &str, reason: &str) -> bool {
    rule.ends_with(".path")
        && (reason.contains("does not exist on this machine")
            || reason.contains("was not found in"))
}

/// `binaries.git.args.deny` matches itself and `binaries.git.args.deny[1]`.
fn rule_matches(expected: &str, actual: &str) -> bool {
    actual == expected
        || actual
            .strip_prefix(expected)
            .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
}

/// How long a live case may take beyond its own timeout.
const LIVE_SLACK: Duration = Duration::from_secs(30);

fn run_live(
    plugin: &PluginHandle,
    workspace: &Workspace,
    case: &Case,
    expected: &LiveExpectation,
) -> Verdict {
    let binary = if case.probe_as {
        probe_name(&case.binary)
    } else {
        case.binary.clone()
    };
    let id = plugin.spawn(workspace.request(case, &binary));
    let limit = Duration::from_secs(case.timeout_secs.max(600)) + LIVE_SLACK;
    let deadline = Instant::now() + limit;
    let mut events = Vec::new();
    while !events.iter().any(JobEvent::is_terminal) {
        if Instant::now() > deadline {
            plugin.cancel(&id);
            return Verdict::Fail(format!("the job did not end within {} s", limit.as_secs()));
        }
        events.extend(
            plugin
                .wait_events(Duration::from_millis(200))
                .into_iter()
                .filter(|e| e.job_id() == &id),
        );
    }
    let end = plugin.end(&id);
    let report = plugin.enforcement(&id);
    // What the sandbox was seen refusing, when the job was observed.
    let refusals = plugin
        .observed(&id)
        .map(|o| o.refusals.iter().map(|r| r.to_string()).collect::<Vec<_>>());
    let error = events.iter().find_map(|e| match e {
        JobEvent::JobFailed { data, .. } => Some(data.error.clone()),
        _ => None,
    });
    let output: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::JobLogLine { data, .. }
                if data.stream == STREAM_STDOUT || data.stream == STREAM_STDERR =>
            {
                Some(data.line.as_str())
            }
            _ => None,
        })
        .collect();
    judge(
        end.as_ref(),
        error.as_deref(),
        report.as_ref(),
        refusals.as_deref(),
        &output,
        expected,
    )
}

fn judge(
    end: Option<&JobEnd>,
    error: Option<&str>,
    report: Option<&EnforcementReport>,
    refusals: Option<&[String]>,
    output: &[&str],
    expected: &LiveExpectation,
) -> Verdict {
    let error_text = error.unwrap_or_default();
    match end {
        Some(JobEnd::Denied { rule }) => {
            if is_missing_program(rule, error_text) {
                return Verdict::Skip(format!("the binary is not installed here ({error_text})"));
            }
            return Verdict::Fail(format!(
                "refused by the policy before running: {error_text}"
            ));
        }
        Some(JobEnd::EnforcementUnavailable) => {
            return Verdict::CannotConfine(format!(
                "this machine cannot enforce what the policy requires: {error_text}"
            ));
        }
        Some(JobEnd::StartFailed) | None => {
            return Verdict::Fail(format!("the job did not start: {error_text}"));
        }
        _ => {}
    }
    // Cases that depend on an enforcement this machine did not give are skipped.
    let needs: Vec<&str> = match expected.killed_by {
        Some(KilledBy::Cpu) => vec!["cpu"],
        Some(KilledBy::Memory) => vec!["memory"],
        Some(KilledBy::FileSize) => vec!["file_size"],
        Some(KilledBy::Timeout) | None => vec![],
    }
    .into_iter()
    .chain(expected.denied_by_sandbox.then_some("filesystem"))
    .collect();
    if let Some(report) = report {
        for need in needs {
            if let Some(item) = report.item(need)
                && item.status != Status::Enforced
            {
                return Verdict::CannotConfine(format!(
                    "{need} is not fully enforced here: {}",
                    item.detail
                ));
            }
        }
    }

    let tail = || {
        let last: Vec<&str> = output.iter().rev().take(3).rev().copied().collect();
        if last.is_empty() {
            "no output".to_string()
        } else {
            format!("output ends: {}", last.join(" | "))
        }
    };
    let what_happened = || match end {
        Some(JobEnd::Exited { code }) => format!("it exited with status {code}"),
        Some(JobEnd::Signaled { signal }) => {
            format!("it was killed by signal {signal} ({error_text})")
        }
        Some(JobEnd::TimedOut) => "it timed out".to_string(),
        Some(JobEnd::Cancelled) => "it was cancelled".to_string(),
        Some(JobEnd::Denied { rule }) => format!("it was refused by `{rule}`"),
        Some(JobEnd::EnforcementUnavailable) => {
            "it was refused: the machine cannot enforce what the policy requires".to_string()
        }
        _ => format!("it ended without an exit status ({error_text})"),
    };
    let mut failures = Vec::new();
    if let Some(code) = expected.exit_code
        && end != Some(&JobEnd::Exited { code })
    {
        failures.push(format!(
            "expected exit code {code}, but {}",
            what_happened()
        ));
    }
    if expected.denied_by_sandbox {
        // Judged from what observation saw the sandbox refuse, never from
        // the job's wording when it was observed: a program that prints
        // "Permission denied" for its own reasons proves nothing. Only an
        // unobserved job (observation unavailable here) is judged by its
        // words, in any case.
        let refused = match refusals {
            Some(recorded) => !recorded.is_empty(),
            None => output.iter().any(|l| crate::observe::mentions_refusal(l)),
        };
        let succeeded = end == Some(&JobEnd::Exited { code: 0 });
        if succeeded || !refused {
            let seen = match refusals {
                Some(r) if !r.is_empty() => format!("observation recorded: {}", r.join("; ")),
                Some(_) => "observation recorded no access the policy refuses; socket kinds the kernel baseline refuses (UDP, UNIX, netlink) cannot be observed: assert those with `output_contains`".to_string(),
                None => "the job could not be observed, and its output shows no refusal".to_string(),
            };
            failures.push(format!(
                "expected the sandbox to refuse, but {} ({seen}) and the {}",
                what_happened(),
                tail()
            ));
        }
    }
    if let Some(limit) = expected.killed_by {
        let ok = match limit {
            KilledBy::Cpu => error_text.contains("CPU time limit"),
            KilledBy::Memory => error_text.contains("memory limit"),
            KilledBy::FileSize => error_text.contains("file size limit"),
            KilledBy::Timeout => end == Some(&JobEnd::TimedOut),
        };
        if !ok {
            failures.push(format!(
                "expected it to be stopped by the {} limit, but {}",
                limit.name(),
                what_happened()
            ));
        }
    }
    let all = output.join("\n");
    for needle in &expected.output_contains {
        if !all.contains(needle.as_str()) {
            failures.push(format!(
                "expected the output to contain \"{needle}\"; {}",
                tail()
            ));
        }
    }
    for needle in &expected.output_not_contains {
        if all.contains(needle.as_str()) {
            failures.push(format!(
                "expected the output not to contain \"{needle}\", but it does"
            ));
        }
    }
    if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_themselves_and_their_entries() {
        assert!(rule_matches(
            "binaries.git.args.deny",
            "binaries.git.args.deny"
        ));
        assert!(rule_matches(
            "binaries.git.args.deny",
            "binaries.git.args.deny[3]"
        ));
        assert!(rule_matches("binaries.git", "binaries.git.args.deny[3]"));
        assert!(!rule_matches("binaries.git", "binaries.gitx.path"));
        assert!(!rule_matches(
            "binaries.git.args.deny",
            "binaries.git.args.deny_long_options[0]"
        ));
    }
}
