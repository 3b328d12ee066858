//! Progress a job declares in its own output.
//!
//! Two ways, both documented in the README:
//! - the line protocol: a line starting with `::progress::`, then a percent
//!   (`42` or `42%`), a count (`3/7`) or nothing, then an optional step text.
//!   Protocol lines are consumed: they never show up as log lines;
//! - the policy's `progress.patterns`: regexes tried on every line, with
//!   named groups `percent`, `step`, or `current` and `total`.
//!
//! A percent outside 0–100, a count with a zero total or a malformed line is
//! ignored; nothing here can fail.

use crate::output::sanitize::Sanitizer;
use crate::policy::{ProgressPattern, Sanitize, Sourced};

/// The protocol marker.
pub const PROTOCOL_PREFIX: &str = "::progress::";

/// Longest step text kept, in characters.
const MAX_STEP_CHARS: usize = 200;

/// Whether a line was consumed by the protocol or is shown as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineUse {
    Consumed,
    Shown,
}

/// The latest progress a job declared.
#[derive(Debug, Clone, Default)]
pub struct ProgressTracker {
    patterns: Vec<regex::Regex>,
    /// The latest percent, if any was declared.
    pub percent: Option<u8>,
    /// The latest step text, if any was declared.
    pub step: Option<String>,
    /// True when something changed since [`ProgressTracker::take_update`].
    changed: bool,
}

impl ProgressTracker {
    pub fn new(patterns: &[Sourced<ProgressPattern>]) -> Self {
        Self {
            patterns: patterns.iter().map(|p| p.value.regex.clone()).collect(),
            ..Self::default()
        }
    }

    /// Whether `line` could be a protocol line or match a pattern; a cheap
    /// test that lets most lines skip progress parsing entirely.
    pub fn may_use(&self, line: &str) -> bool {
        !self.patterns.is_empty() || line.starts_with(':') || line.starts_with('\u{1b}')
    }

    /// [`Self::may_use`] on raw bytes.
    pub fn may_use_bytes(&self, line: &[u8]) -> bool {
        !self.patterns.is_empty() || line.first().is_some_and(|b| *b == b':' || *b == 0x1b)
    }

    /// Looks at one output line (escape sequences already removed).
    pub fn observe(&mut self, line: &str) -> LineUse {
        if let Some(rest) = line.strip_prefix(PROTOCOL_PREFIX) {
            if let Some((percent, step)) = parse_protocol(rest) {
                self.update(percent, step);
            }
            return LineUse::Consumed;
        }
        for regex in &self.patterns {
            let Some(caps) = regex.captures(line) else {
                continue;
            };
            let percent = caps
                .name("percent")
                .and_then(|m| parse_percent(m.as_str()))
                .or_else(|| {
                    let current = caps.name("current")?.as_str().parse::<u64>().ok()?;
                    let total = caps.name("total")?.as_str().parse::<u64>().ok()?;
                    ratio(current, total)
                });
            let step = caps.name("step").map(|m| m.as_str().to_string());
            if percent.is_some() || step.is_some() {
                self.update(percent, step);
                break;
            }
        }
        LineUse::Shown
    }

    fn update(&mut self, percent: Option<u8>, step: Option<String>) {
        if percent.is_some() && percent != self.percent {
            self.percent = percent;
            self.changed = true;
        }
        if let Some(step) = step {
            let step = clean_step(&step);
            if !step.is_empty() && self.step.as_deref() != Some(step.as_str()) {
                self.step = Some(step);
                self.changed = true;
            }
        }
    }

    /// The latest declared progress, if it changed since the last call.
    pub fn take_update(&mut self) -> Option<(Option<u8>, Option<String>)> {
        if std::mem::take(&mut self.changed) {
            Some((self.percent, self.step.clone()))
        } else {
            None
        }
    }

    /// True once the job has declared anything.
    pub fn declared(&self) -> bool {
        self.percent.is_some() || self.step.is_some()
    }
}

