//! Turning policy TOML into a validated [`Policy`], collecting every problem.
//!
//! The invariant this module keeps: a `Policy` is returned only when no error
//! was found, and every error found is returned, each with the span of the
//! text it is about. Nothing stops at the first problem: each section reads
//! itself and reports what is wrong with its own keys (`sections/`), a
//! section with an error is skipped and the walk goes on, and once the whole
//! document is read, `validate.rs` checks what needs all of it. An admin
//! fixes a whole file in one round.

use super::defaults::{DEFAULT_DENY_DEFAULTS, DEFAULT_ENFORCEMENT};
use super::diagnostic::{Code, Diagnostic, Severity};
use super::machine::ThisMachine;
use super::model::{
    BUILTIN, Enforcement, EnforcementGroup, EnforcementPolicy, Policy, PolicyOrigin, Sourced,
};
use super::reader::{Reader, span_of};
use super::schema;
use super::section::{Level, Section};
use super::sections::{Layer, read_binaries, read_plugins};
use super::template::{PathTemplate, Placeholder};
use super::validate;
use toml_span::value::Value;

/// The schema versions this build reads.
pub const SUPPORTED_VERSIONS: &[i64] = &[1];

/// The result of a successful load: the policy and its warnings.
pub(crate) struct Loaded {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates `text`. `name` is used in `origin`, `sha256` is the
/// hash of the bytes the text came from. On failure, every diagnostic:
/// errors and warnings alike.
pub(crate) fn load(
    name: &str,
    text: &str,
    sha256: String,
    mode: ThisMachine,
) -> Result<Loaded, Vec<Diagnostic>> {
    let root = match toml_span::parse(text) {
        Ok(root) => root,
        Err(err) => return Err(vec![syntax_error(&err)]),
    };
    let mut reader = Reader::new(text);
    let policy = read_policy(&mut reader, root, name, sha256, mode);
    let (errors, warnings): (Vec<_>, Vec<_>) = reader
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match policy {
        Some(policy) if errors.is_empty() => Ok(Loaded { policy, warnings }),
        _ => {
            let mut all = errors;
            all.extend(warnings);
            Err(all)
        }
    }
}

/// Text that is not TOML: nothing else can be said about it.
fn syntax_error(err: &toml_span::Error) -> Diagnostic {
    let span = err.span.start..err.span.end.max(err.span.start + 1);
    let diagnostic = Diagnostic::error(
        Code::TomlSyntax,
        span,
        format!("this is not valid TOML: {err}"),
    );
    match err.kind {
        toml_span::ErrorKind::DuplicateKey { .. } | toml_span::ErrorKind::DuplicateTable { .. } => {
            diagnostic.with_note("each key and table may appear only once")
        }
        _ => diagnostic,
    }
}

/// The whole document. `None` when it cannot become a policy at all (no
/// table at the top, or a version this build does not read); the problems
/// are in `reader` either way.
fn read_policy(
    reader: &mut Reader<'_>,
    root: Value<'_>,
    name: &str,
    sha256: String,
    mode: ThisMachine,
) -> Option<Policy> {
    let root_span = span_of(&root);
    let mut top = Section::open(reader, String::new(), root, "", schema::TOP, Level::Top)?;
    let version = read_version(&mut top, root_span.end);
    let enforcement = read_enforcement(&mut top);
    let search_path = read_search_path(&mut top);
    let base = Layer::read(&mut top);
    let binaries = read_binaries(&mut top);
    let (plugins, catch_all) = read_plugins(&mut top, &binaries);
    top.finish();

    let policy = Policy {
        version: version?,
        enforcement,
        search_path,
        builtin_env_deny: base
            .env
            .deny_defaults
            .as_ref()
            .map_or(DEFAULT_DENY_DEFAULTS, |d| d.value),
        base,
        binaries,
        plugins,
        catch_all,
        origin: PolicyOrigin {
            name: name.to_string(),
            sha256,
        },
    };
    validate::policy(reader, &policy, mode);
    Some(policy)
}

/// `enforcement`: a word for every group, or a table with one per group
/// (a group left out is required: fail closed).
fn read_enforcement(top: &mut Section<'_, '_, '_>) -> EnforcementPolicy {
    let read = top.choice_or_table::<Enforcement, _>("enforcement", |table| {
        let mut level = |group: EnforcementGroup| {
            table
                .choice::<Enforcement>(group.name())
                .unwrap_or_else(|| {
                    Sourced::new(
                        DEFAULT_ENFORCEMENT,
                        format!("enforcement.{} (left out: required)", group.name()),
                    )
                })
        };
        EnforcementPolicy {
            confinement: level(EnforcementGroup::Confinement),
            limits: level(EnforcementGroup::Limits),
            cleanup: level(EnforcementGroup::Cleanup),
        }
    });
    match read {
        Some(Ok(word)) => EnforcementPolicy::all(word.value, &word.key),
        Some(Err(table)) => table,
        None => EnforcementPolicy::all(DEFAULT_ENFORCEMENT, BUILTIN),
    }
}

/// `version`: required, and one this build reads. `end` is where the
/// document ends, for pointing at an empty one.
fn read_version(top: &mut Section<'_, '_, '_>, end: usize) -> Option<u32> {
    let Some((key, _, value)) = top.take("version") else {
        top.reader()
            .error(
                Code::MissingKey,
                0..end.min(1),
                "the policy does not say which schema version it uses",
            )
            .notes
            .push("help: add `version = 1` as the first line".into());
        return None;
    };
    let reader = top.reader();
    reader.record(&key, &value);
    match value.as_integer() {
        Some(n) if SUPPORTED_VERSIONS.contains(&n) => u32::try_from(n).ok(),
        Some(n) => {
            reader
                .error(
                    Code::UnsupportedVersion,
                    span_of(&value),
                    format!("policy schema version {n} is not supported by this jobwarden"),
                )
                .notes
                .push("note: this build reads `version = 1`".into());
            None
        }
        None => {
            reader.wrong_type(&key, &value, "a whole number");
            None
        }
    }
}

/// `search_path`: directories of the system, never of the repository or a
/// job's own directory (a job could plant a binary there).
fn read_search_path(top: &mut Section<'_, '_, '_>) -> Vec<Sourced<PathTemplate>> {
    let search_path = top.paths("search_path");
    for dir in &search_path {
        if dir.value.base().is_some_and(|b| b != Placeholder::Home) {
            let span = top.reader().span(&dir.key);
            top.reader()
                .error(
                    Code::InvalidPath,
                    span,
                    format!("`{}` may not use `{{repo}}` or `{{tmp}}`", dir.key),
                )
                .notes
                .push("note: binaries come from the system, never from the repository or a job's directory; name a repo script with `binaries.NAME.path` if you must".into());
        }
    }
    search_path
}
