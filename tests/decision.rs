//! Table-driven tests of the decision function: every rule, allowed and
//! denied, including symlink escapes of the working directory and deny
//! beating allow for the environment.

// Unix only: the cases name Unix paths and make symlinks.
#![cfg(unix)]

use jobwarden::contract::JobSpawnRequest;
use jobwarden::decision::{DecisionContext, Plan, decide};
use jobwarden::policy::{Limit, Policy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const POLICY: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]

[env]
inherit = ["LANG", "HOST_*", "PATH"]
allow = ["RUST_LOG", "CITADEL_*", "LD_LIBRARY_PATH", "FIXED"]
deny = ["HOST_INTERNAL_*"]
set = { PATH = "/usr/bin:/bin", TMPDIR = "{tmp}", FIXED = "yes" }

[filesystem]
read = ["/usr"]
read_write = ["{repo}", "{tmp}"]

[limits]
timeout_secs = 60
max_timeout_secs = 300
on_long_timeout = "clamp"
processes = 100

[binaries.git]
path = "/usr/bin/git"
helpers = ["/usr/lib/git-core"]

[binaries.git.args]
deny = ["-c", "-c?*"]
deny_long_options = ["upload-pack", "exec"]
subcommands = ["status", "log", "diff"]
max_count = 5
max_bytes = 100

[binaries.true]

[binaries.pinned]
path = "/bin/true"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[binaries.missing]
path = "/nonexistent/bin/missing"

[binaries.not-installed-anywhere]

[binaries.strict-timeout]
path = "/bin/true"

[binaries.strict-timeout.limits]
on_long_timeout = "reject"

[binaries.dropper]
path = "/bin/true"

[binaries.dropper.env]
on_disallowed = "drop"

[plugins.ci]
binaries = ["git", "true", "pinned", "missing", "not-installed-anywhere", "strict-timeout", "dropper"]

[plugins.ci.network]
connect = [443]

[plugins.ci.limits]
processes = 10

[plugins.other]
binaries = ["true"]
"#;

const POLICY_WITH_CATCH_ALL: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]

[binaries.true]
[binaries.git]
path = "/usr/bin/git"

