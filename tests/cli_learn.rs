//! `jobwarden learn` and `run --why`, as an admin uses them: real tools,
//! real jobs, the real kernel sandbox.
//!
//! Learn's promise is checked end to end: a run the base policy refuses,
//! learned, then run again under the written policy, passes; and the
//! written policy grants nothing more (a sibling file, another port stay
//! refused), and never what the base refuses on purpose.

// Linux only: observation is seccomp user notification.
#![cfg(target_os = "linux")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh git repository and an empty home, in one temp dir.
struct Workspace {
    dir: tempfile::TempDir,
    repo: PathBuf,
    home: PathBuf,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let repo = root.join("repo");
        let home = root.join("home");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let init = Command::new(git())
            .args(["init", "-q"])
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", text(&init.stderr));
        Self { dir, repo, home }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().canonicalize().unwrap().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `jobwarden ARGS` in the repository, with this home.
    fn jobwarden(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_jobwarden"))
            .args(args)
            .current_dir(&self.repo)
            .env("HOME", &self.home)
            .output()
            .unwrap()
    }
}

/// The git every test machine has (Debian's), else the first on PATH.
fn git() -> PathBuf {
    ["/usr/bin/git", "/usr/local/bin/git", "/bin/git"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("git is installed")
}

/// A base policy that trusts only `git`, with the repository writable and
/// nothing else readable: even git's libraries are out of reach.
fn bare_policy(ws: &Workspace, extra: &str) -> PathBuf {
    ws.file(
        "base.toml",
        &format!(
            r#"# the admin's base policy
version = 1
enforcement = "required"

[env]
set = {{ PATH = "/usr/bin:/bin", HOME = "{{home}}" }}

[filesystem]
read_write = ["{{repo}}", "{{tmp}}"]

[binaries.git]
path = "{}"

[plugins.cli]
binaries = ["git"]
{extra}"#,
            git().display()
        ),
    )
}

#[test]
fn learning_git_status_writes_a_policy_under_which_it_passes() {
    let ws = Workspace::new();
    let base = bare_policy(&ws, "");
    let base = base.to_str().unwrap();
    let before = ws.jobwarden(&["run", "--policy", base, "--", "git", "status"]);
    assert_ne!(
        before.status.code(),
        Some(0),
        "the base policy must refuse git's libraries"
    );

    let learned = ws.dir.path().join("learned.toml");
    let learned = learned.to_str().unwrap();
    let out = ws.jobwarden(&[
        "learn", "--policy", base, "--write", learned, "--", "git", "status",
    ]);
    let snippet = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{snippet}\n{}",
        text(&out.stderr)
    );
    assert!(snippet.contains("[binaries.git.filesystem]"), "{snippet}");
    // The admin's file is kept, with the addition merged in.
    let written = std::fs::read_to_string(learned).unwrap();
    assert!(
        written.starts_with("# the admin's base policy\n"),
        "{written}"
    );
    let check = ws.jobwarden(&["check", learned]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));

    let after = ws.jobwarden(&["run", "--policy", learned, "--", "git", "status"]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stderr));
    assert!(
        text(&after.stdout).contains("No commits yet"),
        "{}",
        text(&after.stdout)
    );

    // Nothing broad: no root, no top-level directory, not the home.
    for broad in [
        "\"/\"",
        "\"/usr\"",
        "\"/etc\"",
        "\"/lib\"",
        "\"{home}\"",
        "\"/tmp\"",
    ] {
        assert!(!snippet.contains(broad), "{broad} granted:\n{snippet}");
    }
    // git's attempt to refresh the index in .git is reported, not granted.
    assert!(snippet.contains("# Not granted"), "{snippet}");
    assert!(snippet.contains(".git is a protected path"), "{snippet}");
    assert!(!written.contains("index.lock"), "{written}");
}

#[test]
fn learning_a_python_read_and_connect_grants_exactly_those() {
    let python = Path::new("/usr/bin/python3");
    assert!(python.exists(), "this test needs /usr/bin/python3");
    let ws = Workspace::new();
    std::fs::write(ws.home.join("secret.txt"), "s3cret\n").unwrap();
    std::fs::write(ws.home.join("sibling.txt"), "other\n").unwrap();
    let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = wanted.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    let program = |file: &str, port: u16| {
        format!(
            "import socket\nprint(open({:?}).read().strip())\nsocket.create_connection(('127.0.0.1', {port})).close()\nprint('connected')",
            ws.home.join(file).display().to_string()
        )
    };
    let base = bare_policy(&ws, "");
    let base = base.to_str().unwrap();
    let code = program("secret.txt", port);
    let run = |policy: &str, code: &str| {
        ws.jobwarden(&[
            "run",
            "--policy",
            policy,
            "--",
            "/usr/bin/python3",
            "-c",
            code,
        ])
    };
    // The base policy does not even trust python3.
    assert_eq!(run(base, &code).status.code(), Some(126));

    let learned = ws.dir.path().join("learned.toml");
    let learned = learned.to_str().unwrap();
    let out = ws.jobwarden(&[
        "learn",
        "--policy",
        base,
        "--write",
        learned,
        "--",
        "/usr/bin/python3",
        "-c",
        &code,
    ]);
    let snippet = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{snippet}\n{}",
        text(&out.stderr)
    );
    assert!(
        snippet.contains("[binaries.python3]\npath = \"/usr/bin/python3\""),
        "{snippet}"
    );
    assert!(snippet.contains("\"{home}/secret.txt\""), "{snippet}");
    assert!(
        snippet.contains(&format!("connect = [{port}]")),
        "{snippet}"
    );
    assert!(
        snippet.contains("cannot be observed"),
        "the env note: {snippet}"
    );

    let after = run(learned, &code);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stderr));
    assert_eq!(text(&after.stdout), "s3cret\nconnected\n");

    // Exactly that: the sibling file and another port stay refused.
    let sibling = run(learned, &program("sibling.txt", port));
    assert_ne!(sibling.status.code(), Some(0));
    assert!(
        text(&sibling.stderr).contains("PermissionError"),
        "{}",
        text(&sibling.stderr)
    );
    let elsewhere = run(learned, &program("secret.txt", other_port));
    assert_ne!(elsewhere.status.code(), Some(0));
    assert!(text(&elsewhere.stdout).contains("s3cret"));
    assert!(
        text(&elsewhere.stderr).contains("PermissionError"),
        "{}",
        text(&elsewhere.stderr)
    );
    assert!(!snippet.contains("sibling") && !snippet.contains(&other_port.to_string()));
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_err(), "the refused connection arrived");
}

