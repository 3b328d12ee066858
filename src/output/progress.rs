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
    /// A `::progress::` line (even one that does not parse): it updates
    /// progress and is not shown.
    Consumed,
    /// An ordinary line, shown as output (patterns may still have matched it).
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
    /// A tracker that tries `patterns` (policy `progress.patterns`) on every
    /// line besides the protocol.
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

    /// Whether there is progress [`ProgressTracker::take_update`] would return.
    pub fn has_update(&self) -> bool {
        self.changed
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
    fn protocol_numbers_at_their_edges() {
        for (rest, want) in [
            ("0", Some((Some(0), None))),
            ("100", Some((Some(100), None))),
            ("100%", Some((Some(100), None))),
            ("99.9", Some((Some(99), None))),
            ("100.5", None),
            ("7/7", Some((Some(100), None))),
            ("0/7", Some((Some(0), None))),
            ("8/7", None),
            ("1/0", None),
            ("1/3 step", Some((Some(33), Some("step".to_string())))),
            (
                "  12   two words  ",
                Some((Some(12), Some("two words".to_string()))),
            ),
            ("a/b text", Some((None, Some("a/b text".to_string())))),
            (".5", Some((None, Some(".5".to_string())))),
            ("5x", Some((None, Some("5x".to_string())))),
            ("", None),
            ("   ", None),
        ] {
            assert_eq!(parse_protocol(rest), want, "{rest:?}");
        }
        assert_eq!(parse_percent(" 42% "), Some(42));
        assert_eq!(parse_percent("-1"), None);
        assert_eq!(parse_percent("x"), None);
        assert_eq!(
            ratio(u64::MAX, u64::MAX),
            Some(1),
            "saturates rather than overflows"
        );
        assert_eq!(ratio(1, 2), Some(50));
    }

    #[test]
    fn only_changes_are_updates() {
        // `has_update` (which the host polls to decide whether to send an
        // event) agrees with `take_update` at every step.
        let take = |t: &mut ProgressTracker| {
            let has = t.has_update();
            let update = t.take_update();
            assert_eq!(has, update.is_some(), "has_update before {update:?}");
            assert!(!t.has_update(), "taken");
            update
        };
        let mut t = tracker(&[]);
        assert!(!t.declared());
        assert_eq!(take(&mut t), None);
        t.observe("::progress:: 10");
        assert!(t.declared());
        assert_eq!(take(&mut t), Some((Some(10), None)));
        t.observe("::progress:: 10");
        assert_eq!(take(&mut t), None, "the same percent again is no update");
        t.observe("::progress:: step one");
        assert_eq!(take(&mut t), Some((Some(10), Some("step one".into()))));
        t.observe("::progress:: step one");
        assert_eq!(take(&mut t), None, "the same step again is no update");
        t.observe("::progress:: 10 \u{1b}[2J");
        assert_eq!(
            take(&mut t),
            None,
            "a step that sanitises to nothing is none"
        );
        let mut only_step = tracker(&[]);
        only_step.observe("::progress:: working");
        assert!(only_step.declared());
        assert_eq!(only_step.percent, None);
    }

    #[test]
    fn which_lines_may_carry_progress() {
        let plain = tracker(&[]);
        for (line, want) in [
            (":x", true),
            ("\u{1b}[1m::progress::", true),
            ("x:", false),
            ("", false),
        ] {
            assert_eq!(plain.may_use(line), want, "{line:?}");
            assert_eq!(plain.may_use_bytes(line.as_bytes()), want, "{line:?}");
        }
        let patterned = tracker(&["(?P<percent>\\d+)%"]);
        assert!(patterned.may_use("x"));
        assert!(patterned.may_use_bytes(b"x"));
    }

    #[test]
    fn a_pattern_that_captures_nothing_useful_lets_the_next_one_try() {
        let mut t = tracker(&[
            r"(?P<percent>\d+)% of(?: (?P<step>x+))?",
            r"(?P<current>\d+) of (?P<total>\d+)",
        ]);
        // The first matches, with a percent out of range and no step:
        // nothing; the second is tried and counts.
        t.observe("300% of 400 and 3 of 4");
        assert_eq!(t.percent, Some(75));
        assert_eq!(t.step, None);
        // A count without a total is nothing.
        let mut t = tracker(&[r"(?P<current>\d+)(?: of (?P<total>\d+))?"]);
        t.observe("5");
        assert!(!t.declared());
        t.observe("5 of 10");
        assert_eq!(t.percent, Some(50));
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
