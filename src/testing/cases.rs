//! The policy test-case file format, documented in `policy/README.md`.
//!
//! ```toml
//! policy = "../default.toml"      # relative to this file, or "embedded"
//!
//! [[case]]
//! name = "git -c is refused"
//! binary = "git"
//! args = ["-c", "core.pager=sh", "log"]
//! expect = "deny"
//! rule = "binaries.git.args.deny"
//!
//! [[case]]
//! name = "ssh keys are out of reach"
//! live = true
//! binary = "cat"
//! args = ["{home}/.ssh/id_rsa"]
//! denied_by_sandbox = true
//! ```
//!
//! Loading is as strict as for policies: unknown keys, wrong types and
//! contradictory expectations are all reported, each with `file:line:col`.

use crate::platform::{SmallFileError, read_small_file};
use crate::policy::reader::{Reader, Table, key_span, span_of};
use crate::policy::schema::{KeySpec, Kind};
use crate::policy::{Code, Diagnostic, Report, Severity, Source};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml_span::value::{Value, ValueInner};

/// Where the policy under test comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// A file, resolved relative to the test file.
    File(PathBuf),
    /// The policy compiled into jobwarden.
    Embedded,
}

/// Which home directory `{home}` means for the file's cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Home {
    /// A throwaway home with decoy secrets (`.ssh/id_rsa`, `.aws/credentials`,
    /// `.cargo/credentials.toml`), so hostile cases have something to steal.
    Fixture,
    /// The real home of the user running the tests (read, never written).
    Real,
}

/// What a static case expects of the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed (`expect = "allow"`).
    Allow,
    /// Denied; by this rule (or a rule beneath it) when given.
    Deny {
        /// The rule's key (`rule = "…"`); `None`: any rule.
        rule: Option<String>,
    },
}

/// Which limit a live case expects to stop the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledBy {
    /// `limits.cpu_secs`.
    Cpu,
    /// `limits.memory`.
    Memory,
    /// `limits.file_size`.
    FileSize,
    /// The job's wall-clock timeout.
    Timeout,
}

impl KilledBy {
    /// The word a test file spells it with.
    pub fn name(self) -> &'static str {
        match self {
            KilledBy::Cpu => "cpu",
            KilledBy::Memory => "memory",
            KilledBy::FileSize => "file_size",
            KilledBy::Timeout => "timeout",
        }
    }
}

/// What a live case expects of the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveExpectation {
    /// The exit code the job must end with; `None`: any.
    pub exit_code: Option<i32>,
    /// The sandbox must have refused something the job tried, and the job
    /// must not have succeeded.
    pub denied_by_sandbox: bool,
    /// Run the same command unconfined first: it must succeed, or the
    /// sandbox would not be what refuses it (file permissions would).
    pub unconfined_control: bool,
    /// The limit that must stop the job; `None`: not checked.
    pub killed_by: Option<KilledBy>,
    /// Strings the job's output must contain.
    pub output_contains: Vec<String>,
    /// Strings the job's output must not contain.
    pub output_not_contains: Vec<String>,
}

/// One case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// What the case checks, shown in the report.
    pub name: String,
    /// 1-based line of the case in its file.
    pub line: usize,
    /// The plugin asking (the file's `plugin`, else `cli`).
    pub plugin: String,
    /// The binary the request names.
    pub binary: String,
    /// Run `jobwarden-probe` under this binary's rules instead of the binary.
    pub probe_as: bool,
    /// The request's arguments, `{repo}` and `{home}` not yet filled in.
    pub args: Vec<String>,
    /// The request's working directory; `None`: the repository.
    pub cwd: Option<String>,
    /// Variables the request injects.
    pub env: BTreeMap<String, String>,
    /// The requested timeout in seconds; 0 for the policy's default.
    pub timeout_secs: u64,
    /// The requested label, if any.
    pub label: Option<String>,
    /// Static or live, with what is expected.
    pub kind: CaseKind,
}

/// Static (decision only) or live (the job runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseKind {
    /// Only the decision is checked.
    Static(Decision),
    /// The job runs under the real sandbox (`live = true`).
    Live(LiveExpectation),
}