[plugins."*"]
binaries = ["true"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    outside: PathBuf,
    tmp: PathBuf,
    host_env: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let repo = root.join("repo");
    let outside = root.join("outside");
    std::fs::create_dir_all(repo.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(repo.join("file.txt"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("escape")).unwrap();
    std::os::unix::fs::symlink(repo.join("sub/deeper"), repo.join("inner-link")).unwrap();
    std::os::unix::fs::symlink("../outside", repo.join("relative-escape")).unwrap();
    let host_env = [
        ("LANG", "C.UTF-8"),
        ("HOST_COLOR", "blue"),
        ("HOST_INTERNAL_URL", "http://intranet"),
        ("HOST_API_TOKEN", "t0ken"),
        ("PATH", "/evil/bin:/usr/bin"),
        ("UNINHERITED", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Fixture {
        tmp: root.join("jobs/job-1"),
        repo,
        outside,
        _dir: dir,
        host_env,
    }
}

enum Expect {
    Allow(fn(&Plan, &Fixture)),
    Deny(&'static str),
}

use Expect::*;

fn ok(_: &Plan, _: &Fixture) {}

fn req(binary: &str, args: &[&str]) -> JobSpawnRequest {
    JobSpawnRequest::new(binary, args.iter().copied())
}

struct Case {
    name: &'static str,
    plugin: &'static str,
    request: JobSpawnRequest,
    expect: Expect,
}

fn case(
    name: &'static str,
    plugin: &'static str,
    request: JobSpawnRequest,
    expect: Expect,
) -> Case {
    Case {
        name,
        plugin,
        request,
        expect,
    }
}

fn policy(text: &str) -> Arc<Policy> {
    Policy::from_toml("test.toml", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

fn run_cases(policy: &Policy, fx: &Fixture, cases: Vec<Case>) {
    let ctx = DecisionContext {
        repo: &fx.repo,
        home: Some(Path::new("/root")),
        job_tmp: &fx.tmp,
        host_env: &fx.host_env,
    };
    let mut failures = Vec::new();
    for case in &cases {
        let outcome = decide(policy, case.plugin, &case.request, &ctx);
        match (&case.expect, outcome) {
            (Allow(check), Ok(plan)) => {
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&plan, fx)))
                {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{}: plan check failed: {msg}", case.name));
                }
            }
            (Allow(_), Err(denial)) => {
                failures.push(format!("{}: expected allow, got {denial}", case.name))
            }
            (Deny(rule), Ok(_)) => failures.push(format!(
                "{}: expected denial by {rule}, got allow",
                case.name
            )),
            (Deny(rule), Err(denial)) => {
                if denial.rule != *rule {
                    failures.push(format!("{}: expected rule {rule}, got {denial}", case.name));
                }
                if denial.reason.is_empty() || denial.hint.is_empty() {
                    failures.push(format!("{}: denial without reason or hint", case.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn request_validation() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "label with escape",
            "ci",
            req("true", &[]).with_label("ok\u{1b}]0;pwned\u{7}"),
            Deny("request.label"),
        ),
        case(
            "label with C1 control",
            "ci",
            req("true", &[]).with_label("a\u{9b}31m"),
            Deny("request.label"),
        ),
        case(
            "label too long",
            "ci",
            req("true", &[]).with_label("x".repeat(300)),
            Deny("request.label"),
        ),
        case("empty binary", "ci", req("", &[]), Deny("request.binary")),
        case(
            "binary is a path",
            "ci",
            req("/usr/bin/git", &["status"]),
            Deny("request.binary"),
        ),
        case(
            "binary is relative path",
            "ci",
            req("./git", &["status"]),
            Deny("request.binary"),
        ),
        case(
            "binary is dotdot",
            "ci",
            req("..", &[]),
            Deny("request.binary"),
        ),
        case(
            "binary with NUL",
            "ci",
            req("tr\0ue", &[]).with_label("nul"),
            Deny("request.binary"),
        ),
        case(
            "binary with space",
            "ci",
            req("tr ue", &[]),
            Deny("request.binary"),
        ),
        case(
            "argument with NUL",
            "ci",
            req("true", &["a\0b"]),
            Deny("request.args"),
        ),
        case(
            "env name with =",
            "ci",
            req("true", &[]).with_env("A=B", "1"),
            Deny("request.env"),
        ),
        case(
            "empty env name",
            "ci",
            req("true", &[]).with_env("", "1"),
            Deny("request.env"),
        ),
        case(
            "env value with NUL",
            "ci",
            req("true", &[]).with_env("RUST_LOG", "a\0b"),
            Deny("request.env"),
        ),
        case(
            "cwd with NUL",
            "ci",
            req("true", &[]).with_cwd("sub\0"),
            Deny("request.cwd"),
        ),
    ];
    run_cases(&p, &fx, cases);
}

#[test]
fn plugins_and_binaries() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "unknown plugin without catch-all",
            "stranger",
            req("true", &[]),
            Deny("plugins"),
        ),
        case(
            "plugin may not run binary",
            "other",
            req("git", &["status"]),
            Deny("plugins.other.binaries"),
        ),
        case(
            "undefined binary",
            "ci",
            req("gti", &["status"]),
            Deny("plugins.ci.binaries"),
        ),
        case(
            "explicit path missing",
            "ci",
            req("missing", &[]),
            Deny("binaries.missing.path"),
        ),
        case(
            "not in search path",
            "ci",
            req("not-installed-anywhere", &[]),
            Deny("binaries.not-installed-anywhere.path"),
        ),
        case(
            "found through search path",
            "ci",
            req("true", &[]),
            Allow(|plan, _| {
                assert_eq!(
                    plan.program,
                    Path::new("/usr/bin/true").canonicalize().unwrap()
                );
                assert_eq!(plan.program_key, "search_path[0]");
                assert_eq!(plan.argv0, "/usr/bin/true");
            }),
        ),
        case(
            "explicit path",
            "ci",
            req("git", &["status"]),
            Allow(|plan, _| {
                assert_eq!(plan.program_key, "binaries.git.path");
                assert_eq!(plan.args, ["status"]);
            }),
        ),
        case(
            "sha256 pin travels with the plan",
            "ci",
            req("pinned", &[]),
            Allow(|plan, _| {
                assert_eq!(plan.sha256.as_ref().unwrap().key, "binaries.pinned.sha256")
            }),
        ),
    ];
    run_cases(&p, &fx, cases);

    let catch_all = policy(POLICY_WITH_CATCH_ALL);
    let cases = vec![
        case(
            "unknown plugin under catch-all",
            "stranger",
            req("true", &[]),
            Allow(ok),
        ),
        case(
            "catch-all limits binaries",
            "stranger",
            req("git", &["status"]),
            Deny("plugins.\"*\".binaries"),
        ),
    ];
    run_cases(&catch_all, &fx, cases);
}

#[test]
fn argument_rules() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "git -c",
            "ci",
            req("git", &["-c", "core.pager=evil", "log"]),
            Deny("binaries.git.args.deny[0]"),
        ),
        case(
            "git -cfoo=bar",
            "ci",
            req("git", &["-ccore.pager=evil", "log"]),
            Deny("binaries.git.args.deny[1]"),
        ),
        case(
            "--upload-pack=",
            "ci",
            req("git", &["log", "--upload-pack=evil"]),
            Deny("binaries.git.args.deny_long_options[0]"),
        ),
        case(
            "abbreviated --upload-p",
            "ci",
            req("git", &["log", "--upload-p=evil"]),
            Deny("binaries.git.args.deny_long_options[0]"),
        ),
        case(
            "--exec",
            "ci",
            req("git", &["log", "--exec", "x"]),
            Deny("binaries.git.args.deny_long_options[1]"),
        ),
        case(
            "denied after --",
            "ci",
            req("git", &["log", "--", "-c"]),
            Deny("binaries.git.args.deny[0]"),
        ),
        case(
            "subcommand not allowed",
            "ci",
            req("git", &["push"]),
            Deny("binaries.git.args.subcommands"),
        ),
        case(
            "subcommand after options",
            "ci",
            req("git", &["--no-pager", "push"]),
            Deny("binaries.git.args.subcommands"),
        ),
        case(
            "allowed subcommand",
            "ci",
            req("git", &["--no-pager", "log", "-n", "1"]),
            Allow(ok),
        ),
        case(
            "no subcommand at all",
            "ci",
            req("git", &["--version"]),
            Allow(ok),
        ),
        case(
            "long option not denied",
            "ci",
            req("git", &["log", "--oneline"]),
            Allow(ok),
        ),
        // Each limit at its exact boundary: `max_count` and `max_bytes` are
        // inclusive, and a byte counts every argument plus its NUL.
        case(
            "exactly max_count arguments",
            "ci",
            req("git", &["log", "a", "b", "c", "d"]),
            Allow(ok),
        ),
        case(
            "too many arguments",
            "ci",
            req("git", &["log", "a", "b", "c", "d", "e"]),
            Deny("binaries.git.args.max_count"),
        ),
        case(
            "exactly max_bytes bytes (4 + 96)",
            "ci",
            req("git", &["log", &"x".repeat(95)]),
            Allow(ok),
        ),
        case(
            "one byte over max_bytes",
            "ci",
            req("git", &["log", &"x".repeat(96)]),
            Deny("binaries.git.args.max_bytes"),
        ),
        case(
            "one byte over max_bytes, counted in NULs",
            "ci",
            req("git", &["log", "a", "b", "c", &"x".repeat(90)]),
            Deny("binaries.git.args.max_bytes"),
        ),
        case(
            "builtin cap without max_count",
            "ci",
            req("true", &vec!["a"; 2000]),
            Deny("request.args"),
        ),
        case(
            "exactly the builtin argument cap",
            "ci",
            req("true", &vec!["a"; jobwarden::decision::MAX_ARGS]),
            Allow(ok),
        ),
        case(
            "one over the builtin argument cap",
            "ci",
            req("true", &vec!["a"; jobwarden::decision::MAX_ARGS + 1]),
            Deny("request.args"),
        ),
        case(
            "exactly the builtin byte cap",
            "ci",
            req(
                "true",
                &[&"x".repeat(jobwarden::decision::MAX_ARG_BYTES - 1)],
            ),
            Allow(ok),
        ),
        case(
            "one byte over the builtin byte cap",
            "ci",
            req("true", &[&"x".repeat(jobwarden::decision::MAX_ARG_BYTES)]),
            Deny("request.args"),
        ),
    ];
    run_cases(&p, &fx, cases);
}

#[test]
fn environment_rules() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "inherit, set and deny",
            "ci",
            req("true", &[]),
            Allow(|plan, fx| {
                assert_eq!(plan.env.get("LANG").map(String::as_str), Some("C.UTF-8"));
                assert_eq!(plan.env.get("HOST_COLOR").map(String::as_str), Some("blue"));
                assert!(
                    !plan.env.contains_key("HOST_INTERNAL_URL"),
                    "policy deny must win over inherit"
                );
                assert!(
                    !plan.env.contains_key("HOST_API_TOKEN"),
                    "built-in *_TOKEN must win over inherit"
                );
                assert!(!plan.env.contains_key("UNINHERITED"));
                assert_eq!(
                    plan.env["PATH"], "/usr/bin:/bin",
                    "set wins over the host PATH"
                );
                assert_eq!(Path::new(&plan.env["TMPDIR"]), fx.tmp);
                let dropped: Vec<&str> = plan.env_dropped.iter().map(|d| d.name.as_str()).collect();
                assert_eq!(dropped, ["HOST_INTERNAL_URL", "HOST_API_TOKEN"]);
                assert!(plan.env_dropped.iter().all(|d| d.origin == "host"));
            }),
        ),
        case(
            "allowed injection",
            "ci",
            req("true", &[]).with_env("RUST_LOG", "debug"),
            Allow(|plan, _| assert_eq!(plan.env["RUST_LOG"], "debug")),
        ),
        case(
            "glob-allowed injection",
            "ci",
            req("true", &[]).with_env("CITADEL_ENV", "devnet"),
            Allow(|plan, _| assert_eq!(plan.env["CITADEL_ENV"], "devnet")),
        ),
        case(
            "LD_PRELOAD refused",
            "ci",
            req("true", &[]).with_env("LD_PRELOAD", "/tmp/x.so"),
            Deny(builtin("LD_*")),
        ),
        case(
            "deny beats allow",
            "ci",
            req("true", &[]).with_env("LD_LIBRARY_PATH", "/tmp"),
            Deny(builtin("LD_*")),
        ),
        case(
            "secret by builtin glob",
            "ci",
            req("true", &[]).with_env("MY_SECRET_KEY", "x"),
            Deny(builtin("*SECRET*")),
        ),
        case(
            "token by builtin glob",
            "ci",
            req("true", &[]).with_env("GITHUB_TOKEN", "x"),
            Deny(builtin("*_TOKEN")),
        ),
        case(
            "BASH_ENV refused",
            "ci",
            req("true", &[]).with_env("BASH_ENV", "/tmp/x"),
            Deny(builtin("BASH_ENV")),
        ),
        case(
            "policy deny pattern",
            "ci",
            req("true", &[]).with_env("HOST_INTERNAL_X", "x"),
            Deny("env.deny[0]"),
        ),
        case(
            "not allowed",
            "ci",
            req("true", &[]).with_env("UNLISTED", "x"),
            Deny("env.allow"),
        ),
        case(
            "fixed by set",
            "ci",
            req("true", &[]).with_env("FIXED", "no"),
            Deny("env.set.FIXED"),
        ),
        case(
            "dropped instead of rejected",
            "ci",
            req("dropper", &[])
                .with_env("UNLISTED", "x")
                .with_env("LD_PRELOAD", "y"),
            Allow(|plan, _| {
                assert!(!plan.env.contains_key("UNLISTED"));
                assert!(!plan.env.contains_key("LD_PRELOAD"));
                let names: Vec<_> = plan
                    .env_dropped
                    .iter()
                    .filter(|d| d.origin == "request")
                    .map(|d| (d.name.as_str(), d.rule.as_str()))
                    .collect();
                assert_eq!(
                    names,
                    [("LD_PRELOAD", builtin("LD_*")), ("UNLISTED", "env.allow")]
                );
            }),
        ),
    ];
    run_cases(&p, &fx, cases);
}

