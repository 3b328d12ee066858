//! What was actually enforced for one job, item by item.
//!
//! Enforcement is reported, never assumed: every job carries a report that
//! says, for each thing its plan asked for, whether the machine applied it,
//! how, and if not, why. Each item is written by the layer that did the work
//! (see `layer.rs`), from the outcome of that work. With `enforcement =
//! "required"`, a report with a required item not fully enforced stops the
//! job before it executes.

use crate::policy::{Enforcement, EnforcementGroup, EnforcementPolicy};
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
    /// The word used in summaries and `explain`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Enforced => "enforced",
            Status::Partial => "partial",
            Status::NotEnforced => "NOT enforced",
            Status::NotRequested => "not requested",
        }
    }

    /// Weaker than the plan asked: partial or not enforced.
    pub fn is_weaker(self) -> bool {
        matches!(self, Status::Partial | Status::NotEnforced)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.word())
    }
}

/// Whether an item weaker than asked refuses the job under `enforcement =
/// "required"` (rust-landlock's `CompatLevel` in spirit: the requirement is
/// a value, never a positional `bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Part of the confinement the plan asked for: `required` refuses the
    /// job when it is weaker than asked.
    Required,
    /// Information only (a cgroup that could not be removed, a crash dump
    /// setting): never refuses a job.
    Advisory,
}

macro_rules! item_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What can be enforced, one variant per report item. The order of
        /// the variants is the order of a report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum ItemKind {
            $($(#[$doc])* $variant,)*
        }

        impl ItemKind {
            /// Every kind, in report order.
            pub const ALL: &'static [ItemKind] = &[$(ItemKind::$variant,)*];

            /// The stable name used in reports, JSON and `jobwarden test`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ItemKind::$variant => $name,)*
                }
            }
        }
    };
}

item_kinds! {
    /// Filesystem access (Landlock on Linux).
    Filesystem => "filesystem",
    /// Nothing the job can write can be executed (writable roots mounted
    /// `noexec` in the job's mount namespace).
    WriteXorExecute => "write_xor_execute",
    /// Protected paths inside writable roots stay read-only.
    ProtectedPaths => "protected_paths",
    /// Anonymous memory files cannot be executed.
    MemfdExec => "memfd_exec",
    /// Network access (TCP ports through Landlock on Linux).
    Network => "network",
    /// Which kinds of socket the job may create (UDP, raw, netlink, …).
    Sockets => "sockets",
    /// Pathname UNIX sockets.
    UnixSockets => "unix_sockets",
    /// Signals and abstract UNIX sockets confined to the job.
    Scopes => "scopes",
    /// CPU time.
    Cpu => "cpu",
    /// Memory of the whole tree.
    Memory => "memory",
    /// Processes of the whole tree.
    Processes => "processes",
    /// Open files per process.
    OpenFiles => "open_files",
    /// Size of any file written.
    FileSize => "file_size",
    /// Core (crash) dumps.
    CoreDumps => "core_dumps",
    /// Own session and process group, no terminal.
    Session => "session",
    /// Only stdio inherited.
    Descriptors => "descriptors",
    /// The job dies with the host.
    ParentDeath => "parent_death",
    /// No capabilities.
    Capabilities => "capabilities",
    /// `no_new_privs`.
    NoNewPrivs => "no_new_privs",
    /// No setuid or setgid bit can be set.
    SetuidBits => "setuid_bits",
    /// No new namespaces (user, mount, network, …) and no mounts.
    Namespaces => "namespaces",
    /// Nothing the job started survives it.
    TreeCleanup => "tree_cleanup",
    /// The opt-in system call filter.
    Seccomp => "seccomp",
    /// The executed file is the one whose sha256 the policy pins.
    BinaryPin => "binary_pin",
    /// Problems met creating the job's cgroups (advisory).
    Cgroup => "cgroup",
    /// Problems met setting up the job object (advisory).
    JobObject => "job_object",
    /// The job's attempts were observed (`run --why`, learn mode; advisory).
    Observation => "observation",
}

