//! The results of `jobwarden test` as CI systems read them: the closing
//! summary line, JUnit XML and JSON.
//!
//! The invariant: every format counts the same way. A case is passed,
//! failed or skipped once `--require-live` has decided what a case this
//! machine could not prove is ([`status`]); a test file that could not be
//! used is an error of its own, never a passed case. The JUnit XML uses only
//! the elements and attributes of the JUnit schema Jenkins publishes
//! (`junit-10.xsd`, which GitLab, GitHub's test reporters and most CI
//! systems read): `testsuites`, `testsuite`, `properties`/`property`,
//! `testcase`, `failure`, `error`, `skipped`, `system-err`.

use super::{FileResult, Verdict};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;

/// What became of one test file.
#[derive(Debug, Clone)]
pub enum FileOutcome {
    /// It loaded and its cases ran; `result.error` says when its policy or
    /// workspace could not be set up (every case then failed).
    Ran(FileResult),
    /// It could not be loaded; why, rendered.
    Unusable {
        /// The test file.
        file: PathBuf,
        /// Why it could not be loaded, rendered.
        error: String,
    },
}

/// A case's final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// It passed.
    Passed,
    /// It failed: what was expected and what happened.
    Failed(String),
    /// It did not run, or ran without proving anything: why.
    Skipped(String),
}

/// The status of a case with `verdict`: a case this machine could not
/// prove is skipped, or failed under `--require-live`.
pub fn status(verdict: &Verdict, require_live: bool) -> Status {
    match verdict {
        Verdict::Pass => Status::Passed,
        Verdict::Fail(why) => Status::Failed(why.clone()),
        Verdict::Skip(why) => Status::Skipped(why.clone()),
        Verdict::CannotConfine(why) if require_live => Status::Failed(format!(
            "not proven on this machine (--require-live): {why}"
        )),
        Verdict::CannotConfine(why) => Status::Skipped(why.clone()),
    }
}

/// The counts of a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed (including every case of a file whose policy could
    /// not be set up).
    pub failed: usize,
    /// Cases skipped on this machine.
    pub skipped: usize,
    /// Test files that could not be used (or whose policy could not).
    pub unusable: usize,
}

impl Summary {
    /// Counts `outcomes`.
    pub fn of(outcomes: &[FileOutcome], require_live: bool) -> Self {
        let mut summary = Self::default();
        for outcome in outcomes {
            match outcome {
                FileOutcome::Unusable { .. } => summary.unusable += 1,
                FileOutcome::Ran(result) => {
                    summary.unusable += usize::from(result.error.is_some());
                    for case in &result.results {
                        match status(&case.verdict, require_live) {
                            Status::Passed => summary.passed += 1,
                            Status::Failed(_) => summary.failed += 1,
                            Status::Skipped(_) => summary.skipped += 1,
                        }
                    }
                }
            }
        }
        summary
    }