fn parse_protocol(rest: &str) -> Option<(Option<u8>, Option<String>)> {
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    let (first, tail) = match rest.split_once(char::is_whitespace) {
        Some((first, tail)) => (first, tail.trim()),
        None => (rest, ""),
    };
    let step = (!tail.is_empty()).then(|| tail.to_string());
    if let Some((current, total)) = first.split_once('/')
        && let (Ok(current), Ok(total)) = (current.parse::<u64>(), total.parse::<u64>())
    {
        return ratio(current, total).map(|p| (Some(p), step));
    }
    if first
        .trim_end_matches('%')
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        && first.chars().next().is_some_and(|c| c.is_ascii_digit())
    {
        return parse_percent(first).map(|p| (Some(p), step));
    }
    // No number: the whole text is the step.
    Some((None, Some(rest.to_string())))
}

fn parse_percent(text: &str) -> Option<u8> {
    let value: f64 = text.trim().trim_end_matches('%').parse().ok()?;
    (0.0..=100.0)
        .contains(&value)
        .then_some(value.floor() as u8)
}

fn ratio(current: u64, total: u64) -> Option<u8> {
    if total == 0 || current > total {
        return None;
    }
    Some((current.saturating_mul(100) / total) as u8)
}

fn clean_step(step: &str) -> String {
    let clean = Sanitizer::new(Sanitize::Strip, false).line(step.trim());
    clean.chars().take(MAX_STEP_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(patterns: &[&str]) -> ProgressTracker {
        let patterns: Vec<_> = patterns
            .iter()
            .map(|p| {
                Sourced::new(
                    ProgressPattern {
                        regex: regex::Regex::new(p).unwrap(),
                    },
                    "k",
                )
            })
            .collect();
        ProgressTracker::new(&patterns)
    }

    #[test]
    fn protocol_lines() {
        let mut t = tracker(&[]);
        let cases: [(&str, Option<u8>, Option<&str>); 6] = [
            (
                "::progress:: 42 Compiling module 3/7",
                Some(42),
                Some("Compiling module 3/7"),
            ),
            ("::progress::50%", Some(50), Some("Compiling module 3/7")),
            ("::progress:: 3/4 linking", Some(75), Some("linking")),
            (
                "::progress:: uploading artefacts",
                Some(75),
                Some("uploading artefacts"),
            ),
            (
                "::progress:: 101 too far",
                Some(75),
                Some("uploading artefacts"),
            ),
            (
                "::progress:: 5/0 nonsense",
                Some(75),
                Some("uploading artefacts"),
            ),
        ];
        for (line, percent, step) in cases {
            assert_eq!(t.observe(line), LineUse::Consumed, "{line}");
            assert_eq!(t.percent, percent, "{line}");
            assert_eq!(t.step.as_deref(), step, "{line}");
        }
        assert_eq!(t.observe("::progress::"), LineUse::Consumed);
        assert_eq!(t.observe("ordinary"), LineUse::Shown);
    }

    #[test]
    fn policy_patterns() {
        let mut t = tracker(&[
            r"Building \[[ =>]*\] (?P<current>\d+)/(?P<total>\d+)(?::\s*(?P<step>.*))?",
            r"(?P<percent>\d+)% done",
        ]);
        assert_eq!(
            t.observe("   Building [=====>     ] 123/456: serde, tokio"),
            LineUse::Shown
        );
        assert_eq!(t.percent, Some(26));
        assert_eq!(t.step.as_deref(), Some("serde, tokio"));
        assert!(t.take_update().is_some());
        assert!(t.take_update().is_none());
        t.observe("77% done");
        assert_eq!(
            t.take_update(),
            Some((Some(77), Some("serde, tokio".into())))
        );
        t.observe("250% done");
        assert_eq!(t.percent, Some(77));
    }

    #[test]
    fn step_text_is_sanitised_and_bounded() {
        let mut t = tracker(&[]);
        t.observe(&format!("::progress:: \u{1b}]0;x\u{7}{}", "y".repeat(500)));
        let step = t.step.unwrap();
        assert!(!step.contains('\u{1b}'));
        assert_eq!(step.chars().count(), MAX_STEP_CHARS);
    }
}
