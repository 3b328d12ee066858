//! Policy diagnostics: every problem found in a policy file, with the place it
//! was found and what would fix it.
//!
//! Loading never stops at the first problem: the loader collects every
//! diagnostic it can, then renders them all, each in a form editors and CI
//! logs understand (`path:line:col: error[code]: message`), followed by the
//! offending line, a marker under the offending text and notes with the
//! expected keys or values.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::sync::Arc;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The policy cannot be used.
    Error,
    /// The policy loads, but something deserves the admin's attention.
    Warning,
}

/// Stable, kebab-case identifiers of every kind of diagnostic. Scripts may
/// match on them; they never change meaning once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Code {
    /// The file is not valid TOML.
    TomlSyntax,
    /// A key the schema does not know.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type that is not one of the accepted values.
    InvalidValue,
    /// `version` is not one this build understands.
    UnsupportedVersion,
    /// A glob pattern that does not compile.
    InvalidGlob,
    /// A regular expression that does not compile.
    InvalidRegex,
    /// `{something}` that is not a known placeholder.
    UnknownPlaceholder,
    /// A relative path where an absolute one (or a placeholder) is needed.
    RelativePath,
    /// A path that is malformed (`..`, NUL, placeholder in the wrong place).
    InvalidPath,
    /// A limit of zero, which would stop every job.
    ZeroLimit,
    /// Limits that cannot all hold at once.
    ContradictoryLimits,
    /// The same entry listed twice.
    DuplicateEntry,
    /// A plugin lists a binary the policy does not define.
    UndefinedBinary,
    /// A name (binary, plugin, env variable) with characters it may not have.
    InvalidName,
    /// A key that is valid elsewhere but not in this section.
    NotAllowedHere,
    /// A binary path or search directory that does not exist on this machine.
    MissingOnThisMachine,
    /// A rule that can never take effect.
    NoEffect,
    /// A binary path that is a directory or not executable on this machine.
    NotExecutable,
    /// A binary's `sha256` that does not match the file on this machine.
    Sha256Mismatch,
    /// So many problems that the rest were not reported.
    TooManyProblems,
}

impl Code {
    /// The stable kebab-case name, as printed in `error[...]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TomlSyntax => "toml-syntax",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::UnsupportedVersion => "unsupported-version",
            Code::InvalidGlob => "invalid-glob",
            Code::InvalidRegex => "invalid-regex",
            Code::UnknownPlaceholder => "unknown-placeholder",
            Code::RelativePath => "relative-path",
            Code::InvalidPath => "invalid-path",
            Code::ZeroLimit => "zero-limit",
            Code::ContradictoryLimits => "contradictory-limits",
            Code::DuplicateEntry => "duplicate-entry",
            Code::UndefinedBinary => "undefined-binary",
            Code::InvalidName => "invalid-name",
            Code::NotAllowedHere => "not-allowed-here",
            Code::MissingOnThisMachine => "missing-on-this-machine",
            Code::NoEffect => "no-effect",
            Code::NotExecutable => "not-executable",
            Code::Sha256Mismatch => "sha256-mismatch",
            Code::TooManyProblems => "too-many-problems",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable identifier of the kind of problem.
    pub code: Code,
    /// One sentence naming the problem.
    pub message: String,
    /// Byte range of the offending text in the policy source, if there is one.
    #[serde(skip)]
    pub span: Option<Range<usize>>,
    /// Short text printed under the marker.
    pub label: Option<String>,
    /// Further lines: what was expected, "did you mean", how to fix it.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: Code, span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: Some(span),
            label: None,
            notes: Vec::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(code: Code, span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    /// Sets the text printed under the marker.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a note line.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The source a set of diagnostics refers to.
#[derive(Debug, Clone)]
pub struct Source {
    /// How to name the file in messages: its path, or `<embedded default policy>`.
    pub name: String,
    /// The full text.
    pub text: Arc<str>,
}

impl Source {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }

    /// Renders one diagnostic in the house format. A line wider than 160
    /// characters (`SNIPPET_CHARS`) is shown as a window around the offending
    /// column, and a message, label or note longer than 1,000 characters
    /// (`TEXT_CHARS`) is cut, so
    /// one diagnostic stays a few lines however long the offending line or
    /// key is.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let mut out = String::new();
        let severity = match diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let message = clip(&diagnostic.message);
        let Some(span) = diagnostic.span.clone() else {
            let _ = writeln!(
                out,
                "{}: {severity}[{}]: {message}",
                self.name, diagnostic.code
            );
            for note in &diagnostic.notes {
                let _ = writeln!(out, "  = {}", clip(note));
            }
            return out;
        };
        let (line, col) = self.line_col(span.start);
        let _ = writeln!(
            out,
            "{}:{line}:{col}: {severity}[{}]: {message}",
            self.name, diagnostic.code
        );
        let text = &self.text;
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        let gutter = line.to_string().len();
        // The marker covers the span on its first line, at least one column.
        let end = floor_char_boundary(text, span.end.clamp(start, line_end.max(start)));
        let pad = col - 1;
        let width = text[start..end].chars().count().max(1);
        let (snippet, pad, width) = window(line_text, pad, width);
        let _ = writeln!(out, "{:gutter$} |", "");
        let _ = writeln!(out, "{line} | {snippet}");
        let label = diagnostic
            .label
            .as_deref()
            .map(|l| format!(" {}", clip(l)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:gutter$} | {}{}{label}",
            "",
            " ".repeat(pad),
            "^".repeat(width)
        );
        for note in &diagnostic.notes {
            let _ = writeln!(out, "{:gutter$} = {}", "", clip(note));
        }
        out
    }

