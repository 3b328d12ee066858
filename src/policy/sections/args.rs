//! `args.allow`: the command lines a binary may be given, as patterns of
//! its arguments (`[binaries.NAME.args]`, and per plugin in
//! `[plugins.NAME.args.BINARY]`).
//!
//! The invariant: a pattern matches an argument list only where its text
//! says so, element by element, and never more. Each element is a literal
//! (compared exactly) or a glob; a glob never matches an empty argument, and
//! a glob that does not itself begin with `-` never matches an argument that
//! does, so `["run", "*"]` cannot be given `--prefix=/evil` or `--`. A
//! pattern matches exactly as many arguments as it has elements, unless it
//! ends with the explicit marker `"..."`, which allows any further ones.
//! Options placed before a subcommand (`npm --prefix /x run lint`) shift
//! every position, so they match nothing the admin did not write.

use crate::policy::diagnostic::Code;
use crate::policy::model::{Pattern, Sourced};
use crate::policy::reader::{Reader, Span, span_of};
use toml_span::value::{Value, ValueInner};

/// The last element of a pattern that allows any further arguments.
pub const REST_MARKER: &str = "...";

/// One allowed command line: its elements, then maybe `"..."`.
#[derive(Debug, Clone)]
pub struct ArgPattern {
    /// What each argument, in order, must be.
    pub elements: Vec<ArgElement>,
    /// Whether the pattern ends with `"..."`: any arguments may follow.
    pub rest: bool,
    /// `binaries.npm.args.allow[1]`.
    pub key: String,
}

/// One element of an [`ArgPattern`].
#[derive(Debug, Clone)]
pub enum ArgElement {
    /// Compared exactly.
    Literal(String),
    /// A glob (`*`, `?`, `[abc]`, `[!abc]`), with the rules above.
    Glob(Pattern),
}

/// Whether `text` is written as a glob (has `*`, `?` or `[`).
fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

impl ArgElement {
    /// The element as the policy writes it.
    pub fn text(&self) -> &str {
        match self {
            ArgElement::Literal(text) => text,
            ArgElement::Glob(pattern) => &pattern.text,
        }
    }

    /// Whether `arg` is allowed here.
    pub fn matches(&self, arg: &str) -> bool {
        match self {
            ArgElement::Literal(text) => text == arg,
            ArgElement::Glob(pattern) => {
                !arg.is_empty()
                    && (!arg.starts_with('-') || pattern.text.starts_with('-'))
                    && pattern.matches(arg)
            }
        }
    }

    /// Why `arg` does not match, in words (`arg` must not match).
    pub fn why_not(&self, arg: &str) -> String {
        let shown = arg.escape_debug();
        match self {
            ArgElement::Literal(text) => format!("`{shown}` is not `{}`", text.escape_debug()),
            ArgElement::Glob(pattern) if arg.is_empty() => format!(
                "it is empty, and the glob `{}` never matches an empty argument",
                pattern.text
            ),
            ArgElement::Glob(pattern) if arg.starts_with('-') && !pattern.text.starts_with('-') => {
                format!(
                    "`{shown}` is an option, and the glob `{}` matches options only when it starts with `-` itself",
                    pattern.text
                )
            }
            ArgElement::Glob(pattern) => {
                format!("`{shown}` does not match the glob `{}`", pattern.text)
            }
        }
    }
}

/// Where an argument list and a pattern part ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Argument `position` (0-based) is not what the element allows.
    Differs {
        /// The argument's index, from 0.
        position: usize,
        /// What is wrong with it, in one sentence.
        why: String,
    },
    /// The arguments end at `position`, where the pattern expects `element`.
    Missing {
        /// How many arguments there are.
        position: usize,
        /// The pattern element expected next, as the policy writes it.
        element: String,
    },
    /// Argument `position` is beyond a pattern without `"..."`.
    Extra {
        /// The first extra argument's index, from 0.
        position: usize,
        /// That argument.
        arg: String,
    },
}

impl Difference {
    /// How many leading arguments matched before the difference.
    pub fn position(&self) -> usize {
        match self {
            Difference::Differs { position, .. }
            | Difference::Missing { position, .. }
            | Difference::Extra { position, .. } => *position,
        }
    }

    /// The difference in words.
    pub fn describe(&self) -> String {
        match self {
            Difference::Differs { position, why } => {
                format!("at argument {}: {why}", position + 1)
            }
            Difference::Missing { position, element } => format!(
                "at argument {}: the request ends where it expects `{}`",
                position + 1,
                element.escape_debug()
            ),
            Difference::Extra { position, arg } => format!(
                "at argument {}: `{}` is past its end, and it does not end with \"{REST_MARKER}\"",
                position + 1,
                arg.escape_debug()
            ),
        }
    }
}

impl ArgPattern {
    /// The pattern as a TOML array, as the policy writes it.
    pub fn text(&self) -> String {
        let mut words: Vec<String> = self
            .elements
            .iter()
            .map(|e| format!("{:?}", e.text()))
            .collect();
        if self.rest {
            words.push(format!("\"{REST_MARKER}\""));
        }
        format!("[{}]", words.join(", "))
    }

