//! Turning policy TOML into a validated [`Policy`], collecting every problem.
//!
//! The invariant this module keeps: a `Policy` is returned only when no error
//! was found, and every error found is returned, each with the span of the
//! text it is about. Nothing here stops at the first problem; a section with
//! an error is skipped and the walk goes on, so an admin fixes a whole file
//! in one round.

use super::diagnostic::{Code, Diagnostic, Severity, did_you_mean};
use super::model::*;
use super::reader::{Reader, Table, join_key, key_span, span_of};
use super::schema;
use super::template::{PathTemplate, Placeholder, Template};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use toml_span::value::Value;

/// The schema versions this build reads.
pub const SUPPORTED_VERSIONS: &[i64] = &[1];

/// Where a section sits, which decides the keys it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Binary,
    Plugin,
}

/// The result of a successful parse: the policy and its warnings.
pub(crate) struct Parsed {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates `text`. `name` is used in `origin`, `sha256` is the
/// hash of the bytes the text came from.
pub(crate) fn parse(name: &str, text: &str, sha256: String) -> Result<Parsed, Vec<Diagnostic>> {
    let mut reader = Reader {
        text,
        diagnostics: Vec::new(),
        spans: HashMap::new(),
    };
    let root = match toml_span::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let span = err.span.start..err.span.end.max(err.span.start + 1);
            let mut diagnostic = Diagnostic::error(
                Code::TomlSyntax,
                span,
                format!("this is not valid TOML: {err}"),
            );
            if let toml_span::ErrorKind::DuplicateKey { .. }
            | toml_span::ErrorKind::DuplicateTable { .. } = err.kind
            {
                diagnostic = diagnostic.with_note("each key and table may appear only once");
            }
            return Err(vec![diagnostic]);
        }
    };
    let policy = reader.policy(root, name, sha256);
    let (errors, warnings): (Vec<_>, Vec<_>) = reader
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match policy {
        Some(policy) if errors.is_empty() => Ok(Parsed { policy, warnings }),
        _ => {
            let mut all = errors;
            all.extend(warnings);
            Err(all)
        }
    }
}

/// The shortest sampling interval a policy may ask for.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

