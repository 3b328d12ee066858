//! Reading spanned TOML while collecting every problem.
//!
//! Shared by the policy loader and the test-case file loader: a [`Reader`]
//! walks `toml_span` values, records the span of every key path it reads,
//! and turns every wrong type, unknown key, bad pattern or path into a
//! [`Diagnostic`] instead of stopping. A section with an error is skipped
//! and the walk goes on.

use super::diagnostic::{Code, Diagnostic, Severity, did_you_mean, line_col};
use super::model::{Limit, Pattern, Sourced};
use super::schema::{KeySpec, names};
use super::template::{PathTemplate, TemplateError};
use super::units;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::Duration;
use toml_span::value::{Key, Value, ValueInner};

pub(crate) type Span = Range<usize>;

pub(crate) fn span_of(value: &Value<'_>) -> Span {
    value.span.start..value.span.end
}

pub(crate) fn key_span(key: &Key<'_>) -> Span {
    key.span.start..key.span.end
}

/// A table being read: keys are taken as they are understood; whatever is
/// left at `finish` is an unknown key.
pub(crate) struct Table<'de> {
    pub path: String,
    pub entries: BTreeMap<Key<'de>, Value<'de>>,
    pub known: &'static [KeySpec],
}

impl<'de> Table<'de> {
    pub(crate) fn take(&mut self, name: &str) -> Option<(Key<'de>, Value<'de>)> {
        debug_assert!(
            names(self.known).any(|k| k == name),
            "{name} missing from known keys of {}",
            self.path
        );
        self.entries.remove_entry(name)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub(crate) fn child(&self, name: &str) -> String {
        join_key(&self.path, name)
    }
}

pub(crate) fn join_key(path: &str, name: &str) -> String {
    let quoted = if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\\\""))
    };
    if path.is_empty() {
        quoted
    } else {
        format!("{path}.{quoted}")
    }
}

/// The most diagnostics one file gets: a machine-made file with thousands
/// of the same mistake gets the first ones and a note, in bounded time and
/// memory, instead of megabytes of messages.
pub(crate) const MAX_DIAGNOSTICS: usize = 100;

pub(crate) struct Reader<'t> {
    pub text: &'t str,
    pub diagnostics: Vec<Diagnostic>,
    /// Span of every key path read, so later cross-checks can point at text.
    pub spans: HashMap<String, Span>,
    /// Where a diagnostic beyond [`MAX_DIAGNOSTICS`] is written, and forgotten.
    overflow: Diagnostic,
    /// Where each line starts, built at the first line lookup.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'t> Reader<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Self {
            text,
            diagnostics: Vec::new(),
            spans: HashMap::new(),
            overflow: Diagnostic::error(Code::TooManyProblems, 0..0, ""),
            line_starts: std::cell::OnceCell::new(),
        }
    }
}