/// A loaded test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The policy under test.
    pub policy: PolicyRef,
    /// A repository for live cases, relative to the file; `None`: a fresh
    /// throwaway git repository.
    pub repo: Option<PathBuf>,
    /// What `{home}` is for its cases.
    pub home: Home,
    /// Its cases, in file order.
    pub cases: Vec<Case>,
}

const CASE: &[KeySpec] = &[
    KeySpec::new(
        "name",
        Kind::Str,
        "What the case checks, shown in the report.",
    ),
    KeySpec::new(
        "plugin",
        Kind::Str,
        "The plugin asking (default: the file's `plugin`, else `cli`).",
    ),
    KeySpec::new("binary", Kind::Str, "The binary the request names."),
    KeySpec::new(
        "probe_as",
        Kind::Str,
        "Run jobwarden-probe under this binary's rules (live cases).",
    ),
    KeySpec::new(
        "args",
        Kind::StringList,
        "Arguments; {repo} and {home} are filled in.",
    ),
    KeySpec::new("cwd", Kind::Str, "Working directory."),
    KeySpec::new("env", Kind::StringTable, "Variables the request injects."),
    KeySpec::new(
        "timeout_secs",
        Kind::Integer { min: 0 },
        "Requested timeout.",
    ),
    KeySpec::new("label", Kind::Str, "Requested label."),
    KeySpec::new(
        "expect",
        Kind::Choice(&["allow", "deny"]),
        "Static cases: the decision.",
    ),
    KeySpec::new(
        "rule",
        Kind::Str,
        "Static deny cases: the rule that must refuse.",
    ),
    KeySpec::new("live", Kind::Bool, "Run the job for real."),
    KeySpec::new(
        "exit_code",
        Kind::Integer { min: 0 },
        "Live: the job's exit code.",
    ),
    KeySpec::new(
        "denied_by_sandbox",
        Kind::Bool,
        "Live: the job got EACCES/EPERM doing what it tried.",
    ),
    KeySpec::new(
        "unconfined_control",
        Kind::Bool,
        "Live: the same command must succeed unconfined, so a refusal is the sandbox's.",
    ),
    KeySpec::new(
        "killed_by",
        Kind::Choice(&["cpu", "memory", "file_size", "timeout"]),
        "Live: the limit that stopped it.",
    ),
    KeySpec::new(
        "output_contains",
        Kind::StringList,
        "Live: strings the output must contain.",
    ),
    KeySpec::new(
        "output_not_contains",
        Kind::StringList,
        "Live: strings the output must not contain.",
    ),
];

const FILE: &[KeySpec] = &[
    KeySpec::new(
        "policy",
        Kind::Str,
        "The policy under test, relative to this file, or \"embedded\".",
    ),
    KeySpec::new(
        "repo",
        Kind::Str,
        "A repository for live cases, relative to this file.",
    ),
    KeySpec::new(
        "home",
        Kind::Choice(&["fixture", "real"]),
        "What {home} is.",
    ),
    KeySpec::new("plugin", Kind::Str, "The default plugin of the cases."),
    KeySpec::new("case", Kind::Table(CASE), "The cases."),
];

/// The largest test file [`TestFile::load`] reads (see
/// [`crate::policy::MAX_POLICY_FILE_BYTES`]).
pub const MAX_TEST_FILE_BYTES: u64 = 1 << 20;

/// Why a test file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestFileError {
    /// Not a regular file, bigger than [`MAX_TEST_FILE_BYTES`], not UTF-8,
    /// or unreadable.
    #[error("cannot read the test file {}: {source}", path.display())]
    Read {
        /// The test file, as given.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: SmallFileError,
    },
    /// The file has errors; the report lists every one.
    #[error("{} has {} error(s):\n{}", .0.source.name, .0.error_count(), .0.render())]
    Invalid(Report),
}

