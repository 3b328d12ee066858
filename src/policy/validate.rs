//! Checks that need the whole policy, run once every section has been read.
//!
//! Each section checks its own keys as it reads them; what is left here
//! depends on several levels at once (a timeout set at the top and a maximum
//! set for one binary), on the built-in defaults, or on this machine
//! (`machine.rs`). These
//! checks need a policy, so they run once the document could become one (it
//! has a version this build reads); like the sections, they report every
//! problem they find.

use super::defaults::{DEFAULT_MAX_TIMEOUT_SECS, DEFAULT_TIMEOUT_SECS, builtin_deny_patterns};
use super::diagnostic::Code;
use super::machine::ThisMachine;
use super::model::{BUILTIN, Pattern, Policy};
use super::reader::Reader;
use super::sections::LimitsLayer;
use std::collections::HashSet;

/// Every whole-policy check; problems go to `reader`. `mode` says how the
/// binaries are judged against this machine (`machine.rs`).
pub(crate) fn policy(reader: &mut Reader<'_>, policy: &Policy, mode: ThisMachine) {
    timeouts(reader, policy);
    fixed_values_denied(reader, policy);
    super::machine::binaries(reader, policy, mode);
    binaries_can_be_found(reader, policy);
}

/// For every combination of levels a job can meet, the default timeout must
/// not exceed the maximum.
fn timeouts(reader: &mut Reader<'_>, policy: &Policy) {
    let mut combos: Vec<Vec<&LimitsLayer>> = vec![vec![&policy.base.limits]];
    for binary in policy.binaries.values() {
        combos.push(vec![&policy.base.limits, &binary.layer.limits]);
    }
    for plugin in policy.plugins.values().chain(policy.catch_all.iter()) {
        for name in &plugin.binaries {
            if let Some(binary) = policy.binaries.get(&name.value) {
                combos.push(vec![
                    &policy.base.limits,
                    &binary.layer.limits,
                    &plugin.layer.limits,
                ]);
            }
        }
    }
    let mut reported = HashSet::new();
    for layers in combos {
        let timeout = layers
            .iter()
            .filter_map(|l| l.timeout_secs.as_ref())
            .next_back();
        let max = layers
            .iter()
            .filter_map(|l| l.max_timeout_secs.as_ref())
            .next_back();
        let timeout_value = timeout.map_or(DEFAULT_TIMEOUT_SECS, |t| t.value);
        let max_value = max.map_or(DEFAULT_MAX_TIMEOUT_SECS, |t| t.value);
        if timeout_value <= max_value {
            continue;
        }
        // The built-in defaults fit each other, so one of the two is set.
        let Some(blame) = timeout.or(max).map(|t| t.key.clone()) else {
            continue;
        };
        if !reported.insert(blame.clone()) {
            continue;
        }
        let span = reader.span(&blame);
        reader
            .error(
                Code::ContradictoryLimits,
                span,
                format!(
                    "the default timeout ({timeout_value} s, `{}`) is longer than the maximum ({max_value} s, `{}`)",
                    timeout.map_or(BUILTIN, |t| t.key.as_str()),
                    max.map_or(BUILTIN, |t| t.key.as_str()),
                ),
            )
            .notes
            .push("help: lower `timeout_secs` or raise `max_timeout_secs`".into());
    }
}

/// `env.set` entries a deny pattern would always drop: the top-level and
/// built-in patterns apply to every level, a level's own to itself.
fn fixed_values_denied(reader: &mut Reader<'_>, policy: &Policy) {
    let mut all_deny: Vec<&Pattern> = policy.base.env.deny.iter().collect();
    if policy.builtin_env_deny {
        all_deny.extend(builtin_deny_patterns().iter());
    }
    let layers = std::iter::once(&policy.base)
        .chain(policy.binaries.values().map(|b| &b.layer))
        .chain(
            policy
                .plugins
                .values()
                .chain(policy.catch_all.iter())
                .map(|p| &p.layer),
        );
    for layer in layers {
        for (name, value) in &layer.env.set {
            let local = layer.env.deny.iter();
            let Some(deny) = all_deny
                .iter()
                .copied()
                .chain(local)
                .find(|p| p.matches(name))
            else {
                continue;
            };
            let span = reader.span(&value.key);
            reader
                .warning(
                    Code::NoEffect,
                    span,
                    format!(
                        "`{}` is always dropped: {name} matches the deny pattern \"{}\" (`{}`)",
                        value.key, deny.text, deny.key
                    ),
                )
                .notes
                .push("note: deny patterns win over every allow, inherit and set".into());
        }
    }
}

/// A binary without a `path` is looked up in `search_path`, which must then
/// exist.
fn binaries_can_be_found(reader: &mut Reader<'_>, policy: &Policy) {
    if !policy.search_path.is_empty() {
        return;
    }
    for binary in policy.binaries.values().filter(|b| b.path.is_none()) {
        // A `path` that was written but is unusable (relative, say) has its
        // own error already: one root cause, one error.
        if reader.spans.contains_key(&format!("{}.path", binary.key)) {
            continue;
        }
        let span = reader.span(&binary.key);
        reader
            .error(
                Code::MissingKey,
                span,
                format!(
                    "`[{}]` has no `path`, and the policy has no `search_path` to find it in",
                    binary.key
                ),
            )
            .notes
            .push(format!(
                "help: add `path = \"/usr/bin/{}\"` or a top-level `search_path = [\"/usr/bin\", \"/bin\"]`",
                binary.name
            ));
    }
}
