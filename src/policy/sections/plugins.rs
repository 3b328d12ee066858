//! `[plugins.NAME]` and `[plugins."*"]`: which plugin may run which binaries,
//! how many jobs at once, and its own overrides of every settings section.

use super::args::ArgPattern;
use super::{BinaryRule, Layer, valid_binary_name};
use crate::policy::defaults::DEFAULT_MAX_CONCURRENT;
use crate::policy::diagnostic::{Code, did_you_mean};
use crate::policy::model::{CATCH_ALL, Sourced};
use crate::policy::reader::key_span;
use crate::policy::section::{Level, Section};
use std::collections::BTreeMap;

/// A plugin the policy names (or the catch-all).
#[derive(Debug, Clone)]
pub struct PluginRule {
    /// Its name, or `*` for the catch-all.
    pub name: String,
    /// `plugins.NAME`.
    pub key: String,
    /// Binaries it may run.
    pub binaries: Vec<Sourced<String>>,
    /// How many of its jobs run at once; more wait as `Pending`.
    pub max_concurrent: Sourced<u64>,
    /// Its own argument rules per binary (`[plugins.NAME.args.BINARY]`).
    pub args: BTreeMap<String, PluginArgs>,
    /// This plugin's overrides.
    pub layer: Layer,
}

/// A plugin's own argument rules for one binary it may run.
#[derive(Debug, Clone, Default)]
pub struct PluginArgs {
    /// Replaces the binary's `args.allow` for this plugin's jobs.
    pub allow: Option<Sourced<Vec<ArgPattern>>>,
}

/// The plugins the policy names, and its catch-all.
pub(crate) type Plugins = (BTreeMap<String, PluginRule>, Option<PluginRule>);

/// Reads every `[plugins.NAME]` of the top level; each may only list
/// binaries among `binaries`.
pub(crate) fn read_plugins(
    top: &mut Section<'_, '_, '_>,
    binaries: &BTreeMap<String, BinaryRule>,
) -> Plugins {
    let mut plugins = BTreeMap::new();
    let mut catch_all = None;
    let (entries, specs) = top.named("plugins");
    for entry in entries {
        let name = entry.name.name.to_string();
        if name != CATCH_ALL && !valid_plugin_name(&name) {
            top.reader()
                .error(
                    Code::InvalidName,
                    key_span(&entry.name),
                    format!("`{name}` is not a valid plugin name"),
                )
                .notes
                .push("note: plugin names use letters, digits, `.`, `_` and `-`; `\"*\"` is the catch-all for plugins the policy does not name".into());
            continue;
        }
        let Some(mut s) = Section::open(
            top.reader(),
            entry.path,
            entry.value,
            "plugins",
            specs,
            Level::Plugin,
        ) else {
            continue;
        };
        let rule = PluginRule::read(name, &mut s, binaries);
        s.finish();
        if rule.name == CATCH_ALL {
            catch_all = Some(rule);
        } else {
            plugins.insert(rule.name.clone(), rule);
        }
    }
    (plugins, catch_all)
}

impl PluginRule {
    fn read(
        name: String,
        s: &mut Section<'_, '_, '_>,
        binaries: &BTreeMap<String, BinaryRule>,
    ) -> Self {
        let allowed = read_allowed(s, binaries);
        let max_concurrent = s
            .integer("max_concurrent")
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_MAX_CONCURRENT));
        let args = read_args(s, &allowed, binaries);
        let layer = Layer::read(s);
        Self {
            name,
            key: s.path().to_string(),
            binaries: allowed,
            max_concurrent,
            args,
            layer,
        }
    }
}

/// `binaries`: names defined under `[binaries]`. A plugin that lists none
/// can run nothing, which is worth a warning.
fn read_allowed(
    s: &mut Section<'_, '_, '_>,
    binaries: &BTreeMap<String, BinaryRule>,
) -> Vec<Sourced<String>> {
    if !s.is_set("binaries") {
        let path = s.path().to_string();
        let span = s.reader().span(&path);
        s.reader()
            .warning(
                Code::NoEffect,
                span,
                format!("`[{path}]` lists no binaries, so every request from it is refused"),
            )
            .notes
            .push("help: add `binaries = [\"git\"]` naming what this plugin may run".into());
        return Vec::new();
    }
    let mut allowed = Vec::new();
    for (bin, span, key) in s.strings("binaries") {
        if binaries.contains_key(&bin) {
            allowed.push(Sourced::new(bin, key));
        } else if valid_binary_name(&bin) {
            let diagnostic = s.reader().error(
                Code::UndefinedBinary,
                span,
                format!("`{key}` names \"{bin}\", which is not defined under `[binaries]`"),
            );
            if let Some(near) = did_you_mean(&bin, binaries.keys().map(String::as_str)) {
                diagnostic
                    .notes
                    .push(format!("help: did you mean \"{near}\"?"));
            }
            diagnostic.notes.push(format!(
                "help: define it with `[binaries.{bin}]`, or remove it from this list"
            ));
        } else {
            s.reader().error(
                Code::InvalidName,
                span,
                format!("`{key}` is not a binary name: \"{bin}\""),
            );
        }
    }
    allowed
}

/// `[plugins.NAME.args.BINARY]`: for binaries this plugin may run. One
/// for a binary it may not run can never apply, which is worth a warning;
/// one for a binary the policy does not define is an error, as in
/// `binaries`.
fn read_args(
    s: &mut Section<'_, '_, '_>,
    allowed: &[Sourced<String>],
    binaries: &BTreeMap<String, BinaryRule>,
) -> BTreeMap<String, PluginArgs> {
    let mut args = BTreeMap::new();
    let (entries, specs) = s.named("args");
    for entry in entries {
        let bin = entry.name.name.to_string();
        let span = key_span(&entry.name);
        if !binaries.contains_key(&bin) {
            let diagnostic = s.reader().error(
                Code::UndefinedBinary,
                span,
                format!(
                    "`{}` is for \"{bin}\", which is not defined under `[binaries]`",
                    entry.path
                ),
            );
            if let Some(near) = did_you_mean(&bin, binaries.keys().map(String::as_str)) {
                diagnostic
                    .notes
                    .push(format!("help: did you mean \"{near}\"?"));
            }
            continue;
        }
        if !allowed.iter().any(|b| b.value == bin) {
            let plugin = s.path().to_string();
            s.reader()
                .warning(
                    Code::NoEffect,
                    span,
                    format!(
                        "`{}` never applies: `{plugin}.binaries` does not list \"{bin}\"",
                        entry.path
                    ),
                )
                .notes
                .push(format!(
                    "help: add \"{bin}\" to `{plugin}.binaries`, or remove this table"
                ));
        }
        let Some(mut table) = Section::open(
            s.reader(),
            entry.path,
            entry.value,
            "args",
            specs,
            Level::Plugin,
        ) else {
            continue;
        };
        let rules = PluginArgs {
            allow: table.arg_patterns("allow"),
        };
        table.finish();
        args.insert(bin, rules);
    }
    args
}

/// Plugin names as the policy may spell them.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
