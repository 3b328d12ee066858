//! What runs code later, unsandboxed, stays read-only inside a writable
//! repository: `.git` (hooks, config, info), `core.hooksPath`, nested
//! repositories' `.git`, `.gitmodules`, `.vscode`, `.idea`, `.envrc` — and a
//! missing protected directory cannot be created either. Each write is
//! attempted for real, then again with the job's mount namespace switched
//! off, where it succeeds.

use crate::harness::*;
use jobwarden::sandbox::{BaselineLayer, Status};
use jobwarden::{JobEvent, JobHost, JobSpawnRequest};
use std::path::Path;
use std::time::Duration;

/// A git-shaped repository: `.git` with hooks, info and a config naming a
/// hooks path, a nested repository, and some of the protected files.
fn make_repository(repo: &Path) {
    for dir in [
        ".git/hooks",
        ".git/info",
        ".git/objects",
        "vendor/lib/.git/hooks",
        "src",
    ] {
        std::fs::create_dir_all(repo.join(dir)).unwrap();
    }
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(
        repo.join(".git/config"),
        "[core]\n\trepositoryformatversion = 0\n\thooksPath = .husky\n",
    )
    .unwrap();
    std::fs::write(repo.join("vendor/lib/.git/config"), "[core]\n").unwrap();
    std::fs::write(repo.join(".gitmodules"), "").unwrap();
    std::fs::write(repo.join(".envrc"), "export A=1\n").unwrap();
}

/// (probe action, path relative to the repository)
const ATTEMPTS: &[(&str, &str)] = &[
    ("write", ".git/hooks/pre-commit"),
    ("write", ".git/config"),
    ("write", ".git/info/attributes"),
    ("write", ".git/HEAD"),
    ("write", ".gitmodules"),
    ("write", ".envrc"),
    ("write", ".vscode/tasks.json"),
    ("write", ".idea/workspace.xml"),
    ("write", ".husky/pre-commit"),
    ("write", "vendor/lib/.git/hooks/post-checkout"),
    ("write", "vendor/lib/.git/config"),
];

#[test]
fn every_default_protected_path_refuses_writes_and_creation() {
    let fx = Fixture::new("");
    make_repository(&fx.repo);
    for (action, relative) in ATTEMPTS {
        let path = fx.repo.join(relative);
        let out = fx.probe(&[action, path.to_str().unwrap()]);
        out.assert_denied("EROFS");
        assert!(
            !path.exists() || std::fs::read(&path).unwrap() != b"probe\n",
            "{relative} was written"
        );
    }
    // Renaming a protected directory away (to plant a new one) fails too.
    let git = fx.repo.join(".git");
    let moved = fx.repo.join("git-moved");
    fx.probe(&["rename", git.to_str().unwrap(), moved.to_str().unwrap()])
        .assert_denied("EBUSY");
    // The rest of the repository stays writable.
    let normal = fx.repo.join("src/main.rs");
    fx.probe(&["write", normal.to_str().unwrap()]).assert_ok();
    let out = fx.probe(&["print", "report"]);
    let item = out
        .enforcement
        .as_ref()
        .unwrap()
        .item("protected_paths")
        .unwrap();
    assert_eq!(item.status, Status::Enforced, "{item:?}");
    assert!(item.detail.contains(".husky"), "{item:?}");
    // The placeholders held for the job are gone with it.
    for missing in [".vscode", ".idea", ".husky"] {
        assert!(!fx.repo.join(missing).exists(), "{missing} left behind");
    }
}

#[test]
fn without_the_mount_namespace_every_attempt_succeeds() {
    let fx = Fixture::without("", &[BaselineLayer::Mounts]);
    make_repository(&fx.repo);
    for dir in [".vscode", ".idea", ".husky"] {
        std::fs::create_dir_all(fx.repo.join(dir)).unwrap();
    }
    for (action, relative) in ATTEMPTS {
        let path = fx.repo.join(relative);
        fx.probe(&[action, path.to_str().unwrap()]).assert_ok();
    }
}

#[test]
fn a_repository_without_git_gets_no_git_planted_either() {
    let fx = Fixture::new("");
    let hooks = fx.repo.join(".git/hooks");
    fx.probe(&["mkdir", hooks.to_str().unwrap()])
        .assert_denied("EROFS");
    assert!(!fx.repo.join(".git").exists(), "the placeholder is removed");
}