    /// Renders many diagnostics, separated by blank lines, errors first in
    /// file order, then warnings in file order.
    pub fn render_all(&self, diagnostics: &[Diagnostic]) -> String {
        let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
        sorted.sort_by_key(|d| (d.severity, d.span.as_ref().map_or(0, |s| s.start)));
        let mut out = String::new();
        for (i, d) in sorted.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&self.render(d));
        }
        out
    }
}

/// Lines wider than this many characters are shown as a window around the
/// offending column.
pub const SNIPPET_CHARS: usize = 160;
/// How much of a wide line the window shows before the offending column.
const SNIPPET_BEFORE: usize = 40;
/// Messages, labels and notes longer than this many characters are cut.
pub const TEXT_CHARS: usize = 1000;

/// `text`, cut to [`TEXT_CHARS`] characters with an ellipsis.
fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

/// The part of `line` to show, and the marker's padding and width in it:
/// the whole line when it is at most [`SNIPPET_CHARS`] wide, else a window
/// of that many characters starting a little before column `pad`, with an
/// ellipsis on each side where the line goes on.
fn window(line: &str, pad: usize, width: usize) -> (std::borrow::Cow<'_, str>, usize, usize) {
    if line.chars().nth(SNIPPET_CHARS).is_none() {
        return (line.into(), pad, width);
    }
    // The window is characters `from..to` of the line.
    let from = pad.saturating_sub(SNIPPET_BEFORE);
    let to = from + SNIPPET_CHARS;
    let byte = |chars: usize| {
        line.char_indices()
            .nth(chars)
            .map_or(line.len(), |(i, _)| i)
    };
    let (start, end) = (byte(from), byte(to));
    let before = if from > 0 { "…" } else { "" };
    let after = if end < line.len() { "…" } else { "" };
    let shown = format!("{before}{}{after}", &line[start..end]);
    let pad_in_window = pad - from + usize::from(from > 0);
    let room = to.saturating_sub(pad).max(1);
    (shown.into(), pad_in_window, width.min(room))
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = memchr::memchr_iter(b'\n', before.as_bytes()).count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The nearest character boundary at or before `offset` (`str`'s own is
/// newer than our minimum Rust). Offset 0 is always a boundary, so the loop
/// ends there at the latest.
fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The closest of `candidates` to `input`, if one is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // No key or value is this long: nothing can be a typo of it, and
    // comparing it would cost time quadratic in its length.
    if input.len() > 256 {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let source = Source {
            name: "p.toml".into(),
            text: "a = 1\nbé = 2\n".into(),
        };
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(6), (2, 1));
        // "b", "é" (two bytes), " " → the "=" is the 4th character.
        assert_eq!(source.line_col(10), (2, 4));
        // An offset inside "é" counts from the character's start.
        assert_eq!(source.line_col(8), (2, 2));
        assert_eq!(floor_char_boundary(&source.text, 8), 7);
        assert_eq!(floor_char_boundary(&source.text, 7), 7);
    }

    #[test]
    fn every_code_prints_as_it_serialises() {
        let codes = [
            Code::TomlSyntax,
            Code::UnknownKey,
            Code::MissingKey,
            Code::WrongType,
            Code::InvalidValue,
            Code::UnsupportedVersion,
            Code::InvalidGlob,
            Code::InvalidRegex,
            Code::UnknownPlaceholder,
            Code::RelativePath,
            Code::InvalidPath,
            Code::ZeroLimit,
            Code::ContradictoryLimits,
            Code::DuplicateEntry,
            Code::UndefinedBinary,
            Code::InvalidName,
            Code::NotAllowedHere,
            Code::MissingOnThisMachine,
            Code::NoEffect,
        ];
        for code in codes {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(code.to_string(), code.as_str());
        }
    }

    #[test]
    fn renders_with_and_without_a_span() {
        let source = Source {
            name: "p.toml".into(),
            text: "a = 1\nbb = 2\r\n".into(),
        };
        let d = Diagnostic::warning(Code::NoEffect, 6..8, "no effect")
            .with_label("here")
            .with_note("note: one")
            .with_note("help: two");
        assert_eq!(
            source.render(&d),
            "p.toml:2:1: warning[no-effect]: no effect\n  |\n2 | bb = 2\n  | ^^ here\n  = note: one\n  = help: two\n"
        );
        let mut d = Diagnostic::error(Code::MissingKey, 0..0, "nothing to point at")
            .with_note("help: add it");
        d.span = None;
        assert_eq!(
            source.render(&d),
            "p.toml: error[missing-key]: nothing to point at\n  = help: add it\n"
        );
        // An empty span still gets a marker; one past the end of the text
        // points at the last line.
        let empty = Diagnostic::error(Code::TomlSyntax, 14..14, "at the end");
        assert!(
            source.render(&empty).contains("3 | \n  | ^\n"),
            "{}",
            source.render(&empty)
        );
    }

    #[test]
    fn a_wide_line_is_shown_as_a_window_with_an_ellipsis_where_it_goes_on() {
        // 300 characters, every one two bytes wide, so a byte/character
        // mix-up shows.
        let line: String = (0..300)
            .map(|i| char::from_u32(0xe0 + i % 26).unwrap())
            .collect();
        let chars = |from: usize, to: usize| -> String {
            line.chars().skip(from).take(to - from).collect()
        };
        // Up to SNIPPET_CHARS wide: the whole line, the marker untouched.
        let narrow = chars(0, SNIPPET_CHARS);
        assert_eq!(window(&narrow, 150, 30), (narrow.as_str().into(), 150, 30));
        // The column near the start: no ellipsis before, the marker where it was.
        assert_eq!(
            window(&line, 10, 3),
            (format!("{}…", chars(0, 160)).into(), 10, 3)
        );
        // In the middle: ellipses on both sides, the marker shifted past the
        // leading one and cut at the window's end.
        assert_eq!(
            window(&line, 100, 200),
            (format!("…{}…", chars(60, 220)).into(), 41, 120)
        );
        // Near the end: the window reaches the line's end, so no ellipsis after.
        assert_eq!(
            window(&line, 290, 5),
            (format!("…{}", chars(250, 300)).into(), 41, 5)
        );
        // A window ending exactly at the line's end has no ellipsis after.
        assert_eq!(
            window(&line, 180, 1),
            (format!("…{}", chars(140, 300)).into(), 41, 1)
        );
    }

    #[test]
    fn errors_come_first_then_warnings_each_in_file_order() {
        let source = Source {
            name: "p.toml".into(),
            text: "a = 1\nb = 2\nc = 3\n".into(),
        };
        let all = [
            Diagnostic::warning(Code::NoEffect, 0..1, "w1"),
            Diagnostic::error(Code::UnknownKey, 12..13, "e3"),
            Diagnostic::error(Code::UnknownKey, 6..7, "e2"),
        ];
        let rendered = source.render_all(&all);
        let order: Vec<&str> = rendered
            .lines()
            .filter_map(|l| l.rsplit(": ").next().filter(|m| m.len() == 2))
            .collect();
        assert_eq!(order, ["e2", "e3", "w1"]);
        assert_eq!(rendered.matches("\n\np.toml").count(), 2, "{rendered}");
        let report = crate::policy::Report {
            source,
            diagnostics: all.to_vec(),
        };
        assert_eq!(report.error_count(), 2);
        assert_eq!(report.warning_count(), 1);
        assert_eq!(report.to_string(), rendered);
        // `check` prints both counts: each counted on its own.
        let counts = |diagnostics: Vec<Diagnostic>| {
            let report = crate::policy::Report {
                source: report.source.clone(),
                diagnostics,
            };
            (report.error_count(), report.warning_count())
        };
        assert_eq!(counts(vec![]), (0, 0));
        assert_eq!(counts(vec![all[1].clone(), all[2].clone()]), (2, 0));
        assert_eq!(counts(vec![all[0].clone(), all[0].clone()]), (0, 2));
    }

    #[test]
    fn suggestions_need_to_be_close() {
        let keys = ["timeout_secs", "cpu_secs", "memory"];
        assert_eq!(did_you_mean("timeout_sec", keys), Some("timeout_secs"));
        assert_eq!(did_you_mean("memroy", keys), Some("memory"));
        assert_eq!(did_you_mean("zzz", keys), None);
        // "Close" is a Jaro-Winkler score above 0.8, not at it: "ab" and
        // "abcdefgh" score exactly 0.8 (Jaro 0.75, two shared leading
        // characters).
        assert_eq!(strsim::jaro_winkler("ab", "abcdefgh"), 0.8);
        assert_eq!(did_you_mean("ab", ["abcdefgh"]), None);
        assert_eq!(did_you_mean("abcdefg", ["abcdefgh"]), Some("abcdefgh"));
        // Inputs up to 256 bytes are compared; longer ones never are.
        let long = "k".repeat(255);
        let candidate = format!("{long}s");
        assert_eq!(
            did_you_mean(&format!("{long}z"), [candidate.as_str()]),
            Some(candidate.as_str())
        );
        assert_eq!(
            did_you_mean(&format!("{long}sz"), [candidate.as_str()]),
            None
        );
    }
}
