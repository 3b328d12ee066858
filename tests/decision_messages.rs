//! What the decision says, word for word: every denial's rule, reason and
//! hint at the exact boundary of its rule, and the plan as `explain` prints
//! it and as `--json` writes it.
//!
//! `tests/decision.rs` checks which rule allows or refuses; this file pins
//! the words an admin reads and the boundaries a rule draws (a limit of 5
//! arguments allows 5 and refuses 6), so that any change to them shows up
//! as a snapshot difference, in milliseconds.

// Linux only: the snapshots name Linux paths (a merged /usr) and the cases
// make symlinks.
#![cfg(target_os = "linux")]

use jobwarden::contract::JobSpawnRequest;
use jobwarden::decision::{
    DecisionContext, MAX_ARG_BYTES, MAX_ARGS, MAX_ENV_BYTES, MAX_ENV_VARS, MAX_LABEL_BYTES, decide,
    program_for,
};
use jobwarden::policy::Policy;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const POLICY: &str = r#"
version = 1
search_path = ["/nonexistent/jobwarden-test", "/usr/bin", "/bin"]

[env]
inherit = ["LANG", "HOST_*"]
allow = ["RUST_LOG", "ALLOWED_*"]
deny = ["HOST_SECRET_*"]
set = { PATH = "/usr/bin:/bin", TMPDIR = "{tmp}", GREETING = "it's a 'test'", HOMEDIR = "{home}/x" }

[filesystem]
read = ["/usr", "{home}/.config"]
read_write = ["{repo}", "{tmp}"]
execute = ["/usr/libexec"]

[limits]
timeout_secs = 60
max_timeout_secs = 300

[binaries.git]
path = "/usr/bin/git"
sha256 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
helpers = ["/usr/lib/git-core", "{home}/git-helpers"]

[binaries.git.args]
deny = ["-c", "-c?*"]
deny_long_options = ["upload-pack", "exec"]
subcommands = ["status", "log", "diff"]
max_count = 5
max_bytes = 100

[binaries.true]

[binaries.limited]
path = "/bin/true"

[binaries.limited.limits]
cpu_secs = 30
memory = "512 MiB"
processes = 64
open_files = 256
file_size = "1536 MiB"
core_dumps = true
kill_grace_secs = 1.5
on_long_timeout = "reject"

[binaries.limited.output]
mode = "chunks"
sanitize = "strip"
max_line_bytes = "8 KiB"
tail_bytes = 0

[binaries.limited.progress]
interval_ms = 250
sample = false
patterns = ["(?P<percent>\\d+)%"]

[binaries.limited.seccomp]
deny_dangerous = true

[binaries.limited.network]
connect = [443, 80]
bind = [8080]

[binaries.open]
path = "/bin/true"

[binaries.open.network]
unrestricted = true

[binaries.connect-only]
path = "/bin/true"

[binaries.connect-only.network]
connect = [443]

[binaries.bind-only]
path = "/bin/true"

[binaries.bind-only.network]
bind = [0]

[binaries.sockets]
path = "/bin/true"

[binaries.sockets.network]
udp = true
netlink_route = true
unix = ["/run/jobwarden-test.sock", "{home}/agent.sock"]

[binaries.sockets.filesystem]
protected = ["{repo}/secrets"]
git = "commit"

[binaries.any-unix]
path = "/bin/true"

[binaries.any-unix.network]
unix_any = true
udp = false

[binaries.any-unix.filesystem]
git = "writable"

[binaries.dropper]
path = "/bin/true"

[binaries.dropper.env]
on_disallowed = "drop"

[binaries.missing]
path = "/nonexistent/jobwarden-test/missing"

[binaries.nowhere]

[binaries.not-a-file]
path = "/usr"

[binaries.in-home]
path = "{home}/bin/tool"

[plugins.ci]
binaries = ["git", "true", "limited", "open", "connect-only", "bind-only", "sockets", "any-unix", "dropper", "missing", "nowhere", "not-a-file", "in-home"]

