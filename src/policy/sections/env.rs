//! `[env]`: the job's environment, which starts empty.
//!
//! The built-in deny list lives in `defaults.rs`; whether a fixed value is
//! always dropped by a deny pattern depends on every level and is checked in
//! `validate.rs`.

use crate::policy::diagnostic::Code;
use crate::policy::model::{Pattern, Sourced, choice};
use crate::policy::reader::key_span;
use crate::policy::section::Section;
use crate::policy::template::Template;

choice! {
    /// What happens to a variable a request injects without permission.
    pub enum OnDisallowed {
        /// The whole job is refused.
        Reject = "reject",
        /// The variable is dropped and the plan says so.
        Drop = "drop",
    }
}

/// Environment rules of one level.
#[derive(Debug, Clone, Default)]
pub struct EnvLayer {
    /// Host variables passed through, by name or glob.
    pub inherit: Vec<Pattern>,
    /// Names (or globs) a request may inject.
    pub allow: Vec<Pattern>,
    /// Globs that win over every allow, inherit and set.
    pub deny: Vec<Pattern>,
    /// Fixed values, in file order.
    pub set: Vec<(String, Sourced<Template>)>,
    /// What a request's non-allowed variable does.
    pub on_disallowed: Option<Sourced<OnDisallowed>>,
    /// Top level only: whether the built-in deny list applies
    /// (`Policy::builtin_env_deny` says what this makes of it).
    pub deny_defaults: Option<Sourced<bool>>,
}

impl EnvLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            inherit: s.globs("inherit"),
            allow: s.globs("allow"),
            deny: s.globs("deny"),
            set: read_set(s),
            on_disallowed: s.choice("on_disallowed"),
            deny_defaults: read_deny_defaults(s),
        }
    }
}

/// `set`: names checked as variable names, values as templates, kept in
/// file order.
fn read_set(s: &mut Section<'_, '_, '_>) -> Vec<(String, Sourced<Template>)> {
    let mut set = Vec::new();
    let Some((key, _, value)) = s.take("set") else {
        return set;
    };
    let reader = s.reader();
    let Some(mut table) = reader.table(key.clone(), value, &[]) else {
        return set;
    };
    let mut entries: Vec<_> = std::mem::take(&mut table.entries).into_iter().collect();
    entries.sort_by_key(|(name, _)| name.span.start);
    for (name, value) in entries {
        let item_key = crate::policy::reader::join_key(&key, &name.name);
        if let Err(why) = check_env_name(&name.name) {
            reader.error(
                Code::InvalidName,
                key_span(&name),
                format!("`{item_key}` is not a valid variable name: {why}"),
            );
            continue;
        }
        let Some((text, span)) = reader.string(&item_key, value) else {
            continue;
        };
        match Template::parse(&text) {
            Ok(template) => set.push((name.name.to_string(), Sourced::new(template, item_key))),
            Err(err) => reader.template_error(&item_key, &text, span, err),
        }
    }
    set
}

/// `deny_defaults`, with a warning when it turns the built-in list off (the
/// schema keeps it to the top level).
fn read_deny_defaults(s: &mut Section<'_, '_, '_>) -> Option<Sourced<bool>> {
    let (key, token, value) = s.take("deny_defaults")?;
    let on = s.reader().boolean(&key, value)?;
    if !on {
        s.reader()
            .warning(
                Code::NoEffect,
                key_span(&token),
                "`env.deny_defaults = false` turns off the built-in deny list (LD_*, DYLD_*, *_TOKEN, …)",
            )
            .notes
            .push("note: variables such as LD_PRELOAD can then reach jobs if another rule passes them".into());
    }
    Some(Sourced::new(on, key))
}

/// Why `name` cannot be an environment variable name, if it cannot.
pub fn check_env_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.contains('=') {
        Err("it contains `=`")
    } else if name.contains('\0') {
        Err("it contains a NUL byte")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::Policy;

    #[test]
    fn fixed_values_keep_their_file_order() {
        let policy = Policy::from_toml(
            "p.toml",
            "version = 1\n[env]\nset = { ZED = \"1\", ALPHA = \"2\", MID = \"{tmp}\" }\n",
        )
        .unwrap()
        .policy;
        let names: Vec<&str> = policy
            .base
            .env
            .set
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["ZED", "ALPHA", "MID"]);
        let keys: Vec<&str> = policy
            .base
            .env
            .set
            .iter()
            .map(|(_, v)| v.key.as_str())
            .collect();
        assert_eq!(keys, ["env.set.ZED", "env.set.ALPHA", "env.set.MID"]);
    }
}
