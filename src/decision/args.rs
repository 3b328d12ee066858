//! The allow-list of command lines (`args.allow`): a request's arguments
//! must match one of the patterns that apply to its plugin and binary.
//!
//! The invariant: when a binary (or the plugin, for that binary) lists
//! allowed command lines, no argument list runs that does not match one of
//! them element by element (see `policy::sections::args` for what an
//! element matches). The plugin's own list replaces the binary's, so a
//! plugin can be held to fewer command lines, or given others, without
//! touching what other plugins may run. A refusal names the closest
//! pattern (as its rule) and where the request parts from it.

use super::{Denial, shell_quote};
use crate::policy::{ArgPattern, BinaryRule, PluginRule, Sourced};

/// The patterns that apply to `plugin` running `binary`, if any.
pub fn allowed_command_lines<'a>(
    binary: &'a BinaryRule,
    plugin: &'a PluginRule,
) -> Option<&'a Sourced<Vec<ArgPattern>>> {
    plugin
        .args
        .get(&binary.name)
        .and_then(|a| a.allow.as_ref())
        .or(binary.args.allow.as_ref())
}

/// Checks `args` against the allow-list; returns the key of the pattern
/// that allowed them, or `None` when no list applies.
pub(super) fn check_allowed(
    binary: &BinaryRule,
    plugin: &PluginRule,
    args: &[String],
) -> Result<Option<String>, Denial> {
    let Some(allow) = allowed_command_lines(binary, plugin) else {
        return Ok(None);
    };
    if let Some(pattern) = allow.value.iter().find(|p| p.matches(args)) {
        return Ok(Some(pattern.key.clone()));
    }
    // The closest pattern is the one the request follows longest; of those,
    // the one whose length is nearest the request's; of those, the first.
    let closest = allow
        .value
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.difference(args).map(|d| (i, p, d)))
        .max_by_key(|(i, p, d)| {
            (
                d.position(),
                std::cmp::Reverse(p.elements.len().abs_diff(args.len())),
                std::cmp::Reverse(*i),
            )
        })
        .map(|(_, p, d)| (p, d));
    let request = if args.is_empty() {
        "no arguments".to_string()
    } else {
        let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        format!("`{}`", words.join(" "))
    };
    let reason = match &closest {
        Some((pattern, difference)) => format!(
            "`{}` with {request} matches none of the allowed command lines; the closest, {} (`{}`), differs {}",
            binary.name,
            pattern.text(),
            pattern.key,
            difference.describe()
        ),
        None => format!(
            "`{}` with {request} matches none of the allowed command lines",
            binary.name
        ),
    };
    // The rule named is the closest pattern, as a deny rule names the item
    // that matched: a test can pin which near-miss a request was, and the
    // key still starts with the list's (`binaries.npm.args.allow[0]`).
    let rule = closest.map_or_else(|| allow.key.clone(), |(p, _)| p.key.clone());
    Err(Denial::new(
        rule,
        reason,
        format!(
            "ask for one of the command lines in `{}`, or add one there if it is safe",
            allow.key
        ),
    ))
}