/// The rule key of a built-in deny pattern.
fn builtin(pattern: &str) -> &'static str {
    let i = jobwarden::policy::BUILTIN_ENV_DENY
        .iter()
        .position(|p| *p == pattern)
        .unwrap_or_else(|| panic!("{pattern} is not a built-in deny pattern"));
    Box::leak(format!("env.deny_defaults[{i}]").into_boxed_str())
}

#[test]
fn working_directory() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "no cwd is the repo",
            "ci",
            req("true", &[]),
            Allow(|plan, fx| assert_eq!(plan.cwd, fx.repo)),
        ),
        case(
            "empty cwd is the repo",
            "ci",
            req("true", &[]).with_cwd(""),
            Allow(|plan, fx| assert_eq!(plan.cwd, fx.repo)),
        ),
        case(
            "relative cwd",
            "ci",
            req("true", &[]).with_cwd("sub"),
            Allow(|plan, fx| assert_eq!(plan.cwd, fx.repo.join("sub"))),
        ),
        case(
            "symlink inside the repo is resolved",
            "ci",
            req("true", &[]).with_cwd("inner-link"),
            Allow(|plan, fx| assert_eq!(plan.cwd, fx.repo.join("sub/deeper"))),
        ),
        case(
            "dotdot that stays inside",
            "ci",
            req("true", &[]).with_cwd("sub/deeper/.."),
            Allow(|plan, fx| assert_eq!(plan.cwd, fx.repo.join("sub"))),
        ),
        case(
            "parent of the repo",
            "ci",
            req("true", &[]).with_cwd(".."),
            Deny("request.cwd"),
        ),
        case(
            "dotdot escape",
            "ci",
            req("true", &[]).with_cwd("sub/../../outside"),
            Deny("request.cwd"),
        ),
        case(
            "absolute outside",
            "ci",
            req("true", &[]).with_cwd("/etc"),
            Deny("request.cwd"),
        ),
        case(
            "symlink escape",
            "ci",
            req("true", &[]).with_cwd("escape"),
            Deny("request.cwd"),
        ),
        case(
            "relative symlink escape",
            "ci",
            req("true", &[]).with_cwd("relative-escape"),
            Deny("request.cwd"),
        ),
        case(
            "symlink escape, deeper",
            "ci",
            req("true", &[]).with_cwd("escape/."),
            Deny("request.cwd"),
        ),
        case(
            "does not exist",
            "ci",
            req("true", &[]).with_cwd("nope"),
            Deny("request.cwd"),
        ),
        case(
            "a file, not a directory",
            "ci",
            req("true", &[]).with_cwd("file.txt"),
            Deny("request.cwd"),
        ),
    ];
    run_cases(&p, &fx, cases);

    // Absolute paths inside the repo are fine.
    let ctx_case = vec![case(
        "absolute inside",
        "ci",
        req("true", &[]).with_cwd(fx.repo.join("sub").to_str().unwrap()),
        Allow(ok),
    )];
    run_cases(&p, &fx, ctx_case);
    assert!(fx.outside.exists());
}

