//! Writing a suggestion into a policy file, keeping the admin's comments
//! and layout (toml_edit, what `cargo add` edits manifests with).
//!
//! The invariant: merging only adds. Lists get entries appended (an entry
//! already present is not repeated), tables are created where missing,
//! flags are only ever turned on; nothing the base says is removed or
//! narrowed. Per-binary settings go under `[binaries.NAME]`, so the
//! addition applies to that binary's jobs alone; a flag a plugin sets
//! itself (a more specific level wins for single values) is set there.

use super::suggest::Suggestion;
use crate::policy::Policy;
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

/// What to write into a policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyEdit<'a> {
    /// The binary the grants are for.
    pub binary: &'a str,
    /// Its `path`, when the base policy does not define it.
    pub define_path: Option<&'a str>,
    /// A plugin that must be allowed to run the binary (`plugins.NAME`, or
    /// `"*"` for the catch-all).
    pub allow_plugin: Option<&'a str>,
    /// The grants.
    pub suggestion: Option<&'a Suggestion>,
    /// The plugin whose level sets single values the binary's level would
    /// not win against (see the module docs).
    pub flags_at_plugin: Option<&'a str>,
    /// Learn mode's own run: `enforcement = "best_effort"`, so the
    /// mechanisms it switches off do not refuse the job.
    pub best_effort: bool,
}

/// Why a policy could not be edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The policy file does not parse.
    #[error("the policy is not valid TOML: {0}")]
    Parse(#[source] toml_edit::TomlError),
    /// A key the addition extends holds something other than a table.
    #[error("`{key}` in the policy is not a table, so it cannot be extended")]
    NotATable {
        /// The key, dotted.
        key: String,
    },
    /// A key the addition extends holds something other than a list.
    #[error("`{key}` in the policy is not a list, so it cannot be extended")]
    NotAList {
        /// The key, dotted.
        key: String,
    },
}

/// `text` with `edit` merged in.
pub fn merge(text: &str, edit: &PolicyEdit<'_>) -> Result<String, EditError> {
    let mut doc: DocumentMut = text.parse().map_err(EditError::Parse)?;
    if edit.best_effort {
        doc["enforcement"] = toml_edit::value("best_effort");
    }
    let binary = edit.binary;
    if let Some(path) = edit.define_path {
        let table = table(&mut doc, &["binaries", binary])?;
        if !table.contains_key("path") {
            table.insert("path", toml_edit::value(path));
        }
    }
    if let Some(s) = edit.suggestion {
        grant(&mut doc, edit, s)?;
    }
    // Last, so a new `[plugins.NAME]` follows the binary it allows.
    if let Some(plugin) = edit.allow_plugin {
        let table = table(&mut doc, &["plugins", plugin])?;
        append(
            table,
            "binaries",
            &format!("plugins.{plugin}.binaries"),
            [Value::from(binary)],
        )?;
    }
    Ok(doc.to_string())
}

/// Writes the suggestion's grants under `[binaries.NAME]`.
fn grant(doc: &mut DocumentMut, edit: &PolicyEdit<'_>, s: &Suggestion) -> Result<(), EditError> {
    let binary = edit.binary;
    let strings = |list: &[String]| {
        list.iter()
            .map(|s| Value::from(s.as_str()))
            .collect::<Vec<_>>()
    };
    let ports = |list: &[u16]| {
        list.iter()
            .map(|p| Value::from(i64::from(*p)))
            .collect::<Vec<_>>()
    };
    let key = |rest: &str| format!("binaries.{binary}.{rest}");
    if !s.helpers.is_empty() {
        let table = table(doc, &["binaries", binary])?;
        append(table, "helpers", &key("helpers"), strings(&s.helpers))?;
    }
    for (name, list) in [
        ("read", &s.read),
        ("read_write", &s.read_write),
        ("execute", &s.execute),
    ] {
        if !list.is_empty() {
            let table = table(doc, &["binaries", binary, "filesystem"])?;
            append(
                table,
                name,
                &key(&format!("filesystem.{name}")),
                strings(list),
            )?;
        }
    }
    for (name, values) in [
        ("connect", ports(&s.connect)),
        ("bind", ports(&s.bind)),
        ("unix", strings(&s.unix)),
    ] {
        if !values.is_empty() {
            let table = table(doc, &["binaries", binary, "network"])?;
            append(table, name, &key(&format!("network.{name}")), values)?;
        }
    }
    for (name, on) in [("udp", s.udp), ("netlink_route", s.netlink_route)] {
        if !on {
            continue;
        }
        let path: Vec<&str> = match edit.flags_at_plugin {
            Some(plugin) => vec!["plugins", plugin, "network"],
            None => vec!["binaries", binary, "network"],
        };
        table(doc, &path)?.insert(name, toml_edit::value(true));
    }
    Ok(())
}