    /// `N passed, N failed, N skipped`: the closing line CI systems read.
    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The run as one JSON object: every file with its cases, and the summary.
pub fn json(
    outcomes: &[FileOutcome],
    require_live: bool,
    filtered_out: usize,
) -> serde_json::Value {
    let files: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            FileOutcome::Unusable { file, error } => json!({
                "file": file,
                "error": error,
                "cases": [],
            }),
            FileOutcome::Ran(result) => json!({
                "file": result.file,
                "policy": result.policy,
                "error": result.error,
                "cases": result.results.iter().map(|case| {
                    let (status, message) = match status(&case.verdict, require_live) {
                        Status::Passed => ("passed", None),
                        Status::Failed(why) => ("failed", Some(why)),
                        Status::Skipped(why) => ("skipped", Some(why)),
                    };
                    json!({
                        "name": case.name,
                        "line": case.line,
                        "kind": if case.live { "live" } else { "static" },
                        "status": status,
                        "message": message,
                        "time_secs": case.duration.as_secs_f64(),
                    })
                }).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let summary = Summary::of(outcomes, require_live);
    json!({
        "files": files,
        "summary": {
            "passed": summary.passed,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "unusable_files": summary.unusable,
            "filtered_out": filtered_out,
        },
    })
}

/// The run as JUnit XML: one `testsuite` per test file, one `testcase` per
/// case; a file that could not be used is a suite with one `error`.
pub fn junit(outcomes: &[FileOutcome], require_live: bool) -> String {
    let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    let hostname = sysinfo::System::host_name().unwrap_or_else(|_| "localhost".into());
    let summary = Summary::of(outcomes, require_live);
    let total_time: f64 = outcomes
        .iter()
        .filter_map(|o| match o {
            FileOutcome::Ran(r) => Some(
                r.results
                    .iter()
                    .map(|c| c.duration.as_secs_f64())
                    .sum::<f64>(),
            ),
            FileOutcome::Unusable { .. } => None,
        })
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"jobwarden test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{total_time:.3}\">",
        summary.passed + summary.failed + summary.skipped + unusable_cases(outcomes),
        summary.failed,
        unusable_cases(outcomes),
    );
    for (id, outcome) in outcomes.iter().enumerate() {
        match outcome {
            FileOutcome::Unusable { file, error } => {
                let name = attr(&file.display().to_string());
                let _ = writeln!(
                    out,
                    "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\" timestamp=\"{timestamp}\" hostname=\"{}\" id=\"{id}\">",
                    attr(&hostname)
                );
                let _ = writeln!(
                    out,
                    "    <testcase name=\"the test file loads\" classname=\"{name}\" time=\"0.000\">"
                );
                let _ = writeln!(
                    out,
                    "      <error message=\"{}\" type=\"unusable-test-file\">{}</error>",
                    attr(first_line(error)),
                    text(error)
                );
                out.push_str("    </testcase>\n  </testsuite>\n");
            }
            FileOutcome::Ran(result) => {
                suite(&mut out, result, id, require_live, &timestamp, &hostname)
            }
        }
    }
    out.push_str("</testsuites>\n");
    out
}

/// The testcases JUnit gets for files that could not be used: one each.
fn unusable_cases(outcomes: &[FileOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, FileOutcome::Unusable { .. }))
        .count()
}

fn suite(
    out: &mut String,
    result: &FileResult,
    id: usize,
    require_live: bool,
    timestamp: &str,
    hostname: &str,
) {
    let name = attr(&result.file.display().to_string());
    let statuses: Vec<Status> = result
        .results
        .iter()
        .map(|c| status(&c.verdict, require_live))
        .collect();
    let count = |f: fn(&Status) -> bool| statuses.iter().filter(|s| f(s)).count();
    let time: f64 = result
        .results
        .iter()
        .map(|c| c.duration.as_secs_f64())
        .sum();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{time:.3}\" timestamp=\"{timestamp}\" hostname=\"{}\" id=\"{id}\">",
        statuses.len(),
        count(|s| matches!(s, Status::Failed(_))),
        count(|s| matches!(s, Status::Skipped(_))),
        attr(hostname),
    );
    let _ = writeln!(
        out,
        "    <properties>\n      <property name=\"policy\" value=\"{}\"/>\n    </properties>",
        attr(&result.policy)
    );
    for (case, status) in result.results.iter().zip(&statuses) {
        let kind = if case.live { "live" } else { "static" };
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{name}.{kind}\" time=\"{:.3}\"",
            attr(&case.name),
            case.duration.as_secs_f64(),
        );
        match status {
            Status::Passed => out.push_str("/>\n"),
            Status::Failed(why) => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
                    attr(why),
                    text(&format!("{}:{}: {why}", result.file.display(), case.line))
                );
            }
            Status::Skipped(why) => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    attr(why)
                );
            }
        }
    }
    // A policy or workspace that could not be set up failed every case
    // ("not run"); what went wrong is the suite's error output.
    if let Some(error) = &result.error {
        let _ = writeln!(out, "    <system-err>{}</system-err>", text(error));
    }
    out.push_str("  </testsuite>\n");
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Text as XML character data: markup escaped, and characters XML 1.0
/// cannot hold (control characters from a job's output) written as
/// escapes, so the file always parses.
fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.extend(c.escape_unicode())
            }
            c => out.push(c),
        }
    }
    out
}

/// Text as an XML attribute value (in double quotes): also quotes and line
/// breaks escaped, which attribute normalisation would otherwise fold.
fn attr(raw: &str) -> String {
    text(raw)
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_escapes_markup_and_control_characters() {
        assert_eq!(text("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(text("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(attr("say \"hi\"\n"), "say &quot;hi&quot;&#10;");
    }
}