impl TestFile {
    /// Reads and validates a test file: a regular file of at most
    /// [`MAX_TEST_FILE_BYTES`], read in bounded time and memory whatever
    /// the path really is.
    pub fn load(path: &Path) -> Result<Self, TestFileError> {
        let read = |source| TestFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = read_small_file(path, MAX_TEST_FILE_BYTES).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            read(std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()).into())
        })?;
        Self::parse(path, &text)
    }

    /// Validates test-file text; `path` locates relative references.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TestFileError> {
        let source = Source {
            name: path.display().to_string(),
            text: Arc::from(text),
        };
        let invalid = |diagnostics: Vec<Diagnostic>| {
            TestFileError::Invalid(Report {
                source: source.clone(),
                diagnostics,
            })
        };
        let root = toml_span::parse(text).map_err(|err| {
            let span = err.span.start..err.span.end.max(err.span.start + 1);
            invalid(vec![Diagnostic::error(
                Code::TomlSyntax,
                span,
                format!("this is not valid TOML: {err}"),
            )])
        })?;
        let mut reader = Reader::new(text);
        let file = read_file(&mut reader, path, root);
        let errors: Vec<Diagnostic> = reader
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        match file {
            Some(file) if errors.is_empty() => Ok(file),
            _ => Err(invalid(errors)),
        }
    }
}

fn read_file(reader: &mut Reader<'_>, path: &Path, root: Value<'_>) -> Option<TestFile> {
    let base = path.parent().unwrap_or(Path::new("."));
    let root_span = span_of(&root);
    let mut top = reader.table(String::new(), root, FILE)?;
    let policy = match top.take("policy") {
        Some((_, v)) => reader.string("policy", v).map(|(text, _)| {
            if text == "embedded" {
                PolicyRef::Embedded
            } else {
                PolicyRef::File(normalize(&base.join(text)))
            }
        }),
        None => {
            reader
                .error(Code::MissingKey, 0..root_span.end.min(1), "the test file does not name the policy it tests")
                .notes
                .push("help: add `policy = \"../default.toml\"` (relative to this file) or `policy = \"embedded\"`".into());
            None
        }
    };
    let repo = top
        .take("repo")
        .and_then(|(_, v)| reader.string("repo", v))
        .map(|(text, _)| normalize(&base.join(text)));
    let home = top
        .take("home")
        .and_then(|(_, v)| {
            reader.choice(
                "home",
                v,
                &[("fixture", Home::Fixture), ("real", Home::Real)],
            )
        })
        .unwrap_or(Home::Fixture);
    let plugin = top
        .take("plugin")
        .and_then(|(_, v)| reader.string("plugin", v))
        .map_or_else(|| "cli".to_string(), |(t, _)| t);
    let mut cases = Vec::new();
    if let Some((key, mut v)) = top.take("case") {
        let span = span_of(&v);
        match v.take() {
            ValueInner::Array(items) => {
                let mut names = HashSet::new();
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(case) = read_case(reader, i, item, &plugin, &mut names) {
                        cases.push(case);
                    }
                }
            }
            _ => {
                reader.error(
                    Code::WrongType,
                    span,
                    "`case` must be an array of tables: write each case as `[[case]]`",
                );
            }
        }
        let _ = key_span(&key);
    } else {
        reader
            .error(
                Code::MissingKey,
                0..root_span.end.min(1),
                "the test file has no cases",
            )
            .notes
            .push("help: add `[[case]]` tables".into());
    }
    reader.finish(top);
    Some(TestFile {
        path: path.to_path_buf(),
        policy: policy?,
        repo,
        home,
        cases,
    })
}