/// The table at `path`, created (with implicit parents, so no empty
/// `[binaries]` header appears) where missing.
fn table<'d>(doc: &'d mut DocumentMut, path: &[&str]) -> Result<&'d mut dyn TableLike, EditError> {
    let mut current: &mut dyn TableLike = doc.as_table_mut();
    for (i, part) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let item = current.entry(part).or_insert_with(|| {
            let mut table = Table::new();
            table.set_implicit(!last);
            Item::Table(table)
        });
        current = item
            .as_table_like_mut()
            .ok_or_else(|| EditError::NotATable {
                key: path[..=i].join("."),
            })?;
    }
    Ok(current)
}

/// Appends `values` to the list `name` of `table` (created if missing),
/// skipping those already there.
fn append(
    table: &mut dyn TableLike,
    name: &str,
    key: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<(), EditError> {
    let item = table
        .entry(name)
        .or_insert_with(|| Item::Value(Value::Array(Array::new())));
    let array = item
        .as_array_mut()
        .ok_or_else(|| EditError::NotAList { key: key.into() })?;
    for value in values {
        let text = value.to_string();
        if !array.iter().any(|v| v.to_string().trim() == text.trim()) {
            array.push(value);
        }
    }
    Ok(())
}

/// The suggestion alone, as a TOML snippet: what `learn` prints.
pub fn snippet(edit: &PolicyEdit<'_>) -> String {
    let edit = PolicyEdit {
        best_effort: false,
        ..edit.clone()
    };
    merge("", &edit).unwrap_or_default()
}

/// Whether the single values `udp` and `netlink_route` must be set at the
/// plugin's level: it sets one of them itself, which would win over the
/// binary's.
pub fn plugin_sets_network_flags(policy: &Policy, plugin: &str) -> bool {
    policy.plugin_rule(plugin).is_some_and(|rule| {
        rule.layer.network.udp.is_some() || rule.layer.network.netlink_route.is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"# the admin's comment
version = 1

[binaries.git]
path = "/usr/bin/git"   # pinned here
helpers = ["/usr/lib/git-core"]

[plugins.cli]
binaries = ["git"]
"#;

    #[test]
    fn merging_only_adds_and_keeps_the_admins_layout() {
        let suggestion = Suggestion {
            helpers: vec!["/usr/lib/git-core".into(), "/usr/bin/less".into()],
            read: vec!["{home}/.gitconfig".into()],
            connect: vec![443],
            udp: true,
            ..Suggestion::default()
        };
        let edit = PolicyEdit {
            binary: "git",
            allow_plugin: Some("cli"),
            suggestion: Some(&suggestion),
            ..PolicyEdit::default()
        };
        let merged = merge(BASE, &edit).unwrap();
        assert!(merged.starts_with("# the admin's comment\n"), "{merged}");
        assert!(
            merged.contains("path = \"/usr/bin/git\"   # pinned here"),
            "{merged}"
        );
        assert!(
            merged.contains(r#"helpers = ["/usr/lib/git-core", "/usr/bin/less"]"#),
            "{merged}"
        );
        assert!(merged.contains(r#"binaries = ["git"]"#), "{merged}");
        assert!(
            merged.contains("[binaries.git.filesystem]\nread = [\"{home}/.gitconfig\"]"),
            "{merged}"
        );
        assert!(
            merged.contains("[binaries.git.network]\nconnect = [443]\nudp = true"),
            "{merged}"
        );
        // A valid policy, and merging twice changes nothing more.
        crate::Policy::from_toml("<merged>", &merged).unwrap();
        assert_eq!(merge(&merged, &edit).unwrap(), merged);
    }

    #[test]
    fn a_new_binary_is_defined_and_allowed() {
        let edit = PolicyEdit {
            binary: "python3",
            define_path: Some("/usr/bin/python3"),
            allow_plugin: Some("cli"),
            best_effort: true,
            ..PolicyEdit::default()
        };
        let merged = merge(BASE, &edit).unwrap();
        assert!(merged.contains("enforcement = \"best_effort\""), "{merged}");
        assert!(
            merged.contains("[binaries.python3]\npath = \"/usr/bin/python3\""),
            "{merged}"
        );
        assert!(
            merged.contains(r#"binaries = ["git", "python3"]"#),
            "{merged}"
        );
        crate::Policy::from_toml("<merged>", &merged).unwrap();
    }

    #[test]
    fn a_list_that_is_not_a_list_is_an_error_naming_the_key() {
        let base = "version = 1\n[binaries.git]\nhelpers = \"oops\"\n";
        let suggestion = Suggestion {
            helpers: vec!["/bin/sh".into()],
            ..Suggestion::default()
        };
        let edit = PolicyEdit {
            binary: "git",
            suggestion: Some(&suggestion),
            ..PolicyEdit::default()
        };
        let err = merge(base, &edit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`binaries.git.helpers` in the policy is not a list, so it cannot be extended"
        );
    }
}