impl Reader<'_> {
    // ---- the document -------------------------------------------------

    fn policy(&mut self, root: Value<'_>, name: &str, sha256: String) -> Option<Policy> {
        let root_span = span_of(&root);
        let mut top = self.table(String::new(), root, schema::TOP)?;

        let version = match top.take("version") {
            None => {
                self.error(
                    Code::MissingKey,
                    0..root_span.end.min(1),
                    "the policy does not say which schema version it uses",
                )
                .notes
                .push("help: add `version = 1` as the first line".into());
                None
            }
            Some((_, v)) => {
                self.record("version", &v);
                match v.as_integer() {
                    Some(n) if SUPPORTED_VERSIONS.contains(&n) => Some(n as u32),
                    Some(n) => {
                        self.error(
                            Code::UnsupportedVersion,
                            span_of(&v),
                            format!("policy schema version {n} is not supported by this jobwarden"),
                        )
                        .notes
                        .push("note: this build reads `version = 1`".into());
                        None
                    }
                    None => {
                        self.wrong_type("version", &v, "a whole number");
                        None
                    }
                }
            }
        };

        let enforcement = top
            .take("enforcement")
            .and_then(|(_, v)| {
                self.choice(
                    "enforcement",
                    v,
                    &[
                        ("required", Enforcement::Required),
                        ("best_effort", Enforcement::BestEffort),
                    ],
                )
            })
            .unwrap_or(Enforcement::Required);

        let search_path = top
            .take("search_path")
            .map(|(_, v)| self.path_list("search_path", v))
            .unwrap_or_default();
        for dir in &search_path {
            if dir.value.base().is_some_and(|b| b != Placeholder::Home) {
                let span = self.spans.get(&dir.key).cloned().unwrap_or(0..0);
                self.error(
                    Code::InvalidPath,
                    span,
                    format!("`{}` may not use `{{repo}}` or `{{tmp}}`", dir.key),
                )
                .notes
                .push("note: binaries come from the system, never from the repository or a job's directory; name a repo script with `binaries.NAME.path` if you must".into());
            }
        }

        let mut builtin_env_deny = true;
        let base = self.layer(&mut top, "", Level::Top, Some(&mut builtin_env_deny));

        let mut binaries = BTreeMap::new();
        if let Some((_, v)) = top.take("binaries")
            && let Some(mut table) = self.table("binaries".into(), v, &[])
        {
            for (key, value) in std::mem::take(&mut table.entries) {
                let path = join_key("binaries", &key.name);
                if !valid_binary_name(&key.name) {
                    self.error(
                        Code::InvalidName,
                        key_span(&key),
                        format!("`{}` is not a valid binary name", key.name),
                    )
                    .notes
                    .push("note: a binary name is what a request says (`git`, `citadel`): letters, digits, `.`, `_`, `+` and `-`, no `/`".into());
                    continue;
                }
                if let Some(rule) = self.binary(key.name.to_string(), path, value) {
                    binaries.insert(rule.name.clone(), rule);
                }
            }
        }

        let mut plugins = BTreeMap::new();
        let mut catch_all = None;
        if let Some((_, v)) = top.take("plugins")
            && let Some(mut table) = self.table("plugins".into(), v, &[])
        {
            for (key, value) in std::mem::take(&mut table.entries) {
                let path = join_key("plugins", &key.name);
                if key.name != CATCH_ALL && !valid_plugin_name(&key.name) {
                    self.error(
                        Code::InvalidName,
                        key_span(&key),
                        format!("`{}` is not a valid plugin name", key.name),
                    )
                    .notes
                    .push("note: plugin names use letters, digits, `.`, `_` and `-`; `\"*\"` is the catch-all for plugins the policy does not name".into());
                    continue;
                }
                if let Some(rule) = self.plugin(key.name.to_string(), path, value, &binaries) {
                    if rule.name == CATCH_ALL {
                        catch_all = Some(rule);
                    } else {
                        plugins.insert(rule.name.clone(), rule);
                    }
                }
            }
        }
        self.finish(top);

        let policy = Policy {
            version: version?,
            enforcement,
            search_path,
            builtin_env_deny,
            base,
            binaries,
            plugins,
            catch_all,
            origin: PolicyOrigin {
                name: name.to_string(),
                sha256,
            },
        };
        self.cross_check(&policy);
        Some(policy)
    }

    fn binary(&mut self, name: String, path: String, value: Value<'_>) -> Option<BinaryRule> {
        let mut table = self.table(path.clone(), value, schema::BINARY)?;
        let exe_path = table.take("path").and_then(|(_, v)| {
            let key = table.child("path");
            let (text, span) = self.string(&key, v)?;
            let template = self.path_template(&key, &text, span.clone())?;
            if template.base() == Some(Placeholder::Tmp) {
                self.error(
                    Code::InvalidPath,
                    span,
                    format!(
                        "`{key}` may not live in `{{tmp}}`, which is created empty for each job"
                    ),
                );
                return None;
            }
            Some(Sourced::new(template, key))
        });
        let sha256 = table.take("sha256").and_then(|(_, v)| {
            let key = table.child("sha256");
            let (text, span) = self.string(&key, v)?;
            match parse_sha256(&text) {
                Some(digest) => Some(Sourced::new(digest, key)),
                None => {
                    self.error(
                        Code::InvalidValue,
                        span,
                        format!("`{key}` is not a sha256 digest"),
                    )
                    .notes
                    .push(format!("help: write the 64 hexadecimal digits that `sha256sum` prints for the file, e.g. `sha256sum /usr/bin/{name}`"));
                    None
                }
            }
        });
        let helpers = table
            .take("helpers")
            .map(|(_, v)| {
                let key = table.child("helpers");
                self.path_list(&key, v)
            })
            .unwrap_or_default();
        let args = table
            .take("args")
            .and_then(|(_, v)| {
                let key = table.child("args");
                self.args(key, v)
            })
            .unwrap_or_default();
        let layer = self.layer(&mut table, &path, Level::Binary, None);
        let key = table.path.clone();
        self.finish(table);
        Some(BinaryRule {
            name,
            key,
            path: exe_path,
            sha256,
            helpers,
            args,
            layer,
        })
    }

    fn args(&mut self, path: String, value: Value<'_>) -> Option<ArgRules> {
        let mut table = self.table(path, value, schema::ARGS)?;
        let mut rules = ArgRules::default();
        if let Some((_, v)) = table.take("deny") {
            rules.deny = self.patterns(&table.child("deny"), v);
        }
        if let Some((_, v)) = table.take("deny_long_options") {
            let key = table.child("deny_long_options");
            for (text, span, item_key) in self.string_list(&key, v) {
                let name = text.trim_start_matches('-');
                if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
                    self.error(
                        Code::InvalidValue,
                        span,
                        format!("`{item_key}` must be an option name such as \"upload-pack\""),
                    );
                    continue;
                }
                if text.starts_with('-') {
                    self.warning(
                        Code::InvalidValue,
                        span,
                        format!("`{item_key}` is written with dashes; it is read as \"{name}\""),
                    );
                }
                rules
                    .deny_long_options
                    .push(Sourced::new(name.to_string(), item_key));
            }
        }
        if let Some((_, v)) = table.take("subcommands") {
            let key = table.child("subcommands");
            let list: Vec<String> = self
                .string_list(&key, v)
                .into_iter()
                .map(|(t, _, _)| t)
                .collect();
            rules.subcommands = Some(Sourced::new(list, key));
        }
        if let Some((_, v)) = table.take("max_count") {
            let key = table.child("max_count");
            rules.max_count = self.count(&key, v, true).map(|n| Sourced::new(n, key));
        }
        if let Some((_, v)) = table.take("max_bytes") {
            let key = table.child("max_bytes");
            rules.max_bytes = self
                .size(&key, v, false)
                .and_then(|l| match l {
                    Limit::Value(n) => Some(n),
                    Limit::Unlimited => None,
                })
                .map(|n| Sourced::new(n, key));
        }
        self.finish(table);
        Some(rules)
    }

    fn plugin(
        &mut self,
        name: String,
        path: String,
        value: Value<'_>,
        binaries: &BTreeMap<String, BinaryRule>,
    ) -> Option<PluginRule> {
        let mut table = self.table(path.clone(), value, schema::PLUGIN)?;
        let mut allowed = Vec::new();
        match table.take("binaries") {
            Some((_, v)) => {
                let key = table.child("binaries");
                for (bin, span, item_key) in self.string_list(&key, v) {
                    if !binaries.contains_key(&bin) && valid_binary_name(&bin) {
                        let diagnostic = self.error(
                            Code::UndefinedBinary,
                            span,
                            format!("`{item_key}` names \"{bin}\", which is not defined under `[binaries]`"),
                        );
                        if let Some(s) = did_you_mean(&bin, binaries.keys().map(String::as_str)) {
                            diagnostic
                                .notes
                                .push(format!("help: did you mean \"{s}\"?"));
                        }
                        diagnostic.notes.push(format!(
                            "help: define it with `[binaries.{bin}]`, or remove it from this list"
                        ));
                        continue;
                    }
                    if !binaries.contains_key(&bin) {
                        // Already reported as an invalid binary name elsewhere, or
                        // not a name at all.
                        self.error(
                            Code::InvalidName,
                            span,
                            format!("`{item_key}` is not a binary name: \"{bin}\""),
                        );
                        continue;
                    }
                    allowed.push(Sourced::new(bin, item_key));
                }
            }
            None => {
                let span = self.spans.get(&path).cloned().unwrap_or(0..0);
                self.warning(
                    Code::NoEffect,
                    span,
                    format!("`[{path}]` lists no binaries, so every request from it is refused"),
                )
                .notes
                .push("help: add `binaries = [\"git\"]` naming what this plugin may run".into());
            }
        }
        let max_concurrent = match table.take("max_concurrent") {
            Some((_, v)) => {
                let key = table.child("max_concurrent");
                Sourced::new(
                    self.count(&key, v, false).unwrap_or(DEFAULT_MAX_CONCURRENT),
                    key,
                )
            }
            None => Sourced::builtin(DEFAULT_MAX_CONCURRENT),
        };
        let layer = self.layer(&mut table, &path, Level::Plugin, None);
        let key = table.path.clone();
        self.finish(table);
        Some(PluginRule {
            name,
            key,
            binaries: allowed,
            max_concurrent,
            layer,
        })
    }

    /// The settings sections shared by the top level, binaries and plugins.
    fn layer(
        &mut self,
        table: &mut Table<'_>,
        prefix: &str,
        level: Level,
        builtin_deny: Option<&mut bool>,
    ) -> Layer {
        let mut layer = Layer::default();
        if let Some((_, v)) = table.take("env") {
            layer.env = self.env(join_key(prefix, "env"), v, level, builtin_deny);
        }
        if let Some((_, v)) = table.take("filesystem") {
            layer.filesystem = self.filesystem(join_key(prefix, "filesystem"), v);
        }
        if let Some((_, v)) = table.take("network") {
            layer.network = self.network(join_key(prefix, "network"), v);
        }
        if let Some((_, v)) = table.take("limits") {
            layer.limits = self.limits(join_key(prefix, "limits"), v);
        }
        if let Some((_, v)) = table.take("output") {
            layer.output = self.output(join_key(prefix, "output"), v, level);
        }
        if let Some((_, v)) = table.take("progress") {
            layer.progress = self.progress(join_key(prefix, "progress"), v);
        }
        if let Some((_, v)) = table.take("seccomp") {
            layer.seccomp = self.seccomp(join_key(prefix, "seccomp"), v);
        }
        layer
    }

    fn seccomp(&mut self, path: String, value: Value<'_>) -> SeccompLayer {
        let mut seccomp = SeccompLayer::default();
        let Some(mut table) = self.table(path, value, schema::SECCOMP) else {
            return seccomp;
        };
        if let Some((_, v)) = table.take("deny_dangerous") {
            let key = table.child("deny_dangerous");
            seccomp.deny_dangerous = self.boolean(&key, v).map(|b| Sourced::new(b, key));
        }
        self.finish(table);
        seccomp
    }

    fn env(
        &mut self,
        path: String,
        value: Value<'_>,
        level: Level,
        builtin_deny: Option<&mut bool>,
    ) -> EnvLayer {
        let mut env = EnvLayer::default();
        let Some(mut table) = self.table(path, value, schema::ENV) else {
            return env;
        };
        if let Some((_, v)) = table.take("inherit") {
            env.inherit = self.patterns(&table.child("inherit"), v);
        }
        if let Some((_, v)) = table.take("allow") {
            env.allow = self.patterns(&table.child("allow"), v);
        }
        if let Some((_, v)) = table.take("deny") {
            env.deny = self.patterns(&table.child("deny"), v);
        }
        if let Some((_, v)) = table.take("set") {
            let key = table.child("set");
            if let Some(mut set) = self.table(key.clone(), v, &[]) {
                let mut entries: Vec<_> = std::mem::take(&mut set.entries).into_iter().collect();
                entries.sort_by_key(|(k, _)| k.span.start);
                for (name, value) in entries {
                    let item_key = join_key(&key, &name.name);
                    if let Err(why) = check_env_name(&name.name) {
                        self.error(
                            Code::InvalidName,
                            key_span(&name),
                            format!("`{item_key}` is not a valid variable name: {why}"),
                        );
                        continue;
                    }
                    let Some((text, span)) = self.string(&item_key, value) else {
                        continue;
                    };
                    match Template::parse(&text) {
                        Ok(t) => env
                            .set
                            .push((name.name.to_string(), Sourced::new(t, item_key))),
                        Err(err) => self.template_error(&item_key, &text, span, err, false),
                    }
                }
            }
        }
        if let Some((_, v)) = table.take("on_disallowed") {
            let key = table.child("on_disallowed");
            env.on_disallowed = self
                .choice(
                    &key,
                    v,
                    &[
                        ("reject", OnDisallowed::Reject),
                        ("drop", OnDisallowed::Drop),
                    ],
                )
                .map(|c| Sourced::new(c, key));
        }
        if let Some((k, v)) = table.take("deny_defaults") {
            let key = table.child("deny_defaults");
            match (level, builtin_deny) {
                (Level::Top, Some(flag)) => {
                    if let Some(b) = self.boolean(&key, v) {
                        *flag = b;
                        if !b {
                            self.warning(
                                Code::NoEffect,
                                key_span(&k),
                                "`env.deny_defaults = false` turns off the built-in deny list (LD_*, DYLD_*, *_TOKEN, …)",
                            )
                            .notes
                            .push("note: variables such as LD_PRELOAD can then reach jobs if another rule passes them".into());
                        }
                    }
                }
                _ => {
                    self.error(
                        Code::NotAllowedHere,
                        key_span(&k),
                        format!("`{key}` may only be set in the top-level `[env]`"),
                    );
                }
            }
        }
        self.finish(table);
        env
    }

    fn filesystem(&mut self, path: String, value: Value<'_>) -> FilesystemLayer {
        let mut fs = FilesystemLayer::default();
        let Some(mut table) = self.table(path, value, schema::FILESYSTEM) else {
            return fs;
        };
        if let Some((_, v)) = table.take("read") {
            fs.read = self.path_list(&table.child("read"), v);
        }
        if let Some((_, v)) = table.take("read_write") {
            fs.read_write = self.path_list(&table.child("read_write"), v);
        }
        if let Some((_, v)) = table.take("execute") {
            fs.execute = self.path_list(&table.child("execute"), v);
        }
        self.finish(table);
        fs
    }

    fn network(&mut self, path: String, value: Value<'_>) -> NetworkLayer {
        let mut net = NetworkLayer::default();
        let Some(mut table) = self.table(path, value, schema::NETWORK) else {
            return net;
        };
        if let Some((_, v)) = table.take("connect") {
            net.connect = self.ports(&table.child("connect"), v, false);
        }
        if let Some((_, v)) = table.take("bind") {
            net.bind = self.ports(&table.child("bind"), v, true);
        }
        if let Some((_, v)) = table.take("unrestricted") {
            let key = table.child("unrestricted");
            net.unrestricted = self.boolean(&key, v).map(|b| Sourced::new(b, key));
        }
        if net.unrestricted.as_ref().is_some_and(|u| u.value)
            && (!net.connect.is_empty() || !net.bind.is_empty())
        {
            let key = table.child("unrestricted");
            let span = self.spans.get(&key).cloned().unwrap_or(0..0);
            self.warning(
                Code::NoEffect,
                span,
                format!("`{key}` is true, so the port lists beside it have no effect"),
            );
        }
        self.finish(table);
        net
    }

    fn limits(&mut self, path: String, value: Value<'_>) -> LimitsLayer {
        let mut limits = LimitsLayer::default();
        let Some(mut table) = self.table(path, value, schema::LIMITS) else {
            return limits;
        };
        macro_rules! take {
            ($name:literal, |$key:ident, $v:ident| $read:expr) => {
                table.take($name).and_then(|(_, $v)| {
                    let $key = table.child($name);
                    let value = $read;
                    value.map(|value| Sourced::new(value, $key))
                })
            };
        }
        limits.cpu_secs = take!("cpu_secs", |key, v| self.limit(&key, v));
        limits.memory = take!("memory", |key, v| self.size(&key, v, true));
        limits.processes = take!("processes", |key, v| self.limit(&key, v));
        limits.open_files = take!("open_files", |key, v| self.limit(&key, v));
        limits.file_size = take!("file_size", |key, v| self.size(&key, v, true));
        limits.core_dumps = take!("core_dumps", |key, v| self.boolean(&key, v));
        limits.timeout_secs = take!("timeout_secs", |key, v| self.count(&key, v, false));
        limits.max_timeout_secs = take!("max_timeout_secs", |key, v| self.count(&key, v, false));
        limits.on_long_timeout = take!("on_long_timeout", |key, v| self.choice(
            &key,
            v,
            &[
                ("clamp", OnLongTimeout::Clamp),
                ("reject", OnLongTimeout::Reject)
            ]
        ));
        limits.kill_grace = take!("kill_grace_secs", |key, v| self.seconds(&key, v, 3600.0));
        if let Some(Sourced {
            value: Limit::Value(n),
            key,
        }) = &limits.open_files
            && *n < 4
        {
            let span = self.spans.get(key).cloned().unwrap_or(0..0);
            self.error(
                Code::ContradictoryLimits,
                span,
                format!("`{key}` is {n}, but every job already holds 3 descriptors (stdin, stdout, stderr)"),
            )
            .notes
            .push("help: allow at least 16 open files".into());
        }
        self.finish(table);
        limits
    }

    fn output(&mut self, path: String, value: Value<'_>, level: Level) -> OutputLayer {
        let mut output = OutputLayer::default();
        let Some(mut table) = self.table(path, value, schema::OUTPUT) else {
            return output;
        };
        if let Some((_, v)) = table.take("mode") {
            let key = table.child("mode");
            output.mode = self
                .choice(
                    &key,
                    v,
                    &[("lines", OutputMode::Lines), ("chunks", OutputMode::Chunks)],
                )
                .map(|m| Sourced::new(m, key));
        }
        if let Some((_, v)) = table.take("sanitize") {
            let key = table.child("sanitize");
            output.sanitize = self
                .choice(
                    &key,
                    v,
                    &[
                        ("colors", Sanitize::Colors),
                        ("strip", Sanitize::Strip),
                        ("raw", Sanitize::Raw),
                    ],
                )
                .map(|m| Sourced::new(m, key));
        }
        if let Some((_, v)) = table.take("max_line_bytes") {
            let key = table.child("max_line_bytes");
            output.max_line_bytes = self.size(&key, v, false).and_then(|l| match l {
                Limit::Value(n) if n < 80 => {
                    let span = self.spans.get(&key).cloned().unwrap_or(0..0);
                    self.error(
                        Code::InvalidValue,
                        span,
                        format!("`{key}` must be at least 80 bytes"),
                    );
                    None
                }
                Limit::Value(n) => Some(Sourced::new(n, key.clone())),
                Limit::Unlimited => None,
            });
        }
        if let Some((_, v)) = table.take("tail_bytes") {
            let key = table.child("tail_bytes");
            output.tail_bytes = match v.as_integer() {
                Some(0) => {
                    self.record(&key, &v);
                    Some(Sourced::new(0, key))
                }
                _ => self.size(&key, v, false).and_then(|l| match l {
                    Limit::Value(n) => Some(Sourced::new(n, key.clone())),
                    Limit::Unlimited => None,
                }),
            };
        }
        for name in ["max_queued_events", "max_queued_bytes"] {
            let Some((k, v)) = table.take(name) else {
                continue;
            };
            let key = table.child(name);
            if level == Level::Binary {
                self.error(
                    Code::NotAllowedHere,
                    key_span(&k),
                    format!(
                        "`{key}` cannot be set per binary: the event queue belongs to a plugin"
                    ),
                )
                .notes
                .push(
                    "help: set it in the top-level `[output]` or in `[plugins.NAME.output]`".into(),
                );
                continue;
            }
            let value = if name == "max_queued_events" {
                self.count(&key, v, false).and_then(|n| {
                    if n < 16 {
                        let span = self.spans.get(&key).cloned().unwrap_or(0..0);
                        self.error(
                            Code::InvalidValue,
                            span,
                            format!("`{key}` must be at least 16"),
                        );
                        None
                    } else {
                        Some(n)
                    }
                })
            } else {
                self.size(&key, v, false).and_then(|l| match l {
                    Limit::Value(n) if n < 64 * 1024 => {
                        let span = self.spans.get(&key).cloned().unwrap_or(0..0);
                        self.error(
                            Code::InvalidValue,
                            span,
                            format!("`{key}` must be at least 64 KiB"),
                        );
                        None
                    }
                    Limit::Value(n) => Some(n),
                    Limit::Unlimited => None,
                })
            };
            let slot = if name == "max_queued_events" {
                &mut output.max_queued_events
            } else {
                &mut output.max_queued_bytes
            };
            *slot = value.map(|n| Sourced::new(n, key));
        }
        self.finish(table);
        output
    }

    fn progress(&mut self, path: String, value: Value<'_>) -> ProgressLayer {
        let mut progress = ProgressLayer::default();
        let Some(mut table) = self.table(path, value, schema::PROGRESS) else {
            return progress;
        };
        if let Some((_, v)) = table.take("interval_ms") {
            let key = table.child("interval_ms");
            if let Some(ms) = self.count(&key, v, false) {
                if Duration::from_millis(ms) < MIN_PROGRESS_INTERVAL {
                    let span = self.spans.get(&key).cloned().unwrap_or(0..0);
                    self.error(
                        Code::InvalidValue,
                        span,
                        format!("`{key}` is {ms} ms; the shortest sampling interval is 200 ms"),
                    );
                } else {
                    progress.interval = Some(Sourced::new(Duration::from_millis(ms), key));
                }
            }
        }
        if let Some((_, v)) = table.take("sample") {
            let key = table.child("sample");
            progress.sample = self.boolean(&key, v).map(|b| Sourced::new(b, key));
        }
        if let Some((_, v)) = table.take("patterns") {
            let key = table.child("patterns");
            for (text, span, item_key) in self.string_list(&key, v) {
                match regex::Regex::new(&text) {
                    Ok(regex) => {
                        let names: Vec<&str> = regex.capture_names().flatten().collect();
                        let counts = names.contains(&"current") && names.contains(&"total");
                        if !names.contains(&"percent") && !names.contains(&"step") && !counts {
                            self.error(
                                Code::InvalidRegex,
                                span,
                                format!("`{item_key}` has no named group `percent`, `step`, or `current` and `total`"),
                            )
                            .notes
                            .push(
                                "help: name what to capture, e.g. \"(?P<percent>\\\\d+)%\"".into(),
                            );
                            continue;
                        }
                        progress
                            .patterns
                            .push(Sourced::new(ProgressPattern { regex }, item_key));
                    }
                    Err(err) => {
                        let text = err.to_string();
                        let last = text.lines().last().unwrap_or("invalid").trim();
                        let summary = last.strip_prefix("error: ").unwrap_or(last).to_string();
                        self.error(
                            Code::InvalidRegex,
                            span,
                            format!("`{item_key}` is not a valid regular expression: {summary}"),
                        );
                    }
                }
            }
        }
        self.finish(table);
        progress
    }

    /// Checks that need the whole policy.
    fn cross_check(&mut self, policy: &Policy) {
        // Timeouts: for every combination a job can meet, the default must
        // not exceed the maximum.
        let mut combos: Vec<Vec<&LimitsLayer>> = vec![vec![&policy.base.limits]];
        for binary in policy.binaries.values() {
            combos.push(vec![&policy.base.limits, &binary.layer.limits]);
        }
        for plugin in policy.plugins.values().chain(policy.catch_all.iter()) {
            for name in &plugin.binaries {
                if let Some(binary) = policy.binaries.get(&name.value) {
                    combos.push(vec![
                        &policy.base.limits,
                        &binary.layer.limits,
                        &plugin.layer.limits,
                    ]);
                }
            }
        }
        let mut reported = std::collections::HashSet::new();
        for layers in combos {
            let timeout = layers
                .iter()
                .filter_map(|l| l.timeout_secs.as_ref())
                .next_back();
            let max = layers
                .iter()
                .filter_map(|l| l.max_timeout_secs.as_ref())
                .next_back();
            let timeout_value = timeout.map_or(DEFAULT_TIMEOUT_SECS, |t| t.value);
            let max_value = max.map_or(DEFAULT_MAX_TIMEOUT_SECS, |t| t.value);
            if timeout_value > max_value {
                let blame = timeout
                    .map(|t| t.key.clone())
                    .or(max.map(|m| m.key.clone()));
                let Some(blame) = blame else { continue };
                if !reported.insert(blame.clone()) {
                    continue;
                }
                let span = self.spans.get(&blame).cloned().unwrap_or(0..0);
                self.error(
                    Code::ContradictoryLimits,
                    span,
                    format!(
                        "the default timeout ({timeout_value} s, `{}`) is longer than the maximum ({max_value} s, `{}`)",
                        timeout.map_or(BUILTIN, |t| t.key.as_str()),
                        max.map_or(BUILTIN, |t| t.key.as_str()),
                    ),
                )
                .notes
                .push("help: lower `timeout_secs` or raise `max_timeout_secs`".into());
            }
        }

        // Env `set` entries that a deny pattern would always drop.
        let mut all_deny: Vec<&Pattern> = policy.base.env.deny.iter().collect();
        if policy.builtin_env_deny {
            all_deny.extend(builtin_deny_patterns().iter());
        }
        let layers = std::iter::once(&policy.base)
            .chain(policy.binaries.values().map(|b| &b.layer))
            .chain(
                policy
                    .plugins
                    .values()
                    .chain(policy.catch_all.iter())
                    .map(|p| &p.layer),
            );
        for layer in layers {
            for (name, value) in &layer.env.set {
                let local = layer.env.deny.iter();
                if let Some(deny) = all_deny
                    .iter()
                    .copied()
                    .chain(local)
                    .find(|p| p.matches(name))
                {
                    let span = self.spans.get(&value.key).cloned().unwrap_or(0..0);
                    self.warning(
                        Code::NoEffect,
                        span,
                        format!(
                            "`{}` is always dropped: {name} matches the deny pattern \"{}\" (`{}`)",
                            value.key, deny.text, deny.key
                        ),
                    )
                    .notes
                    .push("note: deny patterns win over every allow, inherit and set".into());
                }
            }
        }

        // Paths that do not exist here: fine for portable policies, but worth a look.
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        for binary in policy.binaries.values() {
            let Some(path) = &binary.path else { continue };
            if path.value.base().is_some_and(|b| b != Placeholder::Home) {
                continue;
            }
            let Some(resolved) = resolve_static(&path.value, home.as_deref()) else {
                continue;
            };
            if !resolved.exists() {
                let span = self.spans.get(&path.key).cloned().unwrap_or(0..0);
                self.warning(
                    Code::MissingOnThisMachine,
                    span,
                    format!(
                        "`{}`: {} does not exist on this machine",
                        path.key,
                        resolved.display()
                    ),
                )
                .notes
                .push(
                    "note: requests for this binary will be refused here until it is installed"
                        .into(),
                );
            }
        }
        if !policy.binaries.is_empty()
            && policy.binaries.values().any(|b| b.path.is_none())
            && policy.search_path.is_empty()
        {
            for binary in policy.binaries.values().filter(|b| b.path.is_none()) {
                let span = self.spans.get(&binary.key).cloned().unwrap_or(0..0);
                self.error(
                    Code::MissingKey,
                    span,
                    format!("`[{}]` has no `path`, and the policy has no `search_path` to find it in", binary.key),
                )
                .notes
                .push(format!("help: add `path = \"/usr/bin/{}\"` or a top-level `search_path = [\"/usr/bin\", \"/bin\"]`", binary.name));
            }
        }
    }
}

