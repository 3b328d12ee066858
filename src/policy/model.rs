//! The validated policy: what the decision function reads.
//!
//! A `Policy` only exists once every check of the loader (`load.rs`, the
//! sections in `sections/`, `validate.rs`) has passed, so the decision never
//! meets a malformed pattern, a relative path or a plugin that names an
//! undefined binary. Every rule remembers the key path it came from
//! (`binaries.git.args.deny[1]`), so a denial can name it.
//!
//! This file holds the document and the value types every section shares;
//! each section's own settings live beside the code that reads them, in
//! `sections/`.

use super::sections::{BinaryRule, Layer, PluginRule};
use super::template::PathTemplate;
use std::collections::BTreeMap;

/// A validated trust policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Schema version; always 1 for now.
    pub version: u32,
    /// Whether a job whose confinement cannot be fully applied is refused,
    /// per group of report items.
    pub enforcement: EnforcementPolicy,
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

/// A setting that is one of a few words (`"reject"` or `"drop"`).
///
/// The words are declared once, with the enum (by the crate-private `choice!` macro): the key
/// specification lists them for editors and "expected one of" notes, the
/// loader maps a word to its value with them, and serialisation writes them.
pub trait Choice: Copy + 'static {
    /// The words, in the order messages list them.
    const NAMES: &'static [&'static str];
    /// The value of each word, in the same order.
    const VALUES: &'static [Self];
}

/// Declares a [`Choice`] enum: each variant with the word a policy spells it
/// with. The enum gets `name()` and serialises as that word.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// The word a policy spells this value with.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }

        impl $crate::policy::Choice for $name {
            const NAMES: &'static [&'static str] = &[$($word),+];
            const VALUES: &'static [Self] = &[$(Self::$variant),+];
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }
    };
}
pub(crate) use choice;

choice! {
    /// Whether missing confinement refuses a job.
    pub enum Enforcement {
        /// Refuse a job when anything the plan asks for cannot be enforced here.
        Required = "required",
        /// Run it anyway with what can be enforced, and report what was not.
        BestEffort = "best_effort",
    }
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

/// What a report item is about, for `enforcement`: whether its absence
/// makes a job unsafe, or only weakens its resource accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementGroup {
    /// What keeps the job in: filesystem, network, sockets, scopes,
    /// privileges, the kernel baseline, its session and descriptors.
    Confinement,
    /// Resource limits: CPU, memory, processes, open files, file size, core
    /// dumps.
    Limits,
    /// That nothing the job started outlives it: whole-tree cleanup and
    /// dying with the host.
    Cleanup,
}

impl EnforcementGroup {
    /// Every group, in the order messages list them.
    pub const ALL: [EnforcementGroup; 3] = [
        EnforcementGroup::Confinement,
        EnforcementGroup::Limits,
        EnforcementGroup::Cleanup,
    ];

    /// The group's key under `enforcement`.
    pub fn name(self) -> &'static str {
        match self {
            EnforcementGroup::Confinement => "confinement",
            EnforcementGroup::Limits => "limits",
            EnforcementGroup::Cleanup => "cleanup",
        }
    }
}

/// Whether missing confinement refuses a job, per group of report items.
/// `enforcement = "required"` sets every group; the table form
/// (`enforcement = { confinement = "required", limits = "best_effort" }`)
/// sets each, and a group it leaves out is required.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnforcementPolicy {
    /// Filesystem, network, exec and the kernel baseline: what keeps a job in.
    pub confinement: Sourced<Enforcement>,
    /// Resource limits: memory, processes, CPU, files.
    pub limits: Sourced<Enforcement>,
    /// Leaving nothing behind: cgroups, the job's process group.
    pub cleanup: Sourced<Enforcement>,
}

impl EnforcementPolicy {
    /// The same level for every group, set by `key`.
    pub fn all(level: Enforcement, key: &str) -> Self {
        Self {
            confinement: Sourced::new(level, key),
            limits: Sourced::new(level, key),
            cleanup: Sourced::new(level, key),
        }
    }

