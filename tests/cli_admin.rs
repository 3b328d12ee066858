//! The admin and CI surface of issue 14, through the real binary: what
//! `check` finds on this machine, `explain --json`, the extension lines of
//! `run --json`, and `test --format junit` against the JUnit schema's
//! element and attribute names.

// Linux only, like cli_run: the cases run real jobs under the Linux
// sandbox and use Unix permissions and signals.
#![cfg(target_os = "linux")]

use jobwarden::contract::JobEvent;
use jobwarden::host::wire::{ENFORCEMENT, EXTENSION_PREFIX, USAGE, WireLine};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn jobwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(args)
        .output()
        .expect("the jobwarden binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with a policy whose binaries are, on this machine: a
/// directory, a file without the execute bit, a program whose pin does not
/// match, a missing path and a relative one; and a size with a near-miss
/// unit beside one with a decimal.
fn machine_policy(dir: &Path) -> String {
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    std::fs::write(dir.join("not-executable"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.join("not-executable"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Fixed content, so its sha256 in the snapshot is the same everywhere.
    std::fs::write(dir.join("pinned"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(dir.join("pinned"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.display();
    let policy = format!(
        r#"version = 1

[binaries.dir]
path = "{d}/a-directory"

[binaries.noexec]
path = "{d}/not-executable"

[binaries.pinned]
path = "{d}/pinned"
sha256 = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

[binaries.missing]
path = "/nonexistent/jobwarden-test/missing"

[binaries.relative]
path = "bin/relative"

[limits]
memory = "4gib"
file_size = "4.5 GiB"

[plugins.cli]
binaries = ["dir", "noexec", "pinned", "missing"]
"#
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.display().to_string()
}

#[test]
fn check_judges_each_binary_against_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let policy = machine_policy(dir.path());
    let out = jobwarden(&["check", &policy]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    // The temporary directory's name, and the marker under it, differ per run.
    let carets = regex::Regex::new(r"\^{2,}").unwrap();
    let stderr = text(&out.stderr).replace(&dir.path().display().to_string(), "<dir>");
    let stderr = carets.replace_all(&stderr, "^^^").into_owned();
    // One error per root cause: the relative path is not also "no path".
    assert!(!stderr.contains("has no `path`"), "{stderr}");
    insta::assert_snapshot!("check_on_this_machine", stderr);
    assert!(
        text(&out.stdout).contains("invalid (5 error(s), 1 warning(s))"),
        "{}",
        text(&out.stdout)
    );

    // For a policy written for other machines, what depends on this one is
    // a warning; the policy's own mistakes stay errors.
    let out = jobwarden(&["check", "--portable", &policy]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for finding in ["not-executable", "sha256-mismatch"] {
        assert!(
            stderr.contains(&format!("warning[{finding}]")),
            "{finding}: {stderr}"
        );
        assert!(
            !stderr.contains(&format!("error[{finding}]")),
            "{finding}: {stderr}"
        );
    }
    assert!(
        text(&out.stdout).contains("invalid (2 error(s), 4 warning(s))"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn doctor_reports_a_pin_that_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pinned"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("pinned"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[binaries.pinned]\npath = \"{}/pinned\"\nsha256 = \"sha256:{}\"\n[plugins.cli]\nbinaries = [\"pinned\"]\n",
            dir.path().display(),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = jobwarden(&[
        "doctor",
        "--json",
        "--policy",
        &policy.display().to_string(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = &report["policy"]["checks"][0];
    assert_eq!(check["binary"], "pinned");
    let mismatch = check["sha256_mismatch"].as_str().unwrap_or_default();
    assert!(
        mismatch.contains("every job of it would be refused"),
        "{report}"
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_size_with_a_decimal_loads_and_a_near_miss_unit_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "version = 1\n[limits]\nmemory = \"4.5 GiB\"\n").unwrap();
    let out = jobwarden(&["check", &good.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = jobwarden(&[
        "explain",
        "--policy",
        &good.display().to_string(),
        "--",
        "true",
    ]);
    // The default policy's binaries are not in this one: the request is
    // refused, and the limit does not matter; loading it is what counts.
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn check_given_a_test_file_points_at_jobwarden_test() {
    let out = jobwarden(&["check", "policy/tests/citadel.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is a policy test file, not a policy: run it with `jobwarden test policy/tests/citadel.toml`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_without_the_separator_suggests_it() {
    let out = jobwarden(&["run", "git", "status", "--short"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`jobwarden run -- git status --short`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_json_names_the_key_behind_every_value() {
    let out = jobwarden(&[
        "explain",
        "--json",
        "--policy",
        "policy/citadel.toml",
        "--plugin",
        "citadel",
        "--repo",
        ".",
        "--",
        "git",
        "status",
        "--short",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every variable of the environment names the key that put it there.
    let env = v["plan"]["env"].as_object().unwrap();
    for name in env.keys() {
        let key = v["sources"]["env"][name].as_str().unwrap_or_default();
        assert!(key.starts_with("env."), "{name}: {key:?}");
    }
    // What may execute: the program first, its loader when it has one,
    // then the helpers, each with its key.
    let executables: Vec<(String, String)> = v["executables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(executables[0].0, "program", "{executables:?}");
    assert!(
        executables[0].1.starts_with("search_path["),
        "{executables:?}"
    );
    for helper in ["binaries.git.helpers[0]", "binaries.git.helpers[1]"] {
        assert!(
            executables
                .iter()
                .any(|(kind, key)| kind == "granted" && key == helper),
            "{helper}: {executables:?}"
        );
    }
    // What is the same on every machine: the decision, the rules, and the
    // key behind every value of the plan.
    let mut plan_keys = BTreeMap::new();
    keys_of("", &v["plan"], &mut plan_keys);
    let shape = serde_json::json!({
        "decision": v["decision"],
        "rule": v["rule"],
        "args_key": v["plan"]["args_key"],
        "sources": {
            "program": v["sources"]["program"],
            "args": v["sources"]["args"],
            "cwd": v["sources"]["cwd"],
        },
        "plan_keys": plan_keys,
    });
    insta::assert_snapshot!(
        "explain_json",
        serde_json::to_string_pretty(&shape).unwrap()
    );

    // A near miss of the plugin's allowed command lines: denied, naming the
    // pattern it came closest to.
    let out = jobwarden(&[
        "explain",
        "--json",
        "--policy",
        "policy/citadel.toml",
        "--plugin",
        "citadel",
        "--repo",
        ".",
        "--",
        "git",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_snapshot!(
        "explain_json_denied",
        serde_json::to_string_pretty(&serde_json::json!({
            "decision": v["decision"],
            "rule": v["rule"],
            "reason": v["reason"],
            "hint": v["hint"],
        }))
        .unwrap()
    );
}

/// Every `key` in `value`, by where it is (`limits.memory`,
/// `filesystem.read[3]`).
fn keys_of(at: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(key)) = map.get("key") {
                out.insert(at.to_string(), key.clone());
            }
            for (name, inner) in map {
                let at = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                keys_of(&at, inner, out);
            }
        }
        serde_json::Value::Array(list) => {
            for (i, inner) in list.iter().enumerate() {
                keys_of(&format!("{at}[{i}]"), inner, out);
            }
        }
        _ => {}
    }
}

/// Every line of a `run --json` stream, each a contract event or a
/// jobwarden extension line.
fn wire_lines(out: &Output) -> Vec<WireLine> {
    text(&out.stdout)
        .lines()
        .map(|line| WireLine::parse(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

#[test]
fn run_json_keeps_extension_lines_apart_from_the_contract() {
    let out = jobwarden(&["run", "--json", "--repo", ".", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = wire_lines(&out);
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| match l {
            WireLine::Event(e) => serde_json::to_value(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string(),
            WireLine::Extension(x) => x.kind.clone(),
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("job_started"),
        "{kinds:?}"
    );
    assert_eq!(kinds[1], ENFORCEMENT, "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some(USAGE), "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 2], "job_completed", "{kinds:?}");
    // No contract event's type begins with the extension prefix.
    for line in &lines {
        if let WireLine::Event(e) = line {
            let v = serde_json::to_value(e).unwrap();
            assert!(!v["type"].as_str().unwrap().starts_with(EXTENSION_PREFIX));
        }
    }
    let usage = lines
        .iter()
        .find_map(|l| match l {
            WireLine::Extension(x) if x.kind == USAGE => Some(x.data.clone()),
            _ => None,
        })
        .unwrap();
    let fields: BTreeSet<&str> = usage
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    insta::assert_snapshot!(
        "run_json_usage_fields",
        format!(
            "{fields:?}\nend = {}\nkilled_by = {}\npeak_processes = {}",
            usage["end"], usage["killed_by"], usage["peak_processes"]
        )
    );
    let enforcement = lines
        .iter()
        .find_map(|l| match l {
            WireLine::Extension(x) if x.kind == ENFORCEMENT => Some(x.data.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(enforcement["platform"], "linux");
    assert!(
        enforcement["summary"]
            .as_str()
            .unwrap()
            .starts_with("jobwarden: ")
    );
    for item in enforcement["items"].as_array().unwrap() {
        for field in ["name", "status", "short", "detail", "required"] {
            assert!(item.get(field).is_some(), "{field} in {item}");
        }
    }
}

#[test]
fn run_json_gives_a_denial_as_the_contract_job_failed() {
    let out = jobwarden(&["run", "--json", "--", "git", "-c", "core.pager=sh", "log"]);
    assert_eq!(out.status.code(), Some(126));
    let lines = wire_lines(&out);
    assert_eq!(lines.len(), 1, "{}", text(&out.stdout));
    match &lines[0] {
        WireLine::Event(JobEvent::JobFailed { data, .. }) => {
            assert!(
                data.error.contains("binaries.git.args.deny[0]"),
                "{}",
                data.error
            );
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
}

/// Elements and their attributes in Jenkins' `junit-10.xsd`, the JUnit
/// schema GitLab, GitHub's reporters and most CI systems read.
fn junit_schema() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        (
            "testsuites",
            &["name", "time", "tests", "failures", "disabled", "errors"][..],
        ),
        (
            "testsuite",
            &[
                "name",
                "tests",
                "failures",
                "errors",
                "time",
                "disabled",
                "skipped",
                "timestamp",
                "hostname",
                "id",
                "package",
            ][..],
        ),
        ("properties", &[][..]),
        ("property", &["name", "value"][..]),
        (
            "testcase",
            &["name", "assertions", "time", "classname", "status"][..],
        ),
        ("skipped", &["message"][..]),
        ("error", &["message", "type"][..]),
        ("failure", &["message", "type"][..]),
        ("system-out", &[][..]),
        ("system-err", &[][..]),
    ])
}

/// The parent each element may have in the schema.
fn junit_parent(element: &str) -> &'static [&'static str] {
    match element {
        "testsuites" => &[""],
        "testsuite" => &["testsuites"],
        "properties" | "system-out" | "system-err" => &["testsuite", "testcase"],
        "property" => &["properties"],
        "testcase" => &["testsuite"],
        _ => &["testcase"],
    }
}

/// Checks `xml` against the schema's names and nesting; returns the
/// elements seen.
fn check_junit(xml: &str) -> BTreeSet<String> {
    let schema = junit_schema();
    let tag =
        regex::Regex::new(r#"<(/?)([A-Za-z-]+)((?:\s+[A-Za-z_-]+="[^"]*")*)\s*(/?)>"#).unwrap();
    let attribute = regex::Regex::new(r#"([A-Za-z_-]+)="[^"]*""#).unwrap();
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("an XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut last = 0;
    for m in tag.captures_iter(body) {
        let whole = m.get(0).unwrap();
        // Between tags there is only text without markup.
        assert!(
            !body[last..whole.start()].contains(['<', '>']),
            "stray markup: {:?}",
            &body[last..whole.start()]
        );
        last = whole.end();
        let name = &m[2];
        if &m[1] == "/" {
            assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced </{name}>");
            continue;
        }
        let allowed = schema
            .get(name)
            .unwrap_or_else(|| panic!("<{name}> is not in junit-10.xsd"));
        let parent = stack.last().map_or("", String::as_str);
        assert!(
            junit_parent(name).contains(&parent),
            "<{name}> inside <{parent}>"
        );
        for a in attribute.captures_iter(&m[3]) {
            assert!(
                allowed.contains(&&a[1]),
                "<{name}> has attribute {} not in junit-10.xsd",
                &a[1]
            );
        }
        if name == "testcase" || name == "testsuite" || name == "property" {
            assert!(m[3].contains("name=\""), "<{name}> needs a name");
        }
        seen.insert(name.to_string());
        if &m[4] != "/" {
            stack.push(name.to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(body[last..].trim().is_empty());
    seen
}

#[test]
fn junit_output_has_the_schema_names_ci_systems_read() {
    let out = jobwarden(&[
        "test",
        "--format",
        "junit",
        "tests/fixtures/policy-tests/failing.toml",
        "tests/fixtures/policy-tests/skipping.toml",
        "tests/fixtures/policy-tests/malformed.toml",
    ]);
    // A file that cannot be used makes the run unusable (2).
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let xml = text(&out.stdout);
    let seen = check_junit(&xml);
    for element in [
        "testsuites",
        "testsuite",
        "testcase",
        "failure",
        "skipped",
        "error",
    ] {
        assert!(seen.contains(element), "no <{element}> in\n{xml}");
    }
    // The counts agree with the summary line CI parsers read (a live case
    // may be skipped where this machine cannot confine it, as without
    // cgroups for a regular user).
    let stderr = text(&out.stderr);
    let summary = regex::Regex::new(r"(?m)^(\d+) passed, (\d+) failed, (\d+) skipped$")
        .unwrap()
        .captures(&stderr)
        .unwrap_or_else(|| panic!("no summary line in {stderr}"));
    let count = |i: usize| summary[i].parse::<usize>().unwrap();
    let (passed, failed, skipped) = (count(1), count(2), count(3));
    assert_eq!(failed, 3, "{stderr}");
    assert_eq!(passed + skipped, 3, "{stderr}");
    // Six cases and the one unusable file.
    let head = format!(
        "<testsuites name=\"jobwarden test\" tests=\"{}\" failures=\"{failed}\" errors=\"1\"",
        passed + failed + skipped + 1
    );
    assert!(xml.contains(&head), "{head}\n{xml}");
}

#[test]
fn filter_runs_only_the_named_cases() {
    let out = jobwarden(&[
        "test",
        "--format",
        "json",
        "--filter",
        "glob",
        "policy/tests/citadel.toml",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let names: Vec<&str> = v["files"][0]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n.contains("glob")), "{names:?}");
    assert!(v["summary"]["filtered_out"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn ctrl_c_is_said_as_ctrl_c_in_the_cancelled_event_and_the_usage_line() {
    let child = Command::new(env!("CARGO_BIN_EXE_jobwarden"))
        .args(["run", "--json", "--", "sleep", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The job must have started before the signal; JobStarted is the first
    // line, so wait for stdout to have something.
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SAFETY: SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let lines = wire_lines(&out);
    let reason = lines
        .iter()
        .find_map(|l| match l {
            WireLine::Event(JobEvent::JobCancelled { data, .. }) => Some(data.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no JobCancelled in {}", text(&out.stdout)));
    assert_eq!(reason, "cancelled by Ctrl-C");
    let usage = lines
        .iter()
        .find_map(|l| match l {
            WireLine::Extension(x) if x.kind == USAGE => Some(x.data.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(usage["killed_by"], "cancel", "{usage}");
}

#[test]
fn a_misspelt_test_file_key_is_one_error_not_two() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "policy = \"embedded\"\n[[case]]\nnmae = \"x\"\nbinary = \"true\"\nexpect = \"allow\"\n\n[[case]]\nname = \"y\"\nbinray = \"true\"\nexpect = \"allow\"\n\n[[case]]\nname = \"z\"\nbinary = \"true\"\nexpcet = \"allow\"\n",
    )
    .unwrap();
    let out = jobwarden(&["test", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("error[").count(), 3, "{stderr}");
    for meant in ["name", "binary", "expect"] {
        assert!(
            stderr.contains(&format!("did you mean `{meant}`?")),
            "{meant}: {stderr}"
        );
    }
    assert!(!stderr.contains("error[missing-key]"), "{stderr}");
}
