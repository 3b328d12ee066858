//! The validated policy: what the decision function reads.
//!
//! A `Policy` only exists once every check in `parse.rs` has passed, so the
//! decision never meets a malformed pattern, a relative path or a plugin that
//! names an undefined binary. Every rule remembers the key path it came from
//! (`binaries.git.args.deny[1]`), so a denial can name it.

use super::template::{PathTemplate, Template};
use regex::Regex;
use std::collections::BTreeMap;
use std::time::Duration;

/// A validated trust policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Schema version; always 1 for now.
    pub version: u32,
    /// Whether a job whose confinement cannot be fully applied is refused.
    pub enforcement: Enforcement,
    /// Directories searched, in order, for binaries without an explicit path.
    pub search_path: Vec<Sourced<PathTemplate>>,
    /// Whether the built-in env deny list (`LD_*`, `*_TOKEN`, …) applies.
    pub builtin_env_deny: bool,
    /// Settings from the top-level sections.
    pub base: Layer,
    /// Trusted binaries, by the name a request uses.
    pub binaries: BTreeMap<String, BinaryRule>,
    /// Plugins the policy names.
    pub plugins: BTreeMap<String, PluginRule>,
    /// The `[plugins."*"]` entry, for plugins the policy does not name.
    pub catch_all: Option<PluginRule>,
    /// Where the policy came from and its hash.
    pub origin: PolicyOrigin,
}

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOrigin {
    /// Its path, or `<embedded default policy>`.
    pub name: String,
    /// Hex sha256 of the file's bytes, recorded in the audit log.
    pub sha256: String,
}

/// Whether missing confinement refuses a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Refuse a job when anything the plan asks for cannot be enforced here.
    Required,
    /// Run it anyway with what can be enforced, and report what was not.
    BestEffort,
}

impl Enforcement {
    /// The value as a policy spells it.
    pub fn word(self) -> &'static str {
        match self {
            Enforcement::Required => "required",
            Enforcement::BestEffort => "best_effort",
        }
    }
}

/// A value and the policy key that set it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sourced<T> {
    pub value: T,
    /// Dotted key path, e.g. `binaries.cargo.limits.memory`; `built-in default`
    /// for values the policy did not set.
    pub key: String,
}

impl<T> Sourced<T> {
    pub fn new(value: T, key: impl Into<String>) -> Self {
        Self {
            value,
            key: key.into(),
        }
    }

    pub fn builtin(value: T) -> Self {
        Self::new(value, BUILTIN)
    }
}

/// The key recorded for values no policy key set.
pub const BUILTIN: &str = "built-in default";

/// A glob pattern with its source text and key: `*` any run of
/// characters (including `/`), `?` one character, `[abc]`, `[!abc]`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    pub key: String,
    matcher: glob::Pattern,
}

impl Pattern {
    pub(crate) fn new(text: String, key: String, matcher: glob::Pattern) -> Self {
        Self { text, key, matcher }
    }

    pub fn matches(&self, candidate: &str) -> bool {
        self.matcher.matches_with(candidate, MATCH_OPTIONS)
    }

    /// Matches an environment variable name, ignoring case where the
    /// platform's names are case-insensitive (Windows): there `github_token`
    /// is the same variable as `GITHUB_TOKEN` and must meet the same rules.
    pub fn matches_env_name(&self, name: &str, ignore_case: bool) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: !ignore_case,
            ..MATCH_OPTIONS
        };
        self.matcher.matches_with(name, options)
    }
}

/// Case-sensitive, and `*` also matches `/` (arguments are not paths).
const MATCH_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// A set of settings contributed by one level of the policy: the top level,
/// one binary, or one plugin. Lists add to the levels below; scalars replace.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub env: EnvLayer,
    pub filesystem: FilesystemLayer,
    pub network: NetworkLayer,
    pub limits: LimitsLayer,
    pub output: OutputLayer,
    pub progress: ProgressLayer,
    pub seccomp: SeccompLayer,
}

/// The opt-in system call filter of one level.
#[derive(Debug, Clone, Default)]
pub struct SeccompLayer {
    /// Deny the system calls a job has no business making (Linux).
    pub deny_dangerous: Option<Sourced<bool>>,
}

