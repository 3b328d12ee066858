//! `JOBWARDEN_TIMINGS=1 jobwarden run …`: where a one-shot run spends its
//! time, as one line on stderr after the job:
//!
//! ```text
//! jobwarden: timings (ms): args 0.09 · policy 0.41 · request 0.07 · signals 0.04 · host 0.62 · started 1.31 · ended 0.40 · shutdown 0.22 · total 3.16
//! ```
//!
//! Each figure is the time since the one before it, from the start of
//! `main` (what precedes it, exec and dynamic linking, is the wall time a
//! caller measures minus `total`). The benchmark's section 7 reads this line
//! for its phase breakdown; it is a measuring aid, and its wording is not a
//! stable interface.

use std::time::{Duration, Instant};

/// The environment variable that turns the line on.
pub(super) const VAR: &str = "JOBWARDEN_TIMINGS";

pub(super) struct Timings {
    /// `None` when the line is off: marking is then free.
    on: Option<On>,
}

struct On {
    start: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Timings {
    /// Started at the beginning of `main`; on when [`VAR`] is set non-empty.
    pub(super) fn start() -> Self {
        let on = std::env::var_os(VAR).is_some_and(|v| !v.is_empty());
        let now = Instant::now();
        Self {
            on: on.then(|| On {
                start: now,
                last: now,
                phases: Vec::with_capacity(12),
            }),
        }
    }

    /// Ends the phase called `name`: the time since the previous mark.
    pub(super) fn mark(&mut self, name: &'static str) {
        if let Some(on) = &mut self.on {
            let now = Instant::now();
            on.phases.push((name, now - on.last));
            on.last = now;
        }
    }

    /// The line, when on (see the module documentation).
    pub(super) fn line(&self) -> Option<String> {
        let on = self.on.as_ref()?;
        let mut parts: Vec<String> = on
            .phases
            .iter()
            .map(|(name, d)| format!("{name} {}", millis(*d)))
            .collect();
        parts.push(format!("total {}", millis(on.last - on.start)));
        Some(format!("jobwarden: timings (ms): {}", parts.join(" · ")))
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_marks_nothing_and_prints_nothing() {
        let mut t = Timings { on: None };
        t.mark("args");
        assert_eq!(t.line(), None);
    }

    #[test]
    fn on_names_each_phase_in_order_and_the_total() {
        let now = Instant::now();
        let mut t = Timings {
            on: Some(On {
                start: now,
                last: now,
                phases: Vec::new(),
            }),
        };
        t.mark("args");
        t.mark("policy");
        let line = t.line().unwrap();
        let rest = line.strip_prefix("jobwarden: timings (ms): ").unwrap();
        let names: Vec<&str> = rest
            .split(" · ")
            .map(|p| p.split(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["args", "policy", "total"]);
        for part in rest.split(" · ") {
            let value = part.split(' ').nth(1).unwrap();
            assert!(value.parse::<f64>().unwrap() >= 0.0, "{part}");
        }
    }
}