#[test]
fn timeouts_and_layers() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "zero means the policy default",
            "ci",
            req("true", &[]),
            Allow(|plan, _| {
                assert_eq!(plan.timeout.value.as_secs(), 60);
                assert_eq!(plan.timeout.key, "limits.timeout_secs");
            }),
        ),
        case(
            "within the maximum",
            "ci",
            req("true", &[]).with_timeout_secs(100),
            Allow(|plan, _| assert_eq!(plan.timeout.value.as_secs(), 100)),
        ),
        case(
            "clamped to the maximum",
            "ci",
            req("true", &[]).with_timeout_secs(1000),
            Allow(|plan, _| {
                assert_eq!(plan.timeout.value.as_secs(), 300);
                assert!(
                    plan.notes.iter().any(|n| n.contains("shortened")),
                    "{:?}",
                    plan.notes
                );
            }),
        ),
        case(
            "rejected over the maximum",
            "ci",
            req("strict-timeout", &[]).with_timeout_secs(1000),
            Deny("limits.max_timeout_secs"),
        ),
        case(
            "plugin layer wins for limits and adds ports",
            "ci",
            req("true", &[]),
            Allow(|plan, _| {
                assert_eq!(plan.limits.processes.value, Limit::Value(10));
                assert_eq!(plan.limits.processes.key, "plugins.ci.limits.processes");
                let ports: Vec<u16> = plan.network.connect.iter().map(|p| p.value).collect();
                assert_eq!(ports, [443]);
                assert!(!plan.network.unrestricted);
            }),
        ),
        case(
            "other plugin keeps the top-level limits and no network",
            "other",
            req("true", &[]),
            Allow(|plan, _| {
                assert_eq!(plan.limits.processes.value, Limit::Value(100));
                assert!(plan.network.connect.is_empty());
            }),
        ),
        case(
            "execute holds the program first, then helpers",
            "ci",
            req("git", &["status"]),
            Allow(|plan, fx| {
                let exec: Vec<&Path> = plan
                    .filesystem
                    .execute
                    .iter()
                    .map(|p| p.path.as_path())
                    .collect();
                assert_eq!(exec[0], plan.program);
                assert!(exec.contains(&Path::new("/usr/lib/git-core")));
                let rw: Vec<&Path> = plan
                    .filesystem
                    .read_write
                    .iter()
                    .map(|p| p.path.as_path())
                    .collect();
                assert_eq!(rw, [fx.repo.as_path(), fx.tmp.as_path()]);
                assert!(
                    !plan
                        .filesystem
                        .execute
                        .iter()
                        .any(|p| p.path.starts_with(&fx.repo)),
                    "the repo is not executable unless the policy says so"
                );
            }),
        ),
    ];
    run_cases(&p, &fx, cases);
}