/// Environment rules of one level.
#[derive(Debug, Clone, Default)]
pub struct EnvLayer {
    /// Host variables passed through, by name or glob.
    pub inherit: Vec<Pattern>,
    /// Names (or globs) a request may inject.
    pub allow: Vec<Pattern>,
    /// Globs that win over every allow, inherit and set.
    pub deny: Vec<Pattern>,
    /// Fixed values, in file order.
    pub set: Vec<(String, Sourced<Template>)>,
    /// What a request's non-allowed variable does.
    pub on_disallowed: Option<Sourced<OnDisallowed>>,
}

/// What happens to a variable a request injects without permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisallowed {
    /// The whole job is refused.
    Reject,
    /// The variable is dropped and the plan says so.
    Drop,
}

/// Filesystem rules of one level.
#[derive(Debug, Clone, Default)]
pub struct FilesystemLayer {
    pub read: Vec<Sourced<PathTemplate>>,
    pub read_write: Vec<Sourced<PathTemplate>>,
    pub execute: Vec<Sourced<PathTemplate>>,
}

/// Network rules of one level.
#[derive(Debug, Clone, Default)]
pub struct NetworkLayer {
    pub connect: Vec<Sourced<u16>>,
    pub bind: Vec<Sourced<u16>>,
    pub unrestricted: Option<Sourced<bool>>,
}

/// A numeric limit or explicitly none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Value(u64),
    Unlimited,
}

/// Whether an over-long requested timeout is shortened or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLongTimeout {
    Clamp,
    Reject,
}

/// Limits of one level.
#[derive(Debug, Clone, Default)]
pub struct LimitsLayer {
    pub cpu_secs: Option<Sourced<Limit>>,
    pub memory: Option<Sourced<Limit>>,
    pub processes: Option<Sourced<Limit>>,
    pub open_files: Option<Sourced<Limit>>,
    pub file_size: Option<Sourced<Limit>>,
    pub core_dumps: Option<Sourced<bool>>,
    pub timeout_secs: Option<Sourced<u64>>,
    pub max_timeout_secs: Option<Sourced<u64>>,
    pub on_long_timeout: Option<Sourced<OnLongTimeout>>,
    pub kill_grace: Option<Sourced<Duration>>,
}

/// How output reaches the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// One `JobLogLine` per line.
    Lines,
    /// `JobOutputChunk`s of bytes as read.
    Chunks,
}

/// What escape sequences survive on their way to the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sanitize {
    /// Keep SGR colour sequences; remove every other escape and control sequence.
    Colors,
    /// Remove every escape and control sequence.
    Strip,
    /// Pass bytes through untouched (lines are still lossily decoded as UTF-8).
    Raw,
}

/// Output settings of one level.
#[derive(Debug, Clone, Default)]
pub struct OutputLayer {
    pub mode: Option<Sourced<OutputMode>>,
    pub sanitize: Option<Sourced<Sanitize>>,
    pub max_line_bytes: Option<Sourced<u64>>,
    pub tail_bytes: Option<Sourced<u64>>,
    pub max_queued_events: Option<Sourced<u64>>,
    pub max_queued_bytes: Option<Sourced<u64>>,
}

/// Progress settings of one level.
#[derive(Debug, Clone, Default)]
pub struct ProgressLayer {
    /// How often running jobs are sampled.
    pub interval: Option<Sourced<Duration>>,
    /// Whether resource sampling runs at all.
    pub sample: Option<Sourced<bool>>,
    /// Regexes with named groups `percent` and/or `step`, tried on every line.
    pub patterns: Vec<Sourced<ProgressPattern>>,
}

/// A compiled progress pattern.
#[derive(Debug, Clone)]
pub struct ProgressPattern {
    pub regex: Regex,
}

impl PartialEq for ProgressPattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl Eq for ProgressPattern {}

impl serde::Serialize for ProgressPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.regex.as_str())
    }
}

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
    /// This plugin's overrides.
    pub layer: Layer,
}

/// The name of the catch-all plugin entry.
pub const CATCH_ALL: &str = "*";

impl Policy {
    /// The rule that applies to `plugin`: its own entry, else the catch-all.
    pub fn plugin_rule(&self, plugin: &str) -> Option<&PluginRule> {
        self.plugins.get(plugin).or(self.catch_all.as_ref())
    }
}