impl ItemKind {
    /// Which `enforcement` group decides whether this item, weaker than
    /// asked, refuses a job.
    pub fn group(self) -> EnforcementGroup {
        match self {
            ItemKind::Cpu
            | ItemKind::Memory
            | ItemKind::Processes
            | ItemKind::OpenFiles
            | ItemKind::FileSize
            | ItemKind::CoreDumps
            | ItemKind::Cgroup
            | ItemKind::JobObject => EnforcementGroup::Limits,
            ItemKind::TreeCleanup | ItemKind::ParentDeath => EnforcementGroup::Cleanup,
            _ => EnforcementGroup::Confinement,
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for ItemKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl PartialEq<&str> for ItemKind {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl PartialEq<str> for ItemKind {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

/// One enforced (or not) item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// What it is about; serialised as its stable name.
    #[serde(rename = "name")]
    pub kind: ItemKind,
    /// Whether it was applied, weaker, or not at all.
    pub status: Status,
    /// A few words for the one-line summary (`memory 4 GiB (cgroup)`).
    pub short: String,
    /// How it was applied, or why not.
    pub detail: String,
    /// Whether a `required` policy refuses the job when this is weaker than asked.
    #[serde(rename = "required", serialize_with = "serialize_required")]
    pub requirement: Requirement,
}

fn serialize_required<S: serde::Serializer>(r: &Requirement, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*r == Requirement::Required)
}

impl Item {
    /// An item as the plan asked: enforced, and required.
    pub fn enforced(kind: ItemKind, short: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(kind, Status::Enforced, short, detail, Requirement::Required)
    }

    /// An item weaker than asked, or not enforced, with the reason.
    pub fn new(
        kind: ItemKind,
        status: Status,
        short: impl Into<String>,
        detail: impl Into<String>,
        requirement: Requirement,
    ) -> Self {
        Self {
            kind,
            status,
            short: short.into(),
            detail: detail.into(),
            requirement,
        }
    }

    /// A limit the policy left unlimited (`key` names where).
    pub fn unlimited(kind: ItemKind, key: &str) -> Self {
        Self::new(
            kind,
            Status::NotRequested,
            format!("{kind} unlimited"),
            format!("unlimited ({key})"),
            Requirement::Advisory,
        )
    }

    /// The policy asked for no network restriction.
    pub fn network_unrestricted() -> Self {
        Self::new(
            ItemKind::Network,
            Status::NotRequested,
            "network unrestricted",
            "unrestricted by the policy",
            Requirement::Advisory,
        )
    }

    /// Not enforced on this platform, and required: `why` says what is missing.
    pub fn not_enforced(kind: ItemKind, why: impl Into<String>) -> Self {
        Self::new(
            kind,
            Status::NotEnforced,
            kind.name(),
            why,
            Requirement::Required,
        )
    }

    /// Whether this item refuses a job whose policy says `enforcement`.
    pub fn refuses(&self, enforcement: &EnforcementPolicy) -> bool {
        enforcement.of(self.kind.group()).value == Enforcement::Required
            && self.requirement == Requirement::Required
            && self.status.is_weaker()
    }
}

/// The per-job enforcement report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnforcementReport {
    /// `linux`, `macos`, `windows`, ...
    pub platform: &'static str,
    /// One entry per enforcement item (in report order once
    /// [`EnforcementReport::sort`] has run).
    pub items: Vec<Item>,
    /// Paths of the plan that did not exist when the job started (granting nothing).
    pub skipped_paths: Vec<String>,
}

impl EnforcementReport {
    /// An empty report for `platform` (`linux`, `macos`, …), filled in as the
    /// layers are applied.
    pub fn new(platform: &'static str) -> Self {
        Self {
            platform,
            items: Vec::new(),
            skipped_paths: Vec::new(),
        }
    }

    /// Records an item.
    pub fn push(&mut self, item: Item) {
        self.items.push(item);
    }

    /// Puts the items in report order (the order of [`ItemKind`]), keeping
    /// the order in which equal kinds were recorded.
    pub fn sort(&mut self) {
        self.items.sort_by_key(|i| i.kind);
    }

    /// The item about `kind` (an [`ItemKind`] or its stable name), if recorded.
    pub fn item<K>(&self, kind: K) -> Option<&Item>
    where
        ItemKind: PartialEq<K>,
    {
        self.items.iter().find(|i| i.kind == kind)
    }

    /// Items the plan requires that were not fully enforced.
    pub fn missing_required(&self) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| i.requirement == Requirement::Required && i.status.is_weaker())
            .collect()
    }