#[test]
fn learn_reports_a_protected_path_and_never_grants_it() {
    let ws = Workspace::new();
    let base = bare_policy(&ws, "");
    let base = base.to_str().unwrap();
    let hook = ws.repo.join(".git/hooks/pre-commit");
    let learned = ws.dir.path().join("learned.toml");
    let learned = learned.to_str().unwrap();
    let out = ws.jobwarden(&[
        "learn",
        "--policy",
        base,
        "--write",
        learned,
        "--",
        PROBE,
        "write",
        hook.to_str().unwrap(),
    ]);
    let snippet = text(&out.stdout);
    // The write failed in the learn run too: protected paths stay
    // read-only there, so learning plants nothing.
    assert!(!hook.exists(), "learn mode let the job plant a hook");
    assert!(
        text(&out.stderr).contains("denied"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        snippet.contains("# Not granted — the base policy refuses these on purpose:"),
        "{snippet}"
    );
    assert!(
        snippet.contains(&format!("create {}", hook.display())),
        "{snippet}"
    );
    assert!(snippet.contains(".git is a protected path"), "{snippet}");
    let written = std::fs::read_to_string(learned).unwrap();
    assert!(!written.contains("/.git"), "{written}");
    assert!(!written.contains("hooks"), "{written}");
}

#[test]
fn learn_refuses_a_request_the_policy_denies() {
    let ws = Workspace::new();
    let base = bare_policy(&ws, "\n[binaries.git.args]\ndeny = [\"-c\"]\n");
    let out = ws.jobwarden(&[
        "learn",
        "--policy",
        base.to_str().unwrap(),
        "--",
        "git",
        "-c",
        "core.pager=sh",
        "log",
    ]);
    assert_eq!(out.status.code(), Some(126));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("denied by `binaries.git.args.deny[0]`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("learn does not grant what the policy refuses on purpose"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// A policy trusting the probe, nothing readable beyond its own needs.
fn probe_policy(ws: &Workspace) -> PathBuf {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    ws.file(
        "probe.toml",
        &format!(
            r#"version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{probe_dir}"]
read_write = ["{{repo}}", "{{tmp}}"]
[binaries.probe]
path = "{PROBE}"
[plugins.cli]
binaries = ["probe"]
"#
        ),
    )
}

#[test]
fn run_why_names_the_path_and_key_and_a_plain_run_hints_at_it() {
    let ws = Workspace::new();
    let policy = probe_policy(&ws);
    let policy = policy.to_str().unwrap();
    let secret = ws.file("secret.txt", "x");
    let secret = secret.to_str().unwrap();
    let out = ws.jobwarden(&[
        "run", "--why", "--policy", policy, "--", "probe", "read", secret,
    ]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "jobwarden: denied read {secret} — not under filesystem.read; add \"{secret}\" there (or to binaries.probe.filesystem.read)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("run again with --why"), "{stderr}");

    let plain = ws.jobwarden(&["run", "--policy", policy, "--", "probe", "read", secret]);
    let stderr = text(&plain.stderr);
    assert!(!stderr.contains("jobwarden: denied read"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("run again with --why"),
        "{stderr}"
    );
    // A job that succeeds gets no hint.
    let fine = ws.jobwarden(&[
        "run",
        "--policy",
        policy,
        "--",
        "probe",
        "print",
        "Permission denied",
    ]);
    assert_eq!(fine.status.code(), Some(0));
    assert!(!text(&fine.stderr).contains("--why"));
}

#[test]
fn doctor_says_how_denials_are_explained_here() {
    let out = Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = |name: &str| {
        report["machine"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {report:#}"))
            .clone()
    };
    // Observation is proven with a real job: its refused read came back.
    let observation = check("observation");
    assert_eq!(observation["verdict"], "works", "{observation:#}");
    assert!(
        observation["detail"]
            .as_str()
            .unwrap()
            .contains("not under filesystem.read"),
        "{observation:#}"
    );
    // Landlock's own denial log is only reported on, never switched on.
    let log = check("denial_log");
    assert!(
        log["detail"]
            .as_str()
            .unwrap()
            .contains("observe jobs instead"),
        "{log:#}"
    );
}