const POLICY_WITH_ALLOW: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]

[binaries.git]
path = "/usr/bin/git"

[binaries.git.args]
allow = [
    ["status", "--short"],
    ["log", "--oneline", "-n", "[0-9]*"],
    ["diff", "..."],
]

[binaries.true]

[plugins.ci]
binaries = ["git", "true"]

[plugins.narrow]
binaries = ["git"]

[plugins.narrow.args.git]
allow = [["rev-parse", "HEAD"]]
"#;

/// `args.allow`: only listed command lines run, the plan names the pattern
/// that allowed one, a refusal names the closest, and a plugin's own list
/// replaces the binary's.
#[test]
fn allowed_command_lines() {
    let fx = fixture();
    let p = policy(POLICY_WITH_ALLOW);
    fn key(expected: &'static str) -> impl Fn(&Plan) {
        move |plan| assert_eq!(plan.args_key.as_deref(), Some(expected))
    }
    let cases = vec![
        case(
            "a listed command line",
            "ci",
            req("git", &["status", "--short"]),
            Allow(|plan, _| key("binaries.git.args.allow[0]")(plan)),
        ),
        case(
            "a glob element",
            "ci",
            req("git", &["log", "--oneline", "-n", "20"]),
            Allow(|plan, _| key("binaries.git.args.allow[1]")(plan)),
        ),
        case(
            "the rest marker allows more",
            "ci",
            req("git", &["diff", "--stat", "HEAD~1"]),
            Allow(|plan, _| key("binaries.git.args.allow[2]")(plan)),
        ),
        case(
            "the rest marker allows none",
            "ci",
            req("git", &["diff"]),
            Allow(|plan, _| key("binaries.git.args.allow[2]")(plan)),
        ),
        case(
            "no list for the binary: no key",
            "ci",
            req("true", &["anything"]),
            Allow(|plan, _| assert_eq!(plan.args_key, None)),
        ),
        case(
            "an extra argument",
            "ci",
            req("git", &["status", "--short", "--ignored"]),
            Deny("binaries.git.args.allow[0]"),
        ),
        case(
            "a glob that does not match",
            "ci",
            req("git", &["log", "--oneline", "-n", "x"]),
            Deny("binaries.git.args.allow[1]"),
        ),
        // Parting at the same argument, the closest is the pattern whose
        // length is nearest the request's (`diff ...` has one element).
        case(
            "an unlisted subcommand",
            "ci",
            req("git", &["push"]),
            Deny("binaries.git.args.allow[2]"),
        ),
        case(
            "no arguments",
            "ci",
            req("git", &[]),
            Deny("binaries.git.args.allow[2]"),
        ),
        case(
            "the plugin's list replaces the binary's",
            "narrow",
            req("git", &["rev-parse", "HEAD"]),
            Allow(|plan, _| key("plugins.narrow.args.git.allow[0]")(plan)),
        ),
        case(
            "what the binary's list allows, the plugin's does not",
            "narrow",
            req("git", &["status", "--short"]),
            Deny("plugins.narrow.args.git.allow[0]"),
        ),
    ];
    run_cases(&p, &fx, cases);
}