    /// Items not fully enforced, required or not.
    pub fn weaker_than_asked(&self) -> Vec<&Item> {
        self.items.iter().filter(|i| i.status.is_weaker()).collect()
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
            out.push_str(&format!("; {} {}: {}", item.kind, item.status, item.detail));
        }
        if !self.skipped_paths.is_empty() {
            out.push_str(&format!(
                "; missing paths skipped: {}",
                self.skipped_paths.join(", ")
            ));
        }
        out
    }

    /// Why a policy that says `enforcement` refuses this job, if it does:
    /// each item missing, and the key that would let the job run anyway.
    pub fn refusal(&self, enforcement: &EnforcementPolicy) -> Option<String> {
        let refusing: Vec<&Item> = self
            .items
            .iter()
            .filter(|i| i.refuses(enforcement))
            .collect();
        if refusing.is_empty() {
            return None;
        }
        let parts: Vec<String> = refusing
            .iter()
            .map(|i| format!("{} {} ({})", i.kind, i.status, i.detail))
            .collect();
        let mut groups: Vec<EnforcementGroup> = refusing.iter().map(|i| i.kind.group()).collect();
        groups.dedup();
        groups.sort_by_key(|g| EnforcementGroup::ALL.iter().position(|a| a == g));
        groups.dedup();
        // A policy that set `enforcement` as one word is told the word; one
        // that set the groups, the group's key.
        let fixes: Vec<String> = if groups
            .iter()
            .all(|g| enforcement.of(*g).key.starts_with("enforcement."))
        {
            groups
                .iter()
                .map(|g| format!("`enforcement.{} = \"best_effort\"`", g.name()))
                .collect()
        } else {
            vec![format!(
                "`enforcement = {{ {} }}` (or `enforcement = \"best_effort\"`)",
                EnforcementGroup::ALL
                    .iter()
                    .map(|g| format!(
                        "{} = \"{}\"",
                        g.name(),
                        if groups.contains(g) {
                            "best_effort"
                        } else {
                            enforcement.of(*g).value.word()
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            )]
        };
        Some(format!(
            "the policy requires {}, but this machine cannot apply it: {}; set {} to run anyway with what can be applied",
            groups
                .iter()
                .map(|g| g.name())
                .collect::<Vec<_>>()
                .join(" and "),
            parts.join("; "),
            fixes.join(" and ")
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
                item.kind.name(),
                item.status.word(),
                item.detail,
                match item.requirement {
                    Requirement::Required => "",
                    Requirement::Advisory => "  [advisory]",
                }
            )?;
        }
        for path in &self.skipped_paths {
            writeln!(f, "  skipped (does not exist): {path}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_required_items_weaker_than_asked_refuse_and_only_under_required() {
        let mut report = EnforcementReport::new("test");
        report.push(Item::enforced(ItemKind::Cpu, "cpu 1 s", "1 s"));
        report.push(Item::new(
            ItemKind::Cgroup,
            Status::Partial,
            "cgroup",
            "left behind",
            Requirement::Advisory,
        ));
        let required = EnforcementPolicy::all(Enforcement::Required, "enforcement");
        assert_eq!(report.refusal(&required), None);
        report.push(Item::not_enforced(ItemKind::Memory, "no memory cgroup"));
        let why = report.refusal(&required).unwrap();
        assert!(
            why.contains("memory NOT enforced (no memory cgroup)"),
            "{why}"
        );
        assert!(!why.contains("cgroup left behind"), "{why}");
        assert!(
            why.contains("limits = \"best_effort\"") && why.contains("confinement = \"required\""),
            "{why}"
        );
        let best = EnforcementPolicy::all(Enforcement::BestEffort, "enforcement");
        assert_eq!(report.refusal(&best), None);
        // Limits best effort, confinement required: only confinement refuses.
        let mut split = required.clone();
        split.limits = crate::policy::Sourced::new(Enforcement::BestEffort, "enforcement.limits");
        assert_eq!(report.refusal(&split), None);
        report.push(Item::not_enforced(ItemKind::Filesystem, "no Landlock"));
        let why = report.refusal(&split).unwrap();
        assert!(why.starts_with("the policy requires confinement"), "{why}");
        assert!(!why.contains("memory"), "{why}");
    }

    #[test]
    fn items_are_found_by_kind_or_name_and_sorted_in_kind_order() {
        let mut report = EnforcementReport::new("test");
        report.push(Item::unlimited(ItemKind::Memory, "limits.memory"));
        report.push(Item::network_unrestricted());
        report.sort();
        assert_eq!(report.items[0].kind, ItemKind::Network);
        assert!(report.item("memory").is_some());
        assert!(report.item(ItemKind::Memory).is_some());
        assert!(report.item("cpu").is_none());
        let json = serde_json::to_value(&report.items[1]).unwrap();
        assert_eq!(json["name"], "memory");
        assert_eq!(json["required"], false);
    }
}
