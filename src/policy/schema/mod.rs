//! The policy format's keys, in one place: what each key holds, its
//! minimum, its choices, its default and where it may appear.
//!
//! The loader reads every key through its entry here (so a minimum or a list
//! of choices is checked exactly as declared, and the "expected one of" notes
//! list exactly these keys), and `jobwarden schema` generates the JSON Schema
//! from here (a test keeps the shipped `policy/jobwarden.schema.json` equal to
//! what this generates). Adding a key is one entry here, one line in its
//! section's `read` (in `sections/`), and the field it fills.

mod json;
mod keys;

pub use json::json_schema;
pub use keys::*;

use super::diagnostic::Code;
use super::model::Limit;

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A whole number of at least `min`.
    Integer {
        /// The smallest value accepted.
        min: i64,
    },
    /// A number (whole or not) between `min` and `max`.
    Number {
        /// The smallest value accepted.
        min: f64,
        /// The largest value accepted.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// Any string.
    Str,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// One of these strings, or a table of these keys (each set per part).
    ChoiceOrTable(&'static [&'static str], &'static [KeySpec]),
    /// A byte size of at least `min`: an integer or a string like "512 MiB",
    /// and "unlimited" where `unlimited`.
    Size {
        /// Whether "unlimited" is accepted.
        unlimited: bool,
        /// The smallest size accepted, in bytes.
        min: u64,
    },
    /// A whole number of at least `min` (and at least 1), or "unlimited".
    CountOrUnlimited {
        /// The smallest count accepted.
        min: u64,
    },
    /// 64 hexadecimal digits.
    Sha256,
    /// An absolute path or one starting with a placeholder.
    Path,
    /// An array of paths.
    PathList,
    /// An array of glob patterns.
    GlobList,
    /// An array of plain strings.
    StringList,
    /// An array of regular expressions.
    RegexList,
    /// An array of argument patterns, each an array of literals and globs,
    /// the last maybe `"..."`.
    ArgPatterns,
    /// An array of TCP ports.
    Ports {
        /// Whether port 0 (an ephemeral port, for `bind`) is accepted.
        allow_zero: bool,
    },
    /// A table of variable names to string values.
    StringTable,
    /// A nested table with these keys.
    Table(&'static [KeySpec]),
    /// A table whose keys are names (binaries, plugins) of tables with these keys.
    NamedTables(&'static [KeySpec]),
}

/// Where a key may be set. Sections are shared by the top level, binaries
/// and plugins; a few of their keys only make sense at some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At every level the section appears.
    Everywhere,
    /// Only in the top-level section.
    TopOnly,
    /// At the top level and per plugin, not per binary, `because`.
    NotPerBinary {
        /// Why not per binary, for the diagnostic.
        because: &'static str,
    },
}

/// The value a key takes when no level of the policy sets it (one of the
/// constants in `defaults.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Builtin {
    /// A boolean default.
    Bool(bool),
    /// A whole-number default, in the key's unit.
    Integer(u64),
    /// A fractional default, in the key's unit.
    Number(f64),
    /// A choice's word, or "unlimited".
    Word(&'static str),
}

impl Builtin {
    /// A limit's default as a policy would write it.
    pub const fn limit(limit: Limit) -> Self {
        match limit {
            Limit::Value(n) => Self::Integer(n),
            Limit::Unlimited => Self::Word("unlimited"),
        }
    }
}

/// How a value under a key's minimum is reported, where the plain "must be at
/// least" would not tell the admin why. `{key}`, `{value}` and `{min}` are
/// filled in.
#[derive(Debug, Clone, Copy)]
pub struct BelowMin {
    /// The diagnostic's code.
    pub code: Code,
    /// The diagnostic's message, with the placeholders above.
    pub message: &'static str,
    /// A `help: …` line under the snippet, if any.
    pub help: Option<&'static str>,
}

impl BelowMin {
    /// The report for any key that declares nothing better.
    pub const AT_LEAST: Self = Self {
        code: Code::InvalidValue,
        message: "`{key}` must be at least {min}",
        help: None,
    };
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// The key as written in the policy, without its section.
    pub name: &'static str,
    /// What it holds, with its bounds or choices.
    pub kind: Kind,
    /// One sentence for admins; editors show it (see [`KeySpec::description`]).
    pub doc: &'static str,
    /// Where it may be set.
    pub place: Place,
    /// Its built-in default, if it has a single one.
    pub default: Option<Builtin>,
    /// How a value under the minimum of `kind` is reported.
    pub below_min: BelowMin,
}

impl KeySpec {
    /// A key that may be set everywhere, with no default and the plain
    /// report under its minimum.
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Self {
        Self {
            name,
            kind,
            doc,
            place: Place::Everywhere,
            default: None,
            below_min: BelowMin::AT_LEAST,
        }
    }

    pub(super) const fn with_default(mut self, default: Builtin) -> Self {
        self.default = Some(default);
        self
    }

    pub(super) const fn only(mut self, place: Place) -> Self {
        self.place = place;
        self
    }

    pub(super) const fn below_min(mut self, below_min: BelowMin) -> Self {
        self.below_min = below_min;
        self
    }

    /// The description editors show: where the key may be set, then its doc.
    pub fn description(&self) -> String {
        let place = match self.place {
            Place::Everywhere => "",
            Place::TopOnly => "Top level only: ",
            Place::NotPerBinary { .. } => "Top level or plugin: ",
        };
        format!("{place}{}", self.doc)
    }
}

/// The names of a section's keys, in order.
pub fn names(specs: &'static [KeySpec]) -> impl Iterator<Item = &'static str> {
    specs.iter().map(|k| k.name)
}
