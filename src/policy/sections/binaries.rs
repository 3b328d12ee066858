//! `[binaries.NAME]`: the binaries the policy trusts, with the rules on
//! their arguments and their own overrides of every settings section.

use super::Layer;
use super::args::ArgPattern;
use crate::policy::diagnostic::Code;
use crate::policy::model::{Pattern, Sourced};
use crate::policy::reader::key_span;
use crate::policy::section::{Level, Section};
use crate::policy::template::{PathTemplate, Placeholder};
use std::collections::BTreeMap;

/// A binary the policy trusts.
#[derive(Debug, Clone)]
pub struct BinaryRule {
    /// The name requests use.
    pub name: String,
    /// `binaries.NAME`.
    pub key: String,
    /// An explicit path, or `None` to search the policy's `search_path`.
    pub path: Option<Sourced<PathTemplate>>,
    /// Expected sha256 of the file, if pinned.
    pub sha256: Option<Sourced<[u8; 32]>>,
    /// Further executables this binary may start (`/bin/sh` for make, …).
    pub helpers: Vec<Sourced<PathTemplate>>,
    /// Rules on the arguments.
    pub args: ArgRules,
    /// This binary's overrides.
    pub layer: Layer,
}

/// Rules on a binary's arguments.
#[derive(Debug, Clone, Default)]
pub struct ArgRules {
    /// If set, the arguments must match one of these command lines
    /// (`args.allow`); a plugin's own list replaces it for its jobs.
    pub allow: Option<Sourced<Vec<ArgPattern>>>,
    /// Globs matched against each argument; a match refuses the job.
    pub deny: Vec<Pattern>,
    /// Long options refused in every spelling getopt-style parsers accept:
    /// `--name`, `--name=value` and unambiguous abbreviations like `--na`.
    pub deny_long_options: Vec<Sourced<String>>,
    /// If set, the first non-option argument must be one of these.
    pub subcommands: Option<Sourced<Vec<String>>>,
    /// Maximum number of arguments.
    pub max_count: Option<Sourced<u64>>,
    /// Maximum total bytes of all arguments.
    pub max_bytes: Option<Sourced<u64>>,
}

/// Reads every `[binaries.NAME]` of the top level, by name.
pub(crate) fn read_binaries(top: &mut Section<'_, '_, '_>) -> BTreeMap<String, BinaryRule> {
    let mut binaries = BTreeMap::new();
    let (entries, specs) = top.named("binaries");
    for entry in entries {
        let name = entry.name.name.to_string();
        if !valid_binary_name(&name) {
            top.reader()
                .error(
                    Code::InvalidName,
                    key_span(&entry.name),
                    format!("`{name}` is not a valid binary name"),
                )
                .notes
                .push("note: a binary name is what a request says (`git`, `citadel`): letters, digits, `.`, `_`, `+` and `-`, no `/`".into());
            continue;
        }
        let Some(mut s) = Section::open(
            top.reader(),
            entry.path,
            entry.value,
            "binaries",
            specs,
            Level::Binary,
        ) else {
            continue;
        };
        let rule = BinaryRule::read(name, &mut s);
        s.finish();
        binaries.insert(rule.name.clone(), rule);
    }
    binaries
}

impl BinaryRule {
    fn read(name: String, s: &mut Section<'_, '_, '_>) -> Self {
        let path = read_path(s);
        let sha256 = read_sha256(s, &name);
        let helpers = s.paths("helpers");
        let args = s.table("args", ArgRules::read).unwrap_or_default();
        let layer = Layer::read(s);
        Self {
            name,
            key: s.path().to_string(),
            path,
            sha256,
            helpers,
            args,
            layer,
        }
    }
}

/// `path`: a path template that is not in `{tmp}`, which is created empty
/// for each job (so nothing could have been installed there).
fn read_path(s: &mut Section<'_, '_, '_>) -> Option<Sourced<PathTemplate>> {
    let (text, span) = s.text("path")?;
    let template = s
        .reader()
        .path_template(&text.key, &text.value, span.clone())?;
    if template.base() == Some(Placeholder::Tmp) {
        s.reader().error(
            Code::InvalidPath,
            span,
            format!(
                "`{}` may not live in `{{tmp}}`, which is created empty for each job",
                text.key
            ),
        );
        return None;
    }
    Some(Sourced::new(template, text.key))
}

/// `sha256`: the digest `sha256sum` prints, optionally after `sha256:`.
fn read_sha256(s: &mut Section<'_, '_, '_>, name: &str) -> Option<Sourced<[u8; 32]>> {
    let (text, span) = s.text("sha256")?;
    match parse_sha256(&text.value) {
        Some(digest) => Some(Sourced::new(digest, text.key)),
        None => {
            s.reader()
                .error(
                    Code::InvalidValue,
                    span,
                    format!("`{}` is not a sha256 digest", text.key),
                )
                .notes
                .push(format!("help: write the 64 hexadecimal digits that `sha256sum` prints for the file, e.g. `sha256sum /usr/bin/{name}`"));
            None
        }
    }
}

impl ArgRules {
    fn read(s: &mut Section<'_, '_, '_>) -> Self {
        let deny = s.globs("deny");
        let deny_long_options = read_long_options(s);
        let subcommands = s.is_set("subcommands").then(|| {
            let key = format!("{}.subcommands", s.path());
            let list = s.strings("subcommands").into_iter().map(|(t, _, _)| t);
            Sourced::new(list.collect(), key)
        });
        Self {
            allow: s.arg_patterns("allow"),
            deny,
            deny_long_options,
            subcommands,
            max_count: s.integer("max_count"),
            max_bytes: s.size("max_bytes"),
        }
    }
}

/// `deny_long_options`: option names, read without their dashes.
fn read_long_options(s: &mut Section<'_, '_, '_>) -> Vec<Sourced<String>> {
    let mut options = Vec::new();
    for (text, span, key) in s.strings("deny_long_options") {
        let name = text.trim_start_matches('-');
        if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
            s.reader().error(
                Code::InvalidValue,
                span,
                format!("`{key}` must be an option name such as \"upload-pack\""),
            );
            continue;
        }
        if text.starts_with('-') {
            s.reader().warning(
                Code::InvalidValue,
                span,
                format!("`{key}` is written with dashes; it is read as \"{name}\""),
            );
        }
        options.push(Sourced::new(name.to_string(), key));
    }
    options
}

/// Binary names: what a request's `binary` may say.
pub fn valid_binary_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