/// Another host's placeholder (here `jobwarden run`'s, in the same
/// repository) stays while a job of this host protects the same path:
/// removing a directory detaches every mount on it in every other
/// namespace, so this job's read-only `.vscode` would vanish under it and
/// the job could create `.vscode` after all. This host removes it once its
/// own job is done, as the other host would have.
#[test]
fn another_hosts_placeholder_outlives_the_jobs_that_rely_on_it() {
    let fx = Fixture::new("");
    // Hosts find each other's placeholders by an extended attribute.
    let trial = std::process::Command::new(PROBE)
        .args(["xattr", fx.repo.to_str().unwrap()])
        .output()
        .unwrap();
    if !trial.status.success() {
        skip!(
            "user-xattrs",
            "no user extended attributes in the temporary directory: placeholders are unmarked there, and other hosts cannot tell them from the user's"
        );
    }
    let vscode = fx.repo.join(".vscode");
    let tasks = vscode.join("tasks.json");
    let mut other = std::process::Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args([
            "run",
            "--repo",
            fx.repo.to_str().unwrap(),
            "--",
            "sleep",
            "3",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || vscode.exists()),
        "the other host's job made no placeholder for .vscode"
    );
    let plugin = fx.plugin();
    let id = plugin.spawn(JobSpawnRequest::new(
        "probe",
        ["create-until", tasks.to_str().unwrap(), "6"],
    ));
    // This job runs under its read-only .vscode while the other's runs.
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !events
        .iter()
        .any(|e| matches!(e, JobEvent::JobStarted { .. }))
    {
        assert!(std::time::Instant::now() < deadline, "{events:#?}");
        events.extend(plugin.wait_events(Duration::from_millis(50)));
    }
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other host's job ended before this one started: lengthen its sleep"
    );
    assert!(
        other.wait().unwrap().success(),
        "the other host's job failed"
    );
    if !events.iter().any(JobEvent::is_terminal) {
        events.extend(collect(&plugin, &id, Duration::from_secs(30)));
    }
    let out = Outcome {
        end: plugin.end(&id),
        enforcement: plugin.enforcement(&id),
        id,
        events,
    };
    out.assert_denied("EROFS");
    assert!(!tasks.exists(), "the job created .vscode/tasks.json");
    // Released by its maker, removed by the last host holding it.
    assert!(
        !vscode.exists(),
        "the placeholder outlived both hosts' jobs"
    );
}

#[test]
fn a_policy_cannot_be_refused_for_a_missing_layer_silently() {
    // Under `required`, a job whose mount namespace is off is refused,
    // naming the items.
    let fx = Fixture::with("", |b| b.without_baseline(BaselineLayer::Mounts));
    let out = fx.probe(&["print", "never"]);
    let error = out.error();
    assert!(
        error.contains("write_xor_execute NOT enforced") && error.contains("protected_paths"),
        "{error}"
    );
}

#[test]
fn commit_mode_lets_git_write_its_objects_but_not_its_hooks_or_config() {
    let fx = Fixture::new("\n[plugins.tests.filesystem]\ngit = \"commit\"\n");
    make_repository(&fx.repo);
    let index = fx.repo.join(".git/index");
    fx.probe(&["write", index.to_str().unwrap()]).assert_ok();
    let object = fx.repo.join(".git/objects/ab");
    fx.probe(&["mkdir", object.to_str().unwrap()]).assert_ok();
    for relative in [".git/hooks/pre-commit", ".git/config", ".git/info/exclude"] {
        let path = fx.repo.join(relative);
        fx.probe(&["write", path.to_str().unwrap()])
            .assert_denied("EROFS");
    }
}

#[test]
fn writable_git_and_extra_protected_paths_follow_the_policy() {
    let fx = Fixture::new(
        "\n[plugins.tests.filesystem]\ngit = \"writable\"\nprotected = [\"{repo}/Makefile\", \"{repo}/.tasks\"]\n",
    );
    make_repository(&fx.repo);
    std::fs::write(fx.repo.join("Makefile"), "all:\n").unwrap();
    let hook = fx.repo.join(".git/hooks/pre-commit");
    fx.probe(&["write", hook.to_str().unwrap()]).assert_ok();
    let makefile = fx.repo.join("Makefile");
    fx.probe(&["write", makefile.to_str().unwrap()])
        .assert_denied("EROFS");
    // A missing protected entry is held while the job runs.
    let task = fx.repo.join(".tasks/run.sh");
    fx.probe(&["write", task.to_str().unwrap()])
        .assert_denied("EROFS");
    assert!(!fx.repo.join(".tasks").exists());
}

#[test]
fn a_repository_needing_too_many_placeholders_is_refused_and_left_as_it_was() {
    // In commit mode each submodule's hooks and info are protected; 40
    // submodule git directories without them would need 80 placeholders.
    let fx = Fixture::new("\n[plugins.tests.filesystem]\ngit = \"commit\"\n");
    make_repository(&fx.repo);
    for n in 0..40 {
        let module = fx.repo.join(format!(".git/modules/m{n}"));
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(module.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    }
    let out = fx.probe(&["print", "never"]);
    let error = out.error();
    assert!(
        error.contains("more than 64 placeholders") && error.contains(".git/modules/m"),
        "{error}"
    );
    assert!(
        !out.stdout().iter().any(|l| l.contains("never")),
        "the job ran"
    );
    // The placeholders made before the refusal are gone.
    for n in 0..40 {
        let module = fx.repo.join(format!(".git/modules/m{n}"));
        assert!(!module.join("hooks").exists() && !module.join("info").exists());
    }
}