const POLICY_WITH_UNIX: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]

[binaries.true]

[plugins.none]
binaries = ["true"]

[plugins.paths]
binaries = ["true"]

[plugins.paths.network]
unix = ["{repo}/agent.sock"]

[plugins.any]
binaries = ["true"]

[plugins.any.network]
unix_any = true
"#;

/// Pathname UNIX sockets: none by default, the paths granted (placeholders
/// resolved), and `*` only where `unix_any` says so; the sockets layer
/// lets every path through when `any_unix_socket()` is true.
#[test]
fn unix_socket_grants() {
    let fx = fixture();
    let p = policy(POLICY_WITH_UNIX);
    let cases = vec![
        case(
            "no grant",
            "none",
            req("true", &[]),
            Allow(|plan, _| {
                assert!(plan.network.unix.is_empty());
                assert!(!plan.network.any_unix_socket());
            }),
        ),
        case(
            "a path, resolved",
            "paths",
            req("true", &[]),
            Allow(|plan, fx| {
                let paths: Vec<_> = plan.network.unix.iter().map(|p| &p.path).collect();
                assert_eq!(paths, [&fx.repo.join("agent.sock")]);
                assert_eq!(plan.network.unix[0].key, "plugins.paths.network.unix[0]");
                assert!(!plan.network.any_unix_socket(), "a path is not every path");
            }),
        ),
        case(
            "unix_any",
            "any",
            req("true", &[]),
            Allow(|plan, _| {
                assert!(plan.network.any_unix_socket());
                assert_eq!(plan.network.unix[0].key, "plugins.any.network.unix_any");
            }),
        ),
    ];
    run_cases(&p, &fx, cases);
}

