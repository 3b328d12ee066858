//! Reading one table of the policy through its key specification.
//!
//! The invariant this module keeps: a section reads a key only by naming it,
//! and everything the schema declares about that key (its type, minimum,
//! choices and where it may be set) is checked here from `schema.rs`, never
//! written again by hand. A key read in a way its specification does not
//! declare is a programming error and panics in the first test that reads it.
//!
//! Sections (in `sections/`) say only what is theirs: which keys they hold,
//! which field each fills, and the checks that are about their meaning.

use super::diagnostic::Code;
use super::model::{Choice, Limit, Pattern, Sourced};
use super::reader::{Reader, Span, Table, key_span};
use super::schema::{BelowMin, KeySpec, Kind, Place};
use super::template::PathTemplate;
use super::units::format_size;
use std::time::Duration;
use toml_span::value::{Key, Value};

/// Where a table sits, which decides the keys it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Top,
    Binary,
    Plugin,
}

/// A table being read, with the reader that collects its problems.
pub(crate) struct Section<'r, 't, 'de> {
    reader: &'r mut Reader<'t>,
    table: Table<'de>,
    /// The section's name as messages say it (`env`, `output`).
    name: &'static str,
    level: Level,
}

/// One `[binaries.NAME]` or `[plugins.NAME]` table, not yet read.
pub(crate) struct Named<'de> {
    /// The name, with its span.
    pub name: Key<'de>,
    /// `binaries.NAME`.
    pub path: String,
    pub value: Value<'de>,
}

impl<'r, 't, 'de> Section<'r, 't, 'de> {
    /// Opens `value` as the table `path` holding `specs`, or reports that
    /// it is not a table.
    pub(crate) fn open(
        reader: &'r mut Reader<'t>,
        path: String,
        value: Value<'de>,
        name: &'static str,
        specs: &'static [KeySpec],
        level: Level,
    ) -> Option<Self> {
        let table = reader.table(path, value, specs)?;
        Some(Self {
            reader,
            table,
            name,
            level,
        })
    }

    /// Reports every key no one took.
    pub(crate) fn finish(self) {
        self.reader.finish(self.table);
    }

