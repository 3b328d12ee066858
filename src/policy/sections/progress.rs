//! `[progress]`: resource sampling and the patterns that turn output lines
//! into progress events.

use crate::policy::diagnostic::Code;
use crate::policy::model::Sourced;
use crate::policy::section::Section;
use regex::Regex;
use std::time::Duration;

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
    /// The compiled regex, with `percent` and/or `step` groups.
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

impl ProgressLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        let interval = s
            .integer("interval_ms")
            .map(|ms| Sourced::new(Duration::from_millis(ms.value), ms.key));
        let sample = s.flag("sample");
        let mut patterns = Vec::new();
        for (regex, span, key) in s.regexes("patterns") {
            // A pattern is only useful if it captures something progress is
            // made of.
            let names: Vec<&str> = regex.capture_names().flatten().collect();
            let counts = names.contains(&"current") && names.contains(&"total");
            if !names.contains(&"percent") && !names.contains(&"step") && !counts {
                s.reader()
                    .error(
                        Code::InvalidRegex,
                        span,
                        format!(
                            "`{key}` has no named group `percent`, `step`, or `current` and `total`"
                        ),
                    )
                    .notes
                    .push("help: name what to capture, e.g. \"(?P<percent>\\\\d+)%\"".into());
                continue;
            }
            patterns.push(Sourced::new(ProgressPattern { regex }, key));
        }
        Self {
            interval,
            sample,
            patterns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_equal_when_their_regexes_are_written_alike() {
        // Public API (an embedder comparing two loaded policies' patterns):
        // a pattern is its text, so the same text is equal and other text
        // is not. Nothing in the crate compares them itself.
        let pattern = |text: &str| ProgressPattern {
            regex: Regex::new(text).unwrap(),
        };
        let percent = r"(?P<percent>\d+)%";
        assert_eq!(pattern(percent), pattern(percent));
        assert_ne!(pattern(percent), pattern(r"step (?P<step>\d+)"));
    }
}