/// Durations as reports and timeout messages write them, at each edge.
#[test]
fn durations_in_reports() {
    use jobwarden::decision::format_duration;
    use std::time::Duration;
    let cases = [
        (Duration::ZERO, "0 s"),
        (Duration::from_millis(1), "1 ms"),
        (Duration::from_millis(250), "250 ms"),
        (Duration::from_millis(999), "999 ms"),
        (Duration::from_millis(1000), "1 s"),
        (Duration::from_millis(1500), "1.5 s"),
        (Duration::from_secs(30), "30 s"),
    ];
    for (d, text) in cases {
        assert_eq!(format_duration(d), text, "{d:?}");
    }
}

/// The plan as `explain` prints it names granted ports even when only one
/// direction has any, and says so when neither has.
#[test]
fn the_printed_plan_names_ports() {
    let fx = fixture();
    let p = policy(POLICY);
    let cases = vec![
        case(
            "connect without bind",
            "ci",
            req("true", &[]),
            Allow(|plan, _| {
                let text = plan.to_string();
                assert!(text.contains("connect 443; bind none"), "{text}");
            }),
        ),
        case(
            "neither",
            "other",
            req("true", &[]),
            Allow(|plan, _| {
                let text = plan.to_string();
                assert!(text.contains("no TCP connect or bind"), "{text}");
            }),
        ),
    ];
    run_cases(&p, &fx, cases);
}

/// A repository above the home directory is refused even where that
/// directory is not on the system list (a home under /data/users).
#[test]
fn a_repository_above_a_home_outside_the_system_list_is_refused() {
    use jobwarden::decision::repo_refusal;
    let home = Path::new("/data/users/ana");
    for refused in ["/data/users", "/data", "/data/users/ana"] {
        assert!(
            repo_refusal(Path::new(refused), Some(home)).is_some(),
            "{refused}"
        );
    }
    for allowed in ["/data/users/ana/project", "/data/other", "/data/users/bob"] {
        assert_eq!(
            repo_refusal(Path::new(allowed), Some(home)),
            None,
            "{allowed}"
        );
    }
}