impl Reader<'_> {
    /// Records `diagnostic`, unless [`MAX_DIAGNOSTICS`] are recorded: then
    /// one more says that more were found (an error when any of them is,
    /// so a file is never passed for its unreported errors), and the rest
    /// are forgotten.
    fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(diagnostic);
            return self.diagnostics.last_mut().expect("just pushed");
        }
        if self.diagnostics.len() == MAX_DIAGNOSTICS {
            let span = self.text.len().saturating_sub(1)..self.text.len();
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::TooManyProblems,
                    span,
                    format!(
                        "more problems were found; only the first {MAX_DIAGNOSTICS} are reported"
                    ),
                )
                .with_note("help: fix these and check the file again"),
            );
        }
        if diagnostic.severity == Severity::Error
            && let Some(note) = self.diagnostics.last_mut()
        {
            note.severity = Severity::Error;
        }
        self.overflow = diagnostic;
        &mut self.overflow
    }

    /// Whether diagnostics are still recorded (costly details can be
    /// skipped when not).
    pub(crate) fn reporting(&self) -> bool {
        self.diagnostics.len() < MAX_DIAGNOSTICS
    }

    /// The 1-based line of a byte offset, in logarithmic time.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', self.text.as_bytes()).map(|i| i + 1))
                .collect()
        });
        starts.partition_point(|&start| start <= offset)
    }

    pub(crate) fn error(
        &mut self,
        code: Code,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::error(code, span, message))
    }

    pub(crate) fn warning(
        &mut self,
        code: Code,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::warning(code, span, message))
    }

    pub(crate) fn wrong_type(&mut self, path: &str, value: &Value<'_>, expected: &str) {
        let found = value_type(value);
        self.error(
            Code::WrongType,
            span_of(value),
            format!("`{path}` must be {expected}, not {found}"),
        )
        .label = Some(format!("this is {found}"));
    }

    /// Opens `value` as a table, or reports that it is not one.
    pub(crate) fn table<'de>(
        &mut self,
        path: String,
        mut value: Value<'de>,
        known: &'static [KeySpec],
    ) -> Option<Table<'de>> {
        let span = span_of(&value);
        match value.take() {
            ValueInner::Table(entries) => {
                self.spans.insert(path.clone(), span);
                Some(Table {
                    path,
                    entries,
                    known,
                })
            }
            other => {
                value.set(other);
                self.wrong_type(&path, &value, "a table");
                None
            }
        }
    }

    /// Reports every key left in `table`.
    pub(crate) fn finish(&mut self, table: Table<'_>) {
        let section = if table.path.is_empty() {
            "the top level".to_string()
        } else {
            format!("`[{}]`", table.path)
        };
        for key in table.entries.keys() {
            let diagnostic = self.error(
                Code::UnknownKey,
                key_span(key),
                format!("unknown key `{}` in {section}", key.name),
            );
            diagnostic.label = Some("unknown key".into());
            if let Some(suggestion) = did_you_mean(&key.name, names(table.known)) {
                diagnostic
                    .notes
                    .push(format!("help: did you mean `{suggestion}`?"));
            }
            diagnostic.notes.push(format!(
                "note: expected one of: {}",
                names(table.known).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    pub(crate) fn record(&mut self, path: &str, value: &Value<'_>) {
        self.spans.insert(path.to_string(), span_of(value));
    }

    /// The span of the value read for `path`. Every key a later check names
    /// was recorded when it was read; were one not, the diagnostic would
    /// point at the start of the file rather than nowhere.
    pub(crate) fn span(&self, path: &str) -> Span {
        self.spans.get(path).cloned().unwrap_or(0..0)
    }

    pub(crate) fn string(&mut self, path: &str, mut value: Value<'_>) -> Option<(String, Span)> {
        self.record(path, &value);
        let span = span_of(&value);
        match value.take() {
            ValueInner::String(s) => Some((s.into_owned(), span)),
            other => {
                value.set(other);
                self.wrong_type(path, &value, "a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, path: &str, value: Value<'_>) -> Option<bool> {
        self.record(path, &value);
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(path, &value, "true or false");
                None
            }
        }
    }

    /// A positive integer; zero is a `zero-limit` error unless `allow_zero`.
    pub(crate) fn count(&mut self, path: &str, value: Value<'_>, allow_zero: bool) -> Option<u64> {
        self.record(path, &value);
        let Some(n) = value.as_integer() else {
            self.wrong_type(path, &value, "a whole number");
            return None;
        };
        if n < 0 {
            self.error(
                Code::InvalidValue,
                span_of(&value),
                format!("`{path}` cannot be negative"),
            );
            return None;
        }
        if n == 0 && !allow_zero {
            self.error(
                Code::ZeroLimit,
                span_of(&value),
                format!("`{path}` is 0, which would stop every job"),
            )
            .notes
            .push("help: use a positive number, or remove the key to take the default".into());
            return None;
        }
        Some(n as u64)
    }

    /// One of `choices`, or an `invalid-value` error with a suggestion.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        path: &str,
        value: Value<'_>,
        choices: &[(&'static str, T)],
    ) -> Option<T> {
        let (text, span) = self.string(path, value)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let diagnostic = self.error(
            Code::InvalidValue,
            span,
            format!("`{path}` cannot be \"{text}\""),
        );
        if let Some(s) = did_you_mean(&text, names.iter().copied()) {
            diagnostic
                .notes
                .push(format!("help: did you mean \"{s}\"?"));
        }
        diagnostic.notes.push(format!(
            "note: expected one of: {}",
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        None
    }

    /// An array of strings; wrong elements are reported one by one and skipped.
    pub(crate) fn string_list(
        &mut self,
        path: &str,
        mut value: Value<'_>,
    ) -> Vec<(String, Span, String)> {
        self.record(path, &value);
        let span = span_of(&value);
        let items = match value.take() {
            ValueInner::Array(items) => items,
            other => {
                value.set(other);
                self.wrong_type(path, &value, "an array of strings");
                return Vec::new();
            }
        };
        let mut out: Vec<(String, Span, String)> = Vec::new();
        // Where each text was first listed: a long list is checked for
        // repeats in linear time.
        let mut first_seen: HashMap<String, Span> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            if let Some((text, item_span)) = self.string(&item_path, item) {
                if let Some(first) = first_seen.get(&text) {
                    let first = first.clone();
                    self.duplicate(&item_path, item_span, first, &text);
                    continue;
                }
                first_seen.insert(text.clone(), item_span.clone());
                out.push((text, item_span, item_path));
            }
        }
        let _ = span;
        out
    }

    /// Reports `path` repeating an entry first listed at `first`. The
    /// error is always pushed, so a full report still fails the file (the
    /// caller drops the list); only where it was first listed, which costs
    /// a scan of the text, is left out once nothing more is recorded.
    pub(crate) fn duplicate(&mut self, path: &str, span: Span, first: Span, what: &str) {
        let first_at = self.reporting().then(|| line_col(self.text, first.start));
        let diagnostic = self.error(
            Code::DuplicateEntry,
            span,
            format!("`{path}` repeats \"{what}\""),
        );
        diagnostic.label = Some("listed again here".into());
        if let Some((line, col)) = first_at {
            diagnostic.notes.push(format!(
                "note: first listed at {line}:{col}; remove one of them"
            ));
        }
    }

    pub(crate) fn patterns(&mut self, path: &str, value: Value<'_>) -> Vec<Pattern> {
        self.string_list(path, value)
            .into_iter()
            .filter_map(|(text, span, key)| self.pattern(text, span, key))
            .collect()
    }

    pub(crate) fn pattern(&mut self, text: String, span: Span, key: String) -> Option<Pattern> {
        if text.is_empty() {
            self.error(
                Code::InvalidGlob,
                span,
                format!("`{key}` is an empty pattern"),
            );
            return None;
        }
        // `*` already matches `/` here, so `**` means the same as `*`; the
        // glob crate would reject it outside a whole path component.
        let mut compiled = text.clone();
        while compiled.contains("**") {
            compiled = compiled.replace("**", "*");
        }
        match glob::Pattern::new(&compiled) {
            Ok(glob) => Some(Pattern::new(text, key, glob)),
            Err(err) => {
                let why = match (text.rfind('['), text.rfind(']')) {
                    (Some(open), close) if close.is_none_or(|c| c < open) => {
                        "a `[` starts a character class that is never closed with `]`".to_string()
                    }
                    _ => err.msg.to_string(),
                };
                self.error(
                    Code::InvalidGlob,
                    span,
                    format!("`{key}` is not a valid glob: {why}"),
                )
                .notes
                .push("note: globs use `*` (any run of characters), `?` (one character), `[abc]` and `[!abc]`; write `[*]` for a literal star".into());
                None
            }
        }
    }

    pub(crate) fn path_template(
        &mut self,
        path: &str,
        text: &str,
        span: Span,
    ) -> Option<PathTemplate> {
        match PathTemplate::parse(text) {
            Ok(t) => Some(t),
            Err(err) => {
                self.template_error(path, text, span, err);
                None
            }
        }
    }

    pub(crate) fn template_error(
        &mut self,
        path: &str,
        text: &str,
        span: Span,
        err: TemplateError,
    ) {
        self.diagnostics.push(err.diagnostic(path, text, span));
    }

    pub(crate) fn path_list(&mut self, path: &str, value: Value<'_>) -> Vec<Sourced<PathTemplate>> {
        self.string_list(path, value)
            .into_iter()
            .filter_map(|(text, span, key)| {
                self.path_template(&key, &text, span)
                    .map(|t| Sourced::new(t, key))
            })
            .collect()
    }

    /// A byte size: a whole number of bytes or a string like "512 MiB";
    /// zero is a `zero-limit` error unless `allow_zero`.
    pub(crate) fn size(
        &mut self,
        path: &str,
        value: Value<'_>,
        allow_unlimited: bool,
        allow_zero: bool,
    ) -> Option<Limit> {
        self.record(path, &value);
        let span = span_of(&value);
        let parsed = match (value.as_integer(), value.as_str()) {
            (Some(n), _) if n >= 0 => Ok(n as u64),
            (Some(_), _) => Err("a size cannot be negative".to_string()),
            (None, Some("unlimited")) if allow_unlimited => return Some(Limit::Unlimited),
            (None, Some(text)) => units::parse_size(text),
            (None, None) => {
                self.wrong_type(
                    path,
                    &value,
                    "a size (a number of bytes or a string like \"512 MiB\")",
                );
                return None;
            }
        };
        match parsed {
            Ok(0) if !allow_zero => {
                self.error(
                    Code::ZeroLimit,
                    span,
                    format!("`{path}` is 0, which would stop every job"),
                )
                .notes
                .push(if allow_unlimited {
                    "help: use a positive size, \"unlimited\", or remove the key".into()
                } else {
                    "help: use a positive size, or remove the key".into()
                });
                None
            }
            Ok(n) => Some(Limit::Value(n)),
            Err(why) => {
                let suggestion = value.as_str().and_then(units::suggest_size);
                let diagnostic = self.error(
                    Code::InvalidValue,
                    span,
                    format!("`{path}` is not a size: {why}"),
                );
                if let Some(suggestion) = suggestion {
                    diagnostic
                        .notes
                        .push(format!("help: did you mean \"{suggestion}\"?"));
                }
                diagnostic.notes.push("note: write a number of bytes or a string such as \"64 KiB\", \"512 MiB\", \"4.5 GiB\"".into());
                None
            }
        }
    }

    /// A positive count or "unlimited".
    pub(crate) fn limit(&mut self, path: &str, value: Value<'_>) -> Option<Limit> {
        if value.as_str() == Some("unlimited") {
            self.record(path, &value);
            return Some(Limit::Unlimited);
        }
        if value.as_str().is_some() {
            self.record(path, &value);
            let span = span_of(&value);
            let text = value.as_str().unwrap_or_default().to_string();
            self.error(
                Code::InvalidValue,
                span,
                format!("`{path}` cannot be \"{text}\""),
            )
            .notes
            .push("note: expected a positive whole number or \"unlimited\"".into());
            return None;
        }
        self.count(path, value, false).map(Limit::Value)
    }

    /// A number of seconds from `min` to `max`.
    pub(crate) fn seconds(
        &mut self,
        path: &str,
        value: Value<'_>,
        min: f64,
        max: f64,
    ) -> Option<Duration> {
        self.record(path, &value);
        let secs = match (value.as_integer(), value.as_float()) {
            (Some(n), _) => n as f64,
            (None, Some(f)) => f,
            _ => {
                self.wrong_type(path, &value, "a number of seconds");
                return None;
            }
        };
        if !(min..=max).contains(&secs) || secs.is_nan() {
            self.error(
                Code::InvalidValue,
                span_of(&value),
                format!("`{path}` must be between {min} and {max} seconds"),
            );
            return None;
        }
        Some(Duration::from_secs_f64(secs))
    }

    pub(crate) fn ports(
        &mut self,
        path: &str,
        mut value: Value<'_>,
        allow_zero: bool,
    ) -> Vec<Sourced<u16>> {
        self.record(path, &value);
        let items = match value.take() {
            ValueInner::Array(items) => items,
            other => {
                value.set(other);
                self.wrong_type(path, &value, "an array of port numbers");
                return Vec::new();
            }
        };
        let mut out: Vec<(Sourced<u16>, Span)> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            self.record(&item_path, &item);
            let span = span_of(&item);
            let Some(n) = item.as_integer() else {
                self.wrong_type(&item_path, &item, "a port number");
                continue;
            };
            let low = if allow_zero { 0 } else { 1 };
            if !(low..=65535).contains(&n) {
                self.error(
                    Code::InvalidValue,
                    span,
                    format!("`{item_path}` is {n}, not a TCP port ({low}–65535)"),
                );
                continue;
            }
            if let Some((_, first)) = out.iter().find(|(p, _)| i64::from(p.value) == n) {
                let first = first.clone();
                self.duplicate(&item_path, span, first, &n.to_string());
                continue;
            }
            out.push((Sourced::new(n as u16, item_path), span));
        }
        out.into_iter().map(|(p, _)| p).collect()
    }
}

pub(crate) fn value_type(value: &Value<'_>) -> &'static str {
    if value.as_str().is_some() {
        "a string"
    } else if value.as_integer().is_some() {
        "an integer"
    } else if value.as_float().is_some() {
        "a float"
    } else if value.as_bool().is_some() {
        "a boolean"
    } else if value.as_array().is_some() {
        "an array"
    } else {
        "a table"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_a_newline_with_the_line_it_ends() {
        let reader = Reader::new("ab\ncd\n\ne");
        let lines: Vec<usize> = (0..=9).map(|offset| reader.line_of(offset)).collect();
        // a b \n c d \n \n e, then past the end.
        assert_eq!(lines, [1, 1, 1, 2, 2, 2, 3, 4, 4, 4]);
    }
}