fn read_case(
    reader: &mut Reader<'_>,
    index: usize,
    value: Value<'_>,
    default_plugin: &str,
    names: &mut HashSet<String>,
) -> Option<Case> {
    let path = format!("case[{index}]");
    let span = span_of(&value);
    let line = reader.line_of(span.start);
    let mut table: Table<'_> = reader.table(path.clone(), value, CASE)?;
    let string = |reader: &mut Reader<'_>, table: &mut Table<'_>, key: &'static str| {
        table
            .take(key)
            .and_then(|(_, v)| reader.string(&format!("{path}.{key}"), v))
    };
    let name = string(reader, &mut table, "name");
    let plugin =
        string(reader, &mut table, "plugin").map_or_else(|| default_plugin.to_string(), |(t, _)| t);
    let binary = string(reader, &mut table, "binary");
    let probe_as = string(reader, &mut table, "probe_as");
    let cwd = string(reader, &mut table, "cwd").map(|(t, _)| t);
    let label = string(reader, &mut table, "label").map(|(t, _)| t);
    let rule = string(reader, &mut table, "rule");
    let args = table
        .take("args")
        .map(|(_, v)| {
            reader
                .string_list(&format!("{path}.args"), v)
                .into_iter()
                .map(|(t, _, _)| t)
                .collect()
        })
        .unwrap_or_default();
    let mut env = BTreeMap::new();
    if let Some((_, v)) = table.take("env")
        && let Some(mut t) = reader.table(format!("{path}.env"), v, &[])
    {
        for (k, v) in std::mem::take(&mut t.entries) {
            if let Some((value, _)) = reader.string(&format!("{path}.env.{}", k.name), v) {
                env.insert(k.name.to_string(), value);
            }
        }
    }
    let timeout_secs = table
        .take("timeout_secs")
        .and_then(|(_, v)| reader.count(&format!("{path}.timeout_secs"), v, true))
        .unwrap_or(0);
    let expect_present = table.contains("expect");
    let expect = table.take("expect").and_then(|(_, v)| {
        reader
            .choice(
                &format!("{path}.expect"),
                v,
                &[("allow", true), ("deny", false)],
            )
            .map(|allow| {
                (
                    allow,
                    reader
                        .spans
                        .get(&format!("{path}.expect"))
                        .cloned()
                        .unwrap_or(span.clone()),
                )
            })
    });
    let live = table
        .take("live")
        .and_then(|(_, v)| reader.boolean(&format!("{path}.live"), v))
        .unwrap_or(false);
    let mut expectation = LiveExpectation::default();
    let mut live_keys = Vec::new();
    if let Some((k, v)) = table.take("exit_code") {
        live_keys.push(key_span(&k));
        expectation.exit_code = reader
            .count(&format!("{path}.exit_code"), v, true)
            .map(|n| n as i32);
    }
    if let Some((k, v)) = table.take("denied_by_sandbox") {
        live_keys.push(key_span(&k));
        expectation.denied_by_sandbox = reader
            .boolean(&format!("{path}.denied_by_sandbox"), v)
            .unwrap_or(false);
    }
    // A precondition of a live case, not an expectation of its own.
    let mut control_key = None;
    if let Some((k, v)) = table.take("unconfined_control") {
        control_key = Some(key_span(&k));
        expectation.unconfined_control = reader
            .boolean(&format!("{path}.unconfined_control"), v)
            .unwrap_or(false);
    }
    if let Some((k, v)) = table.take("killed_by") {
        live_keys.push(key_span(&k));
        expectation.killed_by = reader.choice(
            &format!("{path}.killed_by"),
            v,
            &[
                ("cpu", KilledBy::Cpu),
                ("memory", KilledBy::Memory),
                ("file_size", KilledBy::FileSize),
                ("timeout", KilledBy::Timeout),
            ],
        );
    }
    for (key, slot) in [
        ("output_contains", &mut expectation.output_contains),
        ("output_not_contains", &mut expectation.output_not_contains),
    ] {
        if let Some((k, v)) = table.take(key) {
            live_keys.push(key_span(&k));
            *slot = reader
                .string_list(&format!("{path}.{key}"), v)
                .into_iter()
                .map(|(t, _, _)| t)
                .collect();
        }
    }
    // A misspelt key is reported as unknown; the key it was meant to be is
    // then missing, which is the same mistake: say it once.
    let meant: Vec<&'static str> = table
        .entries
        .keys()
        .filter_map(|k| crate::policy::did_you_mean(&k.name, CASE.iter().map(|s| s.name)))
        .collect();
    let misspelt = |keys: &[&str]| keys.iter().any(|k| meant.contains(k));
    reader.finish(table);

    let name_text = match &name {
        Some((text, name_span)) => {
            if names.contains(text) {
                reader.error(
                    Code::DuplicateEntry,
                    name_span.clone(),
                    format!("a case named \"{text}\" already exists"),
                );
            }
            names.insert(text.clone());
            text.clone()
        }
        None => {
            if !misspelt(&["name"]) {
                reader.error(
                    Code::MissingKey,
                    span.clone(),
                    format!("`{path}` has no `name`"),
                );
            }
            String::new()
        }
    };
    let (binary_name, probe) = match (binary, probe_as) {
        (Some((b, _)), None) => (b, false),
        (None, Some((b, _))) => (b, true),
        (Some(_), Some((_, s))) => {
            reader
                .error(Code::InvalidValue, s, format!("`{path}` names both `binary` and `probe_as`"))
                .notes
                .push("help: `probe_as = \"git\"` runs jobwarden-probe under git's rules; keep only one".into());
            return None;
        }
        (None, None) => {
            if !misspelt(&["binary", "probe_as"]) {
                reader.error(
                    Code::MissingKey,
                    span.clone(),
                    format!("`{path}` names no `binary` (or `probe_as`)"),
                );
            }
            return None;
        }
    };
    let kind = match (live, expect) {
        (false, Some((allow, _))) => {
            if let Some(k) = live_keys.first().or(control_key.as_ref()) {
                reader
                    .error(
                        Code::InvalidValue,
                        k.clone(),
                        format!("`{path}` is a static case but sets a live expectation"),
                    )
                    .notes
                    .push("help: add `live = true`, or drop the live expectation".into());
            }
            if probe {
                reader.error(
                    Code::InvalidValue,
                    span.clone(),
                    format!("`{path}` uses `probe_as` in a static case; probes only run live"),
                );
            }
            match (allow, rule) {
                (true, Some((_, s))) => {
                    reader.error(
                        Code::InvalidValue,
                        s,
                        format!("`{path}.rule` only goes with `expect = \"deny\"`"),
                    );
                    CaseKind::Static(Decision::Allow)
                }
                (true, None) => CaseKind::Static(Decision::Allow),
                (false, rule) => CaseKind::Static(Decision::Deny {
                    rule: rule.map(|(r, _)| r),
                }),
            }
        }
        (false, None) if expect_present || misspelt(&["expect", "live"]) => return None,
        (false, None) => {
            reader
                .error(Code::MissingKey, span.clone(), format!("`{path}` says neither `expect` nor `live = true`"))
                .notes
                .push("help: a static case says `expect = \"allow\"` or `\"deny\"`; a live case says `live = true` and what must happen".into());
            return None;
        }
        (true, Some((_, s))) => {
            reader
                .error(Code::InvalidValue, s, format!("`{path}` is live: `expect` is for static cases"))
                .notes
                .push("help: say what must happen: exit_code, denied_by_sandbox, killed_by, output_contains".into());
            return None;
        }
        (true, None) => {
            if live_keys.is_empty() && misspelt(LIVE_EXPECTATIONS) {
                return None;
            }
            if live_keys.is_empty() {
                reader
                    .error(Code::MissingKey, span.clone(), format!("`{path}` is live but says nothing about what must happen"))
                    .notes
                    .push("help: add exit_code, denied_by_sandbox, killed_by, output_contains or output_not_contains".into());
                return None;
            }
            CaseKind::Live(expectation)
        }
    };
    Some(Case {
        name: name_text,
        line,
        plugin,
        binary: binary_name,
        probe_as: probe,
        args,
        cwd,
        env,
        timeout_secs,
        label,
        kind,
    })
}

/// The keys that say what a live case expects.
const LIVE_EXPECTATIONS: &[&str] = &[
    "exit_code",
    "denied_by_sandbox",
    "killed_by",
    "output_contains",
    "output_not_contains",
];

/// Removes `.` and `name/..` pairs without touching the filesystem, so
/// reports show `policy/default.toml` rather than `policy/tests/../default.toml`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}