    /// Where `args` first differs from this pattern; `None` when it matches.
    pub fn difference(&self, args: &[String]) -> Option<Difference> {
        for (position, element) in self.elements.iter().enumerate() {
            match args.get(position) {
                Some(arg) if element.matches(arg) => {}
                Some(arg) => {
                    return Some(Difference::Differs {
                        position,
                        why: element.why_not(arg),
                    });
                }
                None => {
                    return Some(Difference::Missing {
                        position,
                        element: element.text().to_string(),
                    });
                }
            }
        }
        match args.get(self.elements.len()) {
            Some(arg) if !self.rest => Some(Difference::Extra {
                position: self.elements.len(),
                arg: arg.clone(),
            }),
            _ => None,
        }
    }

    /// Whether `args` is one of the command lines this pattern allows.
    pub fn matches(&self, args: &[String]) -> bool {
        self.difference(args).is_none()
    }
}

/// Reads `allow`: an array of patterns, each an array of strings. Every
/// problem is reported; `None` when the key is absent or unusable.
pub(crate) fn read_allow(
    reader: &mut Reader<'_>,
    key: &str,
    mut value: Value<'_>,
) -> Option<Sourced<Vec<ArgPattern>>> {
    reader.record(key, &value);
    let span = span_of(&value);
    let items = match value.take() {
        ValueInner::Array(items) => items,
        other => {
            value.set(other);
            reader.wrong_type(
                key,
                &value,
                "an array of command lines, each an array of strings (`[[\"run\", \"lint\"]]`)",
            );
            return None;
        }
    };
    if items.is_empty() {
        reader
            .error(
                Code::InvalidValue,
                span,
                format!("`{key}` is empty, so every request for this binary would be refused"),
            )
            .notes
            .push("help: list the allowed command lines, e.g. `allow = [[\"run\", \"lint\"]]`, or remove the key to allow any arguments".into());
        return None;
    }
    let mut patterns: Vec<(ArgPattern, Span)> = Vec::new();
    let mut usable = true;
    for (i, item) in items.into_iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let item_span = span_of(&item);
        match read_pattern(reader, &item_key, item) {
            Some(pattern) => {
                if let Some((_, first)) = patterns.iter().find(|(p, _)| p.text() == pattern.text())
                {
                    let first = first.clone();
                    reader.duplicate(&item_key, item_span, first, &pattern.text());
                    usable = false;
                    continue;
                }
                if pattern.elements.is_empty() && pattern.rest {
                    reader
                        .warning(
                            Code::NoEffect,
                            item_span.clone(),
                            format!(
                                "`{item_key}` is [\"{REST_MARKER}\"], which allows any arguments: `{key}` then restricts nothing"
                            ),
                        )
                        .notes
                        .push("help: begin the pattern with the fixed arguments, e.g. [\"test\", \"...\"], or remove `allow`".into());
                }
                patterns.push((pattern, item_span));
            }
            None => usable = false,
        }
    }
    usable.then(|| Sourced::new(patterns.into_iter().map(|(p, _)| p).collect(), key))
}