fn resolve_static(
    template: &PathTemplate,
    home: Option<&std::path::Path>,
) -> Option<std::path::PathBuf> {
    match template.base() {
        None => template
            .resolve(&super::template::Placeholders {
                repo: std::path::Path::new("/"),
                home,
                tmp: std::path::Path::new("/"),
            })
            .ok(),
        Some(Placeholder::Home) => home.and_then(|h| {
            template
                .resolve(&super::template::Placeholders {
                    repo: std::path::Path::new("/"),
                    home: Some(h),
                    tmp: std::path::Path::new("/"),
                })
                .ok()
        }),
        Some(_) => None,
    }
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

/// Plugin names as the policy may spell them.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Why `name` cannot be an environment variable name, if it cannot.
pub fn check_env_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.contains('=') {
        Err("it contains `=`")
    } else if name.contains('\0') {
        Err("it contains a NUL byte")
    } else {
        Ok(())
    }
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

/// The built-in default timeout when the policy sets none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// The built-in maximum timeout when the policy sets none.
pub const DEFAULT_MAX_TIMEOUT_SECS: u64 = 3600;
/// The built-in per-plugin concurrency.
pub const DEFAULT_MAX_CONCURRENT: u64 = 4;

/// The deny patterns that apply unless `env.deny_defaults = false`.
pub const BUILTIN_ENV_DENY: &[&str] = &[
    "LD_*",
    "DYLD_*",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "PROMPT_COMMAND",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "RUBYOPT",
    "NODE_OPTIONS",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_KEY_*",
    "GIT_CONFIG_VALUE_*",
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SSH_AUTH_SOCK",
    "*_TOKEN",
    "*_TOKEN_*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_API_KEY",
    "*_ACCESS_KEY*",
    "*_PRIVATE_KEY*",
    "*CREDENTIAL*",
];

/// The built-in deny list as patterns, keyed `env.deny_defaults[i]`;
/// compiled once per process.
pub fn builtin_deny_patterns() -> &'static [Pattern] {
    static PATTERNS: std::sync::OnceLock<Vec<Pattern>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        BUILTIN_ENV_DENY
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let glob = glob::Pattern::new(text).expect("built-in patterns are valid globs");
                Pattern::new(text.to_string(), format!("env.deny_defaults[{i}]"), glob)
            })
            .collect()
    })
}
