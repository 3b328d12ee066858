//! What was actually enforced for one job, item by item.
//!
//! Enforcement is reported, never assumed: every job carries a report that
//! says, for each thing its plan asked for, whether the machine applied it,
//! how, and if not, why. With `enforcement = "required"`, a report with a
//! required item not fully enforced stops the job before it executes.

use serde::Serialize;
use std::fmt;

/// How well one item was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Applied as the plan asked.
    Enforced,
    /// Applied, but weaker than the plan asked (the detail says how).
    Partial,
    /// Not applied (the detail says why).
    NotEnforced,
    /// The plan did not ask for it.
    NotRequested,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Enforced => "enforced",
            Status::Partial => "partial",
            Status::NotEnforced => "NOT enforced",
            Status::NotRequested => "not requested",
        }
    }
}

/// One enforced (or not) item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Stable name: `filesystem`, `network`, `scopes`, `cpu`, `memory`,
    /// `processes`, `open_files`, `file_size`, `core_dumps`, `session`,
    /// `capabilities`, `no_new_privs`, `tree_cleanup`, ...
    pub name: &'static str,
    pub status: Status,
    /// A few words for the one-line summary (`memory 4 GiB (cgroup)`).
    pub short: String,
    /// How it was applied, or why not.
    pub detail: String,
    /// Whether `enforcement = "required"` refuses the job when this is not
    /// fully enforced.
    pub required: bool,
}

/// The per-job enforcement report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementReport {
    /// `linux`, `macos`, `windows`, ...
    pub platform: &'static str,
    pub items: Vec<Item>,
    /// Paths of the plan that did not exist when the job started (granting nothing).
    pub skipped_paths: Vec<String>,
}

impl EnforcementReport {
    pub fn new(platform: &'static str) -> Self {
        Self {
            platform,
            items: Vec::new(),
            skipped_paths: Vec::new(),
        }
    }

    /// Records an item; `short` appears in the one-line summary when it
    /// is enforced, `detail` everywhere else.
    pub fn add(
        &mut self,
        name: &'static str,
        status: Status,
        short: impl Into<String>,
        detail: impl Into<String>,
        required: bool,
    ) {
        self.items.push(Item {
            name,
            status,
            short: short.into(),
            detail: detail.into(),
            required,
        });
    }

    /// The item called `name`, if recorded.
    /// Records a limit the policy left unlimited.
    pub fn unlimited(&mut self, name: &'static str, key: &str) {
        self.add(
            name,
            Status::NotRequested,
            format!("{name} unlimited"),
            format!("unlimited ({key})"),
            false,
        )
    }

    /// Records that the policy asked for no network restriction.
    pub fn network_unrestricted(&mut self) {
        self.add(
            "network",
            Status::NotRequested,
            "network unrestricted",
            "unrestricted by the policy",
            false,
        )
    }

    pub fn item(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Items the plan requires that were not fully enforced.
    pub fn missing_required(&self) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| i.required && matches!(i.status, Status::Partial | Status::NotEnforced))
            .collect()
    }

    /// Items not fully enforced, required or not.
    pub fn weaker_than_asked(&self) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| matches!(i.status, Status::Partial | Status::NotEnforced))
            .collect()
    }

    /// The one-line form written as a `system` log line after `JobStarted`:
    /// what was enforced in a few words, then everything weaker than asked
    /// with the reason.
    pub fn summary_line(&self) -> String {
        let enforced: Vec<&str> = self
            .items
            .iter()
            .filter(|i| i.status == Status::Enforced)
            .map(|i| i.short.as_str())
            .collect();
        let mut out = format!("jobwarden: enforced: {}", enforced.join(", "));
        for item in self.weaker_than_asked() {
            out.push_str(&format!(
                "; {} {}: {}",
                item.name,
                item.status.word(),
                item.detail
            ));
        }
        if !self.skipped_paths.is_empty() {
            out.push_str(&format!(
                "; missing paths skipped: {}",
                self.skipped_paths.join(", ")
            ));
        }
        out
    }

    /// Why a `required` policy refuses this job, if it does.
    pub fn refusal(&self) -> Option<String> {
        let missing = self.missing_required();
        if missing.is_empty() {
            return None;
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|i| format!("{} {} ({})", i.name, i.status.word(), i.detail))
            .collect();
        Some(format!(
            "the policy requires full confinement, but this machine cannot apply it: {}; set `enforcement = \"best_effort\"` to run anyway with what can be applied",
            parts.join("; ")
        ))
    }
}

impl fmt::Display for EnforcementReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "enforcement on {}:", self.platform)?;
        for item in &self.items {
            writeln!(
                f,
                "  {:<14} {:<13} {}{}",
                item.name,
                item.status.word(),
                item.detail,
                if item.required { "" } else { "  [advisory]" }
            )?;
        }
        for path in &self.skipped_paths {
            writeln!(f, "  skipped (does not exist): {path}")?;
        }
        Ok(())
    }
}