    /// The level of `group`, and the key that set it.
    pub fn of(&self, group: EnforcementGroup) -> &Sourced<Enforcement> {
        match group {
            EnforcementGroup::Confinement => &self.confinement,
            EnforcementGroup::Limits => &self.limits,
            EnforcementGroup::Cleanup => &self.cleanup,
        }
    }

    /// Whether every group is required.
    pub fn all_required(&self) -> bool {
        EnforcementGroup::ALL
            .iter()
            .all(|g| self.of(*g).value == Enforcement::Required)
    }

    /// `required`, `best_effort`, or the groups spelled out.
    pub fn describe(&self) -> String {
        let levels: Vec<Enforcement> = EnforcementGroup::ALL
            .iter()
            .map(|g| self.of(*g).value)
            .collect();
        if levels.iter().all(|l| *l == levels[0]) {
            return levels[0].word().to_string();
        }
        EnforcementGroup::ALL
            .iter()
            .map(|g| format!("{} {}", g.name(), self.of(*g).value.word()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A value and the policy key that set it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sourced<T> {
    /// The value itself.
    pub value: T,
    /// Dotted key path, e.g. `binaries.cargo.limits.memory`; `built-in default`
    /// for values the policy did not set.
    pub key: String,
}

impl<T> Sourced<T> {
    /// `value`, set by the policy key `key`.
    pub fn new(value: T, key: impl Into<String>) -> Self {
        Self {
            value,
            key: key.into(),
        }
    }

    /// `value` as a built-in default no policy key set.
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
    /// The pattern as the policy wrote it.
    pub text: String,
    /// The key that holds it.
    pub key: String,
    matcher: glob::Pattern,
}

impl Pattern {
    pub(crate) fn new(text: String, key: String, matcher: glob::Pattern) -> Self {
        Self { text, key, matcher }
    }

    /// Whether `candidate` matches, case-sensitively.
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

/// A numeric limit or explicitly none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// At most this much, in the key's unit (bytes, seconds, a count).
    Value(u64),
    /// Explicitly no limit (`"unlimited"`).
    Unlimited,
}

/// The name of the catch-all plugin entry.
pub const CATCH_ALL: &str = "*";

impl Policy {
    /// The rule that applies to `plugin`: its own entry, else the catch-all.
    pub fn plugin_rule(&self, plugin: &str) -> Option<&PluginRule> {
        self.plugins.get(plugin).or(self.catch_all.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mix of the three groups: `all_required` holds for exactly one,
    /// and `describe` names a single level only when all three agree.
    #[test]
    fn enforcement_levels_per_group() {
        use Enforcement::{BestEffort, Required};
        for mask in 0..8u8 {
            let level = |bit: u8| {
                if mask & bit != 0 {
                    Required
                } else {
                    BestEffort
                }
            };
            let policy = EnforcementPolicy {
                confinement: Sourced::new(level(1), "enforcement.confinement"),
                limits: Sourced::new(level(2), "enforcement.limits"),
                cleanup: Sourced::new(level(4), "enforcement.cleanup"),
            };
            assert_eq!(policy.all_required(), mask == 7, "{mask:03b}");
            assert_eq!(policy.of(EnforcementGroup::Limits).value, level(2));
            let described = policy.describe();
            match mask {
                0 => assert_eq!(described, "best_effort"),
                7 => assert_eq!(described, "required"),
                _ => assert_eq!(
                    described,
                    format!(
                        "confinement {}, limits {}, cleanup {}",
                        level(1).word(),
                        level(2).word(),
                        level(4).word()
                    )
                ),
            }
        }
        let all = EnforcementPolicy::all(Required, "enforcement");
        assert!(all.all_required());
        assert_eq!(all.cleanup.key, "enforcement");
        assert!(!EnforcementPolicy::all(BestEffort, "enforcement").all_required());
    }
}