    pub(crate) fn reader(&mut self) -> &mut Reader<'t> {
        self.reader
    }

    /// The table's own key path (`binaries.git`; empty at the top level).
    pub(crate) fn path(&self) -> &str {
        &self.table.path
    }

    /// Whether the table holds `name`.
    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.table.contains(name)
    }

    fn spec(&self, name: &str) -> &'static KeySpec {
        self.table
            .known
            .iter()
            .find(|spec| spec.name == name)
            .unwrap_or_else(|| panic!("`{name}` is not in the schema of `[{}]`", self.table.path))
    }

    fn kind(&self, name: &str) -> Kind {
        self.spec(name).kind
    }

    fn mismatch(&self, name: &str, read_as: &str) -> ! {
        panic!(
            "`{}` is read as {read_as}, but schema.rs declares it {:?}",
            self.table.child(name),
            self.kind(name)
        )
    }

    /// Takes `name` out of the table, if it is there and may be set at this
    /// level: its full key path, its key and its value. A key set where its
    /// specification does not allow it is reported at the key and skipped.
    pub(crate) fn take(&mut self, name: &str) -> Option<(String, Key<'de>, Value<'de>)> {
        let place = self.spec(name).place;
        let (token, value) = self.table.take(name)?;
        let key = self.table.child(name);
        let section = self.name;
        match (place, self.level) {
            (Place::TopOnly, Level::Binary | Level::Plugin) => {
                self.reader.error(
                    Code::NotAllowedHere,
                    key_span(&token),
                    format!("`{key}` may only be set in the top-level `[{section}]`"),
                );
                None
            }
            (Place::NotPerBinary { because }, Level::Binary) => {
                self.reader
                    .error(
                        Code::NotAllowedHere,
                        key_span(&token),
                        format!("`{key}` cannot be set per binary: {because}"),
                    )
                    .notes
                    .push(format!(
                        "help: set it in the top-level `[{section}]` or in `[plugins.NAME.{section}]`"
                    ));
                None
            }
            _ => Some((key, token, value)),
        }
    }

    /// A nested section (`Kind::Table`), read by `read`; `None` if absent or
    /// not a table.
    pub(crate) fn table<T>(
        &mut self,
        name: &'static str,
        read: impl FnOnce(&mut Section<'_, 't, 'de>) -> T,
    ) -> Option<T> {
        let Kind::Table(specs) = self.kind(name) else {
            self.mismatch(name, "a table")
        };
        let (key, _, value) = self.take(name)?;
        let mut section = Section::open(self.reader, key, value, name, specs, self.level)?;
        let read = read(&mut section);
        section.finish();
        Some(read)
    }

    /// The named tables under `name` (`Kind::NamedTables`), in name order,
    /// with the keys they may hold.
    pub(crate) fn named(&mut self, name: &str) -> (Vec<Named<'de>>, &'static [KeySpec]) {
        let Kind::NamedTables(specs) = self.kind(name) else {
            self.mismatch(name, "named tables")
        };
        let Some((key, _, value)) = self.take(name) else {
            return (Vec::new(), specs);
        };
        let Some(mut table) = self.reader.table(key.clone(), value, &[]) else {
            return (Vec::new(), specs);
        };
        let entries = std::mem::take(&mut table.entries)
            .into_iter()
            .map(|(name, value)| Named {
                path: super::reader::join_key(&key, &name.name),
                name,
                value,
            })
            .collect();
        (entries, specs)
    }

    /// `true` or `false` (`Kind::Bool`).
    pub(crate) fn flag(&mut self, name: &str) -> Option<Sourced<bool>> {
        let Kind::Bool = self.kind(name) else {
            self.mismatch(name, "a flag")
        };
        let (key, _, value) = self.take(name)?;
        self.reader
            .boolean(&key, value)
            .map(|b| Sourced::new(b, key))
    }

    /// One of the words of `T` (`Kind::Choice`).
    pub(crate) fn choice<T: Choice>(&mut self, name: &str) -> Option<Sourced<T>> {
        let Kind::Choice(words) = self.kind(name) else {
            self.mismatch(name, "a choice")
        };
        if words != T::NAMES {
            self.mismatch(name, std::any::type_name::<T>());
        }
        let (key, _, value) = self.take(name)?;
        let choices: Vec<(&'static str, T)> = words
            .iter()
            .copied()
            .zip(T::VALUES.iter().copied())
            .collect();
        self.reader
            .choice(&key, value, &choices)
            .map(|c| Sourced::new(c, key))
    }

    /// One of the words of `T`, or a table whose keys are each one of the
    /// words of `T` (`Kind::ChoiceOrTable`): the word and its key, or what
    /// `read` made of the table.
    pub(crate) fn choice_or_table<T: Choice, R>(
        &mut self,
        name: &'static str,
        read: impl FnOnce(&mut Section<'_, 't, 'de>) -> R,
    ) -> Option<Result<Sourced<T>, R>> {
        let Kind::ChoiceOrTable(words, specs) = self.kind(name) else {
            self.mismatch(name, "a choice or a table")
        };
        if words != T::NAMES {
            self.mismatch(name, std::any::type_name::<T>());
        }
        let (key, _, value) = self.take(name)?;
        if value.as_str().is_some() {
            let choices: Vec<(&'static str, T)> = words
                .iter()
                .copied()
                .zip(T::VALUES.iter().copied())
                .collect();
            return self
                .reader
                .choice(&key, value, &choices)
                .map(|c| Ok(Sourced::new(c, key)));
        }
        if value.as_table().is_none() {
            self.reader.wrong_type(&key, &value, "a string or a table");
            return None;
        }
        let mut section = Section::open(self.reader, key, value, name, specs, self.level)?;
        let read = read(&mut section);
        section.finish();
        Some(Err(read))
    }

    /// A string (`Kind::Str`, `Kind::Sha256`, `Kind::Path`), with its span,
    /// for a section that checks it itself.
    pub(crate) fn text(&mut self, name: &str) -> Option<(Sourced<String>, Span)> {
        let (Kind::Str | Kind::Sha256 | Kind::Path) = self.kind(name) else {
            self.mismatch(name, "a string")
        };
        let (key, _, value) = self.take(name)?;
        let (text, span) = self.reader.string(&key, value)?;
        Some((Sourced::new(text, key), span))
    }

    /// A whole number (`Kind::Integer`), at least its minimum.
    pub(crate) fn integer(&mut self, name: &str) -> Option<Sourced<u64>> {
        let Kind::Integer { min } = self.kind(name) else {
            self.mismatch(name, "a whole number")
        };
        let (key, _, value) = self.take(name)?;
        let n = self.reader.count(&key, value, min <= 0)?;
        let min = u64::try_from(min).unwrap_or(0);
        self.at_least(name, &key, n, min, min.to_string())?;
        Some(Sourced::new(n, key))
    }

    /// A byte size without "unlimited" (`Kind::Size`), at least its minimum.
    pub(crate) fn size(&mut self, name: &str) -> Option<Sourced<u64>> {
        let Kind::Size {
            unlimited: false,
            min,
        } = self.kind(name)
        else {
            self.mismatch(name, "a size")
        };
        let (key, _, value) = self.take(name)?;
        let Limit::Value(n) = self.reader.size(&key, value, false, min == 0)? else {
            unreachable!("a size without \"unlimited\" is a number")
        };
        self.at_least(name, &key, n, min, bytes(min))?;
        Some(Sourced::new(n, key))
    }

    /// A limit: a count or a size (`Kind::CountOrUnlimited`, `Kind::Size`
    /// with `unlimited`), or "unlimited".
    pub(crate) fn limit(&mut self, name: &str) -> Option<Sourced<Limit>> {
        let (key, limit, min, min_text) = match self.kind(name) {
            Kind::CountOrUnlimited { min } => {
                let (key, _, value) = self.take(name)?;
                (
                    key.clone(),
                    self.reader.limit(&key, value)?,
                    min,
                    min.to_string(),
                )
            }
            Kind::Size {
                unlimited: true,
                min,
            } => {
                let (key, _, value) = self.take(name)?;
                let limit = self.reader.size(&key, value, true, min == 0)?;
                (key, limit, min, bytes(min))
            }
            _ => self.mismatch(name, "a limit"),
        };
        if let Limit::Value(n) = limit {
            self.at_least(name, &key, n, min, min_text)?;
        }
        Some(Sourced::new(limit, key))
    }

    /// A number of seconds within its range (`Kind::Number`).
    pub(crate) fn seconds(&mut self, name: &str) -> Option<Sourced<Duration>> {
        let Kind::Number { min, max } = self.kind(name) else {
            self.mismatch(name, "seconds")
        };
        let (key, _, value) = self.take(name)?;
        self.reader
            .seconds(&key, value, min, max)
            .map(|d| Sourced::new(d, key))
    }

    /// Glob patterns (`Kind::GlobList`).
    pub(crate) fn globs(&mut self, name: &str) -> Vec<Pattern> {
        let Kind::GlobList = self.kind(name) else {
            self.mismatch(name, "globs")
        };
        match self.take(name) {
            Some((key, _, value)) => self.reader.patterns(&key, value),
            None => Vec::new(),
        }
    }

    /// Paths (`Kind::PathList`).
    pub(crate) fn paths(&mut self, name: &str) -> Vec<Sourced<PathTemplate>> {
        let Kind::PathList = self.kind(name) else {
            self.mismatch(name, "paths")
        };
        match self.take(name) {
            Some((key, _, value)) => self.reader.path_list(&key, value),
            None => Vec::new(),
        }
    }

    /// Plain strings (`Kind::StringList`), each with its span and key.
    pub(crate) fn strings(&mut self, name: &str) -> Vec<(String, Span, String)> {
        let Kind::StringList = self.kind(name) else {
            self.mismatch(name, "strings")
        };
        match self.take(name) {
            Some((key, _, value)) => self.reader.string_list(&key, value),
            None => Vec::new(),
        }
    }

    /// Allowed command lines (`Kind::ArgPatterns`).
    pub(crate) fn arg_patterns(
        &mut self,
        name: &str,
    ) -> Option<Sourced<Vec<super::sections::ArgPattern>>> {
        let Kind::ArgPatterns = self.kind(name) else {
            self.mismatch(name, "argument patterns")
        };
        let (key, _, value) = self.take(name)?;
        super::sections::read_allow(self.reader, &key, value)
    }

    /// Ports (`Kind::Ports`).
    pub(crate) fn ports(&mut self, name: &str) -> Vec<Sourced<u16>> {
        let Kind::Ports { allow_zero } = self.kind(name) else {
            self.mismatch(name, "ports")
        };
        match self.take(name) {
            Some((key, _, value)) => self.reader.ports(&key, value, allow_zero),
            None => Vec::new(),
        }
    }

    /// Regular expressions that compile (`Kind::RegexList`), each with its
    /// span and key.
    pub(crate) fn regexes(&mut self, name: &str) -> Vec<(regex::Regex, Span, String)> {
        let Kind::RegexList = self.kind(name) else {
            self.mismatch(name, "regexes")
        };
        let Some((key, _, value)) = self.take(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (text, span, item_key) in self.reader.string_list(&key, value) {
            match regex::Regex::new(&text) {
                Ok(regex) => out.push((regex, span, item_key)),
                Err(err) => {
                    // The regex crate's message ends with the one line that
                    // says what is wrong; the lines before it repeat the
                    // pattern, which the snippet already shows.
                    let text = err.to_string();
                    let last = text.lines().last().unwrap_or("invalid").trim();
                    let summary = last.strip_prefix("error: ").unwrap_or(last);
                    self.reader.error(
                        Code::InvalidRegex,
                        span,
                        format!("`{item_key}` is not a valid regular expression: {summary}"),
                    );
                }
            }
        }
        out
    }

    /// Reports `n` under the key's minimum as its specification says, or
    /// passes it.
    fn at_least(
        &mut self,
        name: &str,
        key: &str,
        n: u64,
        min: u64,
        min_text: String,
    ) -> Option<()> {
        if n >= min {
            return Some(());
        }
        let BelowMin {
            code,
            message,
            help,
        } = self.spec(name).below_min;
        // `{key}` last: a key path may itself contain braces.
        let message = message
            .replace("{value}", &n.to_string())
            .replace("{min}", &min_text)
            .replace("{key}", key);
        let span = self.reader.span(key);
        let diagnostic = self.reader.error(code, span, message);
        diagnostic.notes.extend(help.map(String::from));
        None
    }
}

/// A minimum size as a sentence says it: `80 bytes`, `64 KiB`.
fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format_size(n)
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;
    use crate::policy::Policy;
    use crate::policy::schema::{KeySpec, Kind, Place, TOP};
    use std::fmt::Write as _;

    /// A valid value of `kind`, as TOML; tables are written by the caller.
    fn sample(kind: Kind) -> String {
        match kind {
            Kind::Integer { min } => min.max(1).to_string(),
            Kind::Number { min, .. } => format!("{min:?}"),
            Kind::Bool => "true".into(),
            Kind::Str => "\"x\"".into(),
            Kind::Choice(words) | Kind::ChoiceOrTable(words, _) => format!("\"{}\"", words[0]),
            Kind::Size { min, .. } => min.max(1).to_string(),
            Kind::CountOrUnlimited { min } => min.max(1).to_string(),
            Kind::Sha256 => format!("\"{}\"", "0".repeat(64)),
            Kind::Path => "\"/bin/sh\"".into(),
            Kind::PathList => "[\"/bin\"]".into(),
            // `x` is also the name of the one binary, for `plugins.*.binaries`.
            Kind::GlobList | Kind::StringList => "[\"x\"]".into(),
            Kind::RegexList => "[\"(?P<percent>\\\\d+)%\"]".into(),
            Kind::Ports { .. } => "[443]".into(),
            Kind::ArgPatterns => "[[\"x\", \"...\"]]".into(),
            Kind::StringTable => "{ X = \"1\" }".into(),
            Kind::Table(_) | Kind::NamedTables(_) => unreachable!("tables are written as tables"),
        }
    }

    /// Writes table `path` with every key of `specs` that may be set at
    /// `level` (`top`, `binary` or `plugin`).
    fn write_table(out: &mut String, path: &str, specs: &[KeySpec], level: &str) {
        let _ = writeln!(out, "[{path}]");
        for spec in specs {
            let allowed = match spec.place {
                Place::Everywhere => true,
                Place::TopOnly => level == "top",
                Place::NotPerBinary { .. } => level != "binary",
            };
            match spec.kind {
                Kind::Table(_) | Kind::NamedTables(_) => {}
                // `version` is the one key whose value is fixed.
                _ if spec.name == "version" => out.push_str("version = 1\n"),
                kind if allowed => {
                    let _ = writeln!(out, "{} = {}", spec.name, sample(kind));
                }
                _ => {}
            }
        }
        for spec in specs {
            let child = if path.is_empty() {
                spec.name.to_string()
            } else {
                format!("{path}.{}", spec.name)
            };
            match spec.kind {
                Kind::Table(inner) => write_table(out, &child, inner, level),
                Kind::NamedTables(inner) => {
                    let level = if spec.name == "binaries" {
                        "binary"
                    } else {
                        "plugin"
                    };
                    write_table(out, &format!("{child}.x"), inner, level);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn minimum_sizes_read_as_a_sentence_says_them() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(80), "80 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(64 << 10), "64 KiB");
    }

    /// A policy that sets every key the schema declares, everywhere it may
    /// be set, with a valid value: it loads only if every section reads
    /// every key of its specification, through a reader that matches the
    /// key's kind. A key added to `schema.rs` but not read by its section
    /// fails here as an unknown key.
    #[test]
    fn every_key_of_the_schema_is_read_by_its_section() {
        let mut text = String::new();
        write_table(&mut text, "", TOP, "top");
        let text = text.trim_start_matches("[]\n");
        if let Err(err) = Policy::from_toml("every-key.toml", text) {
            panic!("{err}\n{text}");
        }
    }
}