[plugins.ci.network]
connect = [443, 22]
bind = [8080, 9000]

[plugins.ci.output]
max_queued_events = 100
max_queued_bytes = "1 MiB"

[plugins."*"]
binaries = ["true"]

[plugins.quiet]
binaries = ["true"]
"#;

const NO_CATCH_ALL: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]
[filesystem]
read = ["/usr", "{home}/.config"]
[network]
unix = ["{home}/agent.sock"]
[binaries.true]
[binaries.git]
path = "/usr/bin/git"
[binaries.in-home]
path = "{home}/bin/tool"
[binaries.in-home.limits]
kill_grace_secs = 0.25
[plugins.ci]
binaries = ["true", "in-home"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    tmp: PathBuf,
    host_env: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(repo.join("file.txt"), "x").unwrap();
    std::os::unix::fs::symlink(root.join("outside"), repo.join("escape")).unwrap();
    let host_env = [
        ("LANG", "C.UTF-8"),
        ("HOST_COLOR", "blue"),
        ("HOST_SECRET_URL", "http://intranet"),
        ("HOST_API_TOKEN", "t0ken"),
        ("UNINHERITED", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Fixture {
        tmp: root.join("jobs/job-1"),
        repo,
        root,
        _dir: dir,
        host_env,
    }
}

fn policy(text: &str) -> Arc<Policy> {
    Policy::from_toml("test.toml", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

fn req(binary: &str, args: &[&str]) -> JobSpawnRequest {
    JobSpawnRequest::new(binary, args.iter().copied())
}

/// Runs `requests` against `policy` and writes each outcome: a denial's
/// three parts, or the plan as `explain` prints it.
fn outcomes(
    policy: &Policy,
    fx: &Fixture,
    home: Option<&Path>,
    requests: &[(&str, &str, JobSpawnRequest)],
) -> String {
    let ctx = DecisionContext {
        repo: &fx.repo,
        home,
        job_tmp: &fx.tmp,
        host_env: &fx.host_env,
    };
    let mut out = String::new();
    for (name, plugin, request) in requests {
        out.push_str(&format!("### {name}\n"));
        match decide(policy, plugin, request, &ctx) {
            Ok(plan) => out.push_str(&plan.to_string()),
            Err(denial) => out.push_str(&format!(
                "denied by `{}`\n  reason: {}\n  hint:   {}\n",
                denial.rule, denial.reason, denial.hint
            )),
        }
    }
    out.replace(&fx.root.display().to_string(), "<tmp>")
}

#[test]
fn request_limits_at_their_boundaries() {
    let fx = fixture();
    let p = policy(POLICY);
    let many_env = |n: usize| {
        (0..n).fold(req("true", &[]), |r, i| {
            r.with_env(format!("ALLOWED_{i:03}"), "1")
        })
    };
    // One variable of exactly `bytes` (name, value and the two bytes of `=`
    // and NUL).
    let env_bytes = |bytes: usize| {
        req("true", &[]).with_env("RUST_LOG", "v".repeat(bytes - "RUST_LOG".len() - 2))
    };
    let args = |n: usize| vec!["a"; n];
    let arg_bytes = |bytes: usize| vec!["b".repeat(bytes - 1)];
    let arg_bytes: Vec<String> = arg_bytes(MAX_ARG_BYTES);
    let too_many_arg_bytes = vec!["b".repeat(MAX_ARG_BYTES)];
    let requests = vec![
        (
            "label at the limit",
            "ci",
            req("true", &[]).with_label("l".repeat(MAX_LABEL_BYTES)),
        ),
        (
            "label over the limit",
            "ci",
            req("true", &[]).with_label("l".repeat(MAX_LABEL_BYTES + 1)),
        ),
        (
            "label with a control character",
            "ci",
            req("true", &[]).with_label("a\u{7}b"),
        ),
        ("empty binary", "ci", req("", &[])),
        (
            "binary with NUL",
            "ci",
            req("tr\0ue", &[]).with_label("nul"),
        ),
        ("binary is a path", "ci", req("/bin/true", &[])),
        ("binary is a Windows path", "ci", req("bin\\true", &[])),
        ("binary is dot", "ci", req(".", &[])),
        ("binary is dotdot", "ci", req("..", &[])),
        ("binary with a space", "ci", req("tr ue", &[])),
        ("argument with NUL", "ci", req("true", &["ok", "a\0b"])),
        ("cwd with NUL", "ci", req("true", &[]).with_cwd("sub\0")),
        ("variables at the limit", "ci", many_env(MAX_ENV_VARS)),
        ("variables over the limit", "ci", many_env(MAX_ENV_VARS + 1)),
        (
            "variable bytes at the limit",
            "ci",
            env_bytes(MAX_ENV_BYTES),
        ),
        (
            "variable bytes over the limit",
            "ci",
            env_bytes(MAX_ENV_BYTES + 1),
        ),
        (
            "variable named with =",
            "ci",
            req("true", &[]).with_env("A=B", "1"),
        ),
        (
            "variable without a name",
            "ci",
            req("true", &[]).with_env("", "1"),
        ),
        (
            "variable value with NUL",
            "ci",
            req("true", &[]).with_env("RUST_LOG", "a\0b"),
        ),
        (
            "built-in argument count at the limit",
            "ci",
            JobSpawnRequest::new("true", args(MAX_ARGS)),
        ),
        (
            "built-in argument count over the limit",
            "ci",
            JobSpawnRequest::new("true", args(MAX_ARGS + 1)),
        ),
        (
            "built-in argument bytes at the limit",
            "ci",
            JobSpawnRequest::new("true", arg_bytes),
        ),
        (
            "built-in argument bytes over the limit",
            "ci",
            JobSpawnRequest::new("true", too_many_arg_bytes),
        ),
    ];
    let text = outcomes(&p, &fx, Some(Path::new("/home/user")), &requests);
    insta::assert_snapshot!(without_plans(&text));
}

/// Only which side of each boundary a request falls on, and the words of a
/// denial: the plans of allowed requests are pinned in
/// `plans_as_explain_prints_them`.
fn without_plans(text: &str) -> String {
    text.split("### ")
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('\n') {
            Some((name, rest)) if rest.starts_with("allowed") => format!("### {name}\nallowed\n"),
            _ => format!("### {s}"),
        })
        .collect()
}

#[test]
fn argument_rules_at_their_boundaries() {
    let fx = fixture();
    let p = policy(POLICY);
    // `max_bytes = 100` counts each argument and its NUL: "log" is 4.
    let bytes = |total: usize| req("git", &["log", &"x".repeat(total - 4 - 1)]);
    let requests = vec![
        (
            "five arguments, the most allowed",
            "ci",
            req("git", &["log", "a", "b", "c", "d"]),
        ),
        (
            "six arguments, one too many",
            "ci",
            req("git", &["log", "a", "b", "c", "d", "e"]),
        ),
        ("exactly max_bytes", "ci", bytes(100)),
        ("one byte over max_bytes", "ci", bytes(101)),
        ("denied glob, first", "ci", req("git", &["log", "-c", "x"])),
        ("denied glob, second", "ci", req("git", &["log", "-cfoo"])),
        (
            "denied glob after --",
            "ci",
            req("git", &["log", "--", "-c"]),
        ),
        (
            "escaped in the message",
            "ci",
            req("git", &["log", "-c\tx\u{1b}"]),
        ),
        ("denied option", "ci", req("git", &["log", "--exec"])),
        (
            "denied option with value",
            "ci",
            req("git", &["log", "--upload-pack=evil"]),
        ),
        (
            "denied option abbreviated",
            "ci",
            req("git", &["log", "--upload-p"]),
        ),
        (
            "denied option, one letter",
            "ci",
            req("git", &["log", "--e=x"]),
        ),
        (
            "a longer option is not the denied one",
            "ci",
            req("git", &["log", "--execute-x"]),
        ),
        ("bare -- is not an option", "ci", req("git", &["log", "--"])),
        ("--=x names no option", "ci", req("git", &["log", "--=x"])),
        ("subcommand not allowed", "ci", req("git", &["push"])),
        (
            "subcommand after an option",
            "ci",
            req("git", &["--no-pager", "push"]),
        ),
        (
            "allowed subcommand",
            "ci",
            req("git", &["--no-pager", "status"]),
        ),
        ("no subcommand", "ci", req("git", &["--version"])),
    ];
    let text = outcomes(&p, &fx, Some(Path::new("/home/user")), &requests);
    insta::assert_snapshot!(without_plans(&text));
}

#[test]
fn plugins_programs_and_directories() {
    let fx = fixture();
    let p = policy(POLICY);
    let outside = fx.root.join("outside").display().to_string();
    let requests = vec![
        ("the catch-all may run true", "stranger", req("true", &[])),
        (
            "the catch-all may not run git",
            "stranger",
            req("git", &["status"]),
        ),
        (
            "a named plugin may not run git",
            "quiet",
            req("git", &["status"]),
        ),
        ("an undefined binary", "quiet", req("gti", &[])),
        ("a path missing here", "ci", req("missing", &[])),
        ("not in the search path", "ci", req("nowhere", &[])),
        ("not a file", "ci", req("not-a-file", &[])),
        ("cwd: the repo", "ci", req("true", &[]).with_cwd("")),
        (
            "cwd: a subdirectory",
            "ci",
            req("true", &[]).with_cwd("sub"),
        ),
        (
            "cwd: out through a symlink",
            "ci",
            req("true", &[]).with_cwd("escape"),
        ),
        (
            "cwd: out through ..",
            "ci",
            req("true", &[]).with_cwd("../outside"),
        ),
        (
            "cwd: out, absolute",
            "ci",
            req("true", &[]).with_cwd(&outside),
        ),
        ("cwd: a file", "ci", req("true", &[]).with_cwd("file.txt")),
        ("cwd: missing", "ci", req("true", &[]).with_cwd("nope")),
    ];
    let mut text = outcomes(&p, &fx, Some(Path::new("/home/user")), &requests);
    let no_catch_all = policy(NO_CATCH_ALL);
    let requests = vec![
        (
            "an unnamed plugin without a catch-all",
            "stranger",
            req("true", &[]),
        ),
        ("a binary the policy does not define", "ci", req("git", &[])),
        // `{home}` in the binary's path, on a host without HOME.
        ("a home path without HOME", "ci", req("in-home", &[])),
    ];
    text.push_str(&outcomes(&no_catch_all, &fx, None, &requests));
    insta::assert_snapshot!(without_plans(&text));
}

#[test]
fn environment_and_timeouts() {
    let fx = fixture();
    let p = policy(POLICY);
    let requests = vec![
        (
            "a request injects an allowed variable",
            "ci",
            req("true", &[]).with_env("RUST_LOG", "debug"),
        ),
        (
            "a denied pattern wins over allow",
            "ci",
            req("true", &[]).with_env("ALLOWED_TOKEN", "x"),
        ),
        (
            "a fixed value cannot be overridden",
            "ci",
            req("true", &[]).with_env("PATH", "/evil"),
        ),
        (
            "a variable no rule allows",
            "ci",
            req("true", &[]).with_env("OTHER", "1"),
        ),
        (
            "dropped instead of refused",
            "ci",
            req("dropper", &[])
                .with_env("OTHER", "1")
                .with_env("HOST_SECRET_X", "1"),
        ),
        ("no timeout asked: the default", "ci", req("true", &[])),
        (
            "a timeout at the maximum",
            "ci",
            req("true", &[]).with_timeout_secs(300),
        ),
        (
            "over the maximum: clamped",
            "ci",
            req("true", &[]).with_timeout_secs(301),
        ),
        (
            "over the maximum: refused",
            "ci",
            req("limited", &[]).with_timeout_secs(301),
        ),
    ];
    let mut text = outcomes(&p, &fx, Some(Path::new("/home/user")), &requests);
    // `{home}` in a fixed value, on a host without HOME.
    let without_home = vec![("a fixed value needs HOME", "ci", req("true", &[]))];
    text.push_str(&outcomes(&p, &fx, None, &without_home));
    insta::assert_snapshot!(text);
}

#[test]
fn plans_as_explain_prints_them() {
    let fx = fixture();
    let p = policy(POLICY);
    let requests = vec![
        (
            "git, pinned, with helpers",
            "ci",
            req("git", &["log", "--format=%H %s", ""]),
        ),
        (
            "every limit and output setting",
            "ci",
            req("limited", &[]).with_timeout_secs(5),
        ),
        ("unrestricted network", "ci", req("open", &[])),
        ("connect only", "ci", req("connect-only", &[])),
        ("bind only", "ci", req("bind-only", &[])),
        ("the defaults", "stranger", req("true", &[])),
        (
            "sockets by family, protected paths, git may commit",
            "ci",
            req("sockets", &[]),
        ),
        ("any UNIX socket, .git writable", "ci", req("any-unix", &[])),
    ];
    let mut text = outcomes(&p, &fx, Some(Path::new("/home/user")), &requests);
    // A path under `{home}` on a host without HOME grants nothing, and the
    // plan says so.
    let requests = vec![("a home path skipped", "ci", req("true", &[]))];
    text.push_str(&outcomes(&policy(NO_CATCH_ALL), &fx, None, &requests));
    insta::assert_snapshot!(text);
}

#[test]
fn plans_as_json() {
    let fx = fixture();
    let p = policy(POLICY);
    let ctx = DecisionContext {
        repo: &fx.repo,
        home: Some(Path::new("/home/user")),
        job_tmp: &fx.tmp,
        host_env: &fx.host_env,
    };
    let mut text = String::new();
    for (plugin, request) in [
        ("ci", req("git", &["status"])),
        ("ci", req("limited", &[]).with_timeout_secs(5)),
    ] {
        let plan = decide(&p, plugin, &request, &ctx).unwrap();
        let mut json = serde_json::to_value(&plan).unwrap();
        // The policy's hash changes with every edit of this file.
        json["policy_sha256"] = "<sha256>".into();
        text.push_str(&serde_json::to_string_pretty(&json).unwrap());
        text.push('\n');
    }
    insta::assert_snapshot!(text.replace(&fx.root.display().to_string(), "<tmp>"));
}

#[test]
fn program_for_maps_a_name_to_its_file() {
    let fx = fixture();
    let p = policy(POLICY);
    let ctx = DecisionContext {
        repo: &fx.repo,
        home: Some(Path::new("/home/user")),
        job_tmp: &fx.tmp,
        host_env: &fx.host_env,
    };
    assert_eq!(
        program_for(&p, "limited", &ctx).unwrap(),
        Path::new("/bin/true").canonicalize().unwrap()
    );
    assert_eq!(
        program_for(&p, "true", &ctx).unwrap(),
        Path::new("/usr/bin/true").canonicalize().unwrap()
    );
    let denial = program_for(&p, "undefined", &ctx).unwrap_err();
    assert_eq!(denial.rule, "binaries");
    assert_eq!(denial.reason, "`undefined` is not defined under [binaries]");
    assert_eq!(denial.hint, "define `[binaries.undefined]`");
    let denial = program_for(&p, "missing", &ctx).unwrap_err();
    assert_eq!(denial.rule, "binaries.missing.path");
}