/// One pattern: strings, with `"..."` only last.
fn read_pattern(reader: &mut Reader<'_>, key: &str, mut value: Value<'_>) -> Option<ArgPattern> {
    reader.record(key, &value);
    let items = match value.take() {
        ValueInner::Array(items) => items,
        other => {
            value.set(other);
            reader.wrong_type(
                key,
                &value,
                "an array of strings, one per argument (`[\"run\", \"lint\"]`)",
            );
            return None;
        }
    };
    let count = items.len();
    let mut elements = Vec::new();
    let mut rest = false;
    let mut usable = true;
    for (i, item) in items.into_iter().enumerate() {
        let element_key = format!("{key}[{i}]");
        let Some((text, span)) = reader.string(&element_key, item) else {
            usable = false;
            continue;
        };
        if text == REST_MARKER {
            if i + 1 == count {
                rest = true;
            } else {
                reader
                    .error(
                        Code::InvalidValue,
                        span,
                        format!("`{element_key}` is \"{REST_MARKER}\", which may only end a pattern"),
                    )
                    .notes
                    .push(format!("note: \"{REST_MARKER}\" means \"and any further arguments\"; to match a literal `...` argument write \"[.]..\""));
                usable = false;
            }
            continue;
        }
        if is_glob(&text) {
            match reader.pattern(text, span, element_key) {
                Some(pattern) => elements.push(ArgElement::Glob(pattern)),
                None => usable = false,
            }
        } else {
            elements.push(ArgElement::Literal(text));
        }
    }
    usable.then(|| ArgPattern {
        elements,
        rest,
        key: key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn patterns(allow: &str) -> Vec<ArgPattern> {
        let text = format!(
            "version = 1\n[binaries.t]\npath = \"/bin/true\"\n[binaries.t.args]\nallow = {allow}\n"
        );
        let policy = Policy::from_toml("<test>", &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .policy;
        policy.binaries["t"]
            .args
            .allow
            .clone()
            .expect("allow was set")
            .value
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn literals_match_exactly_and_only_as_many_arguments_as_written() {
        let p = &patterns(r#"[["run", "lint"]]"#)[0];
        assert!(p.matches(&args(&["run", "lint"])));
        assert!(!p.matches(&args(&["run", "lint", "--", "--fix"])));
        assert!(!p.matches(&args(&["run"])));
        assert!(!p.matches(&args(&["run", "Lint"])));
        assert!(!p.matches(&args(&["--prefix", "/evil", "run", "lint"])));
        assert_eq!(p.text(), r#"["run", "lint"]"#);
    }

    #[test]
    fn the_rest_marker_allows_further_arguments_only_after_the_prefix() {
        let p = &patterns(r#"[["test", "..."]]"#)[0];
        assert!(p.matches(&args(&["test"])));
        assert!(p.matches(&args(&["test", "--", "-x"])));
        assert!(!p.matches(&args(&["-x", "test"])));
        assert!(!p.matches(&args(&[])));
        assert_eq!(p.text(), r#"["test", "..."]"#);
    }

    #[test]
    fn a_glob_matches_neither_empty_arguments_nor_options_it_does_not_spell() {
        let p = &patterns(r#"[["validate", "*"]]"#)[0];
        assert!(p.matches(&args(&["validate", "CITADEL.kdl"])));
        assert!(p.matches(&args(&["validate", "dir/with/slashes.kdl"])));
        assert!(!p.matches(&args(&["validate", ""])));
        assert!(!p.matches(&args(&["validate", "--"])));
        assert!(!p.matches(&args(&["validate", "--auto-approve"])));
        assert!(!p.matches(&args(&["validate", "-x=value"])));
        let p = &patterns(r#"[["plan", "--env=*"]]"#)[0];
        assert!(p.matches(&args(&["plan", "--env=devnet"])));
        // `*` matches no characters as in any glob: only a wholly empty
        // argument is refused, and a pattern that needs a value spells it.
        assert!(p.matches(&args(&["plan", "--env="])));
        let p = &patterns(r#"[["plan", "--env=?*"]]"#)[0];
        assert!(!p.matches(&args(&["plan", "--env="])));
        assert!(p.matches(&args(&["plan", "--env=d"])));
        assert!(!p.matches(&args(&["plan", "--env", "devnet"])));
        // An empty element is a literal: it matches only an empty argument.
        let p = &patterns(r#"[["x", ""]]"#)[0];
        assert!(p.matches(&args(&["x", ""])));
        assert!(!p.matches(&args(&["x", "y"])));
    }

    #[test]
    fn differences_say_where_and_why() {
        let p = &patterns(r#"[["run", "lint"]]"#)[0];
        assert_eq!(
            p.difference(&args(&["run", "postinstall"]))
                .unwrap()
                .describe(),
            "at argument 2: `postinstall` is not `lint`"
        );
        assert_eq!(
            p.difference(&args(&["run"])).unwrap().describe(),
            "at argument 2: the request ends where it expects `lint`"
        );
        assert_eq!(
            p.difference(&args(&["run", "lint", "--", "-x"]))
                .unwrap()
                .describe(),
            "at argument 3: `--` is past its end, and it does not end with \"...\""
        );
        let p = &patterns(r#"[["run", "*"]]"#)[0];
        assert_eq!(
            p.difference(&args(&["run", "--prefix=/x"]))
                .unwrap()
                .describe(),
            "at argument 2: `--prefix=/x` is an option, and the glob `*` matches options only when it starts with `-` itself"
        );
        assert_eq!(
            p.difference(&args(&["run", ""])).unwrap().describe(),
            "at argument 2: it is empty, and the glob `*` never matches an empty argument"
        );
        // Only an option meeting a glob that does not spell one is "an
        // option": a plain word, or an option the glob's own `-` prefix
        // does not match, simply does not match.
        let p = &patterns(r#"[["plan", "--env=*"], ["validate", "*.kdl"]]"#);
        assert_eq!(
            p[0].difference(&args(&["plan", "--force"]))
                .unwrap()
                .describe(),
            "at argument 2: `--force` does not match the glob `--env=*`"
        );
        assert_eq!(
            p[1].difference(&args(&["validate", "notes.txt"]))
                .unwrap()
                .describe(),
            "at argument 2: `notes.txt` does not match the glob `*.kdl`"
        );
    }

    #[test]
    fn a_difference_counts_the_arguments_that_matched_before_it() {
        // `position` ranks the closest pattern in a denial, so every kind
        // reports how far the request followed the pattern.
        let p = &patterns(r#"[["a", "b", "c"]]"#)[0];
        let at = |words: &[&str]| p.difference(&args(words)).map(|d| d.position());
        assert_eq!(at(&["x"]), Some(0));
        assert_eq!(at(&["a", "x"]), Some(1));
        assert_eq!(at(&["a", "b", "x"]), Some(2));
        assert_eq!(at(&[]), Some(0));
        assert_eq!(at(&["a", "b"]), Some(2));
        assert_eq!(at(&["a", "b", "c", "d"]), Some(3));
        assert_eq!(at(&["a", "b", "c"]), None);
    }
}
