//! Placeholders in policy paths and values: `{repo}`, `{home}`, `{tmp}`.
//!
//! A template is parsed once, when the policy loads, and filled in for each
//! job by the decision. A path template must be absolute once filled in: it
//! either starts with `/` or with a placeholder, and never contains `..`, so
//! what the admin wrote is what Landlock sees.

use super::diagnostic::{Code, Diagnostic, did_you_mean};
use std::fmt;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

/// A placeholder the policy may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// The repository root the host serves (canonical).
    Repo,
    /// The home directory of the user the host runs as.
    Home,
    /// A fresh, empty directory per job, removed when the job ends.
    Tmp,
}

impl Placeholder {
    /// Every placeholder name, for "did you mean" and error notes.
    pub const NAMES: [&'static str; 3] = ["repo", "home", "tmp"];

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "repo" => Some(Self::Repo),
            "home" => Some(Self::Home),
            "tmp" => Some(Self::Tmp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Repo => "repo",
            Self::Home => "home",
            Self::Tmp => "tmp",
        }
    }
}

/// The values placeholders take for one job.
#[derive(Debug, Clone)]
pub struct Placeholders<'a> {
    /// `{repo}`: the repository the host serves.
    pub repo: &'a Path,
    /// `{home}`: the user's home, when known.
    pub home: Option<&'a Path>,
    /// `{tmp}`: the job's private directory.
    pub tmp: &'a Path,
}

impl Placeholders<'_> {
    fn value(&self, placeholder: Placeholder) -> Result<&Path, UnresolvedPlaceholder> {
        match placeholder {
            Placeholder::Repo => Ok(self.repo),
            Placeholder::Home => self.home.ok_or(UnresolvedPlaceholder(Placeholder::Home)),
            Placeholder::Tmp => Ok(self.tmp),
        }
    }
}

/// A placeholder with no value on this host (only `{home}` can lack one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{{{}}}` has no value on this host (HOME is not set)", .0.name())]
pub struct UnresolvedPlaceholder(pub Placeholder);

/// Why a template failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{name}` with an unknown name; carries the byte offset within the string.
    UnknownPlaceholder { name: String, offset: usize },
    /// A `{` without its `}`.
    Unclosed { offset: usize },
    /// A path that is neither absolute nor starts with a placeholder.
    Relative,
    /// A placeholder somewhere other than the start of a path.
    PlaceholderNotFirst { offset: usize },
    /// A `..` component.
    ParentComponent,
    /// A NUL byte.
    Nul,
}

impl TemplateError {
    /// The diagnostic for this error in the value of `path`, whose text
    /// (`text`, without its quotes) spans `span`.
    pub(crate) fn diagnostic(self, path: &str, text: &str, span: Range<usize>) -> Diagnostic {
        // A string value's span covers its contents, without the quotes.
        let at = |offset: usize, len: usize| {
            let start = span.start + offset;
            start..start + len
        };
        match self {
            Self::UnknownPlaceholder { name, offset } => {
                let mut diagnostic = Diagnostic::error(
                    Code::UnknownPlaceholder,
                    at(offset, name.len() + 2),
                    format!("`{path}` uses the unknown placeholder `{{{name}}}`"),
                );
                if let Some(s) = did_you_mean(&name, Placeholder::NAMES) {
                    diagnostic = diagnostic.with_note(format!("help: did you mean `{{{s}}}`?"));
                }
                diagnostic.with_note(
                    "note: placeholders are `{repo}` (the repository root), `{home}` (the host user's home) and `{tmp}` (a private directory per job); write `{{` for a literal brace",
                )
            }
            Self::Unclosed { offset } => Diagnostic::error(
                Code::InvalidValue,
                at(offset, 1),
                format!("`{path}` has a `{{` without its `}}`"),
            )
            .with_note("help: close the placeholder, or write `{{` for a literal brace"),
            // Only paths must be absolute: a value template never says this.
            Self::Relative => Diagnostic::error(
                Code::RelativePath,
                span,
                format!("`{path}` is relative: \"{text}\""),
            )
            .with_note("help: start the path with `/` or a placeholder followed by `/`, e.g. \"{repo}/target\""),
            Self::PlaceholderNotFirst { offset } => Diagnostic::error(
                Code::InvalidPath,
                at(offset, 1),
                format!("`{path}` has a placeholder after the start of the path"),
            )
            .with_note("help: a placeholder may only begin a path, e.g. \"{home}/.cargo\""),
            Self::ParentComponent => Diagnostic::error(
                Code::InvalidPath,
                span,
                format!("`{path}` contains `..`"),
            )
            .with_note("help: write the directory you mean without `..`; the sandbox sees paths exactly as written"),
            Self::Nul => Diagnostic::error(
                Code::InvalidPath,
                span,
                format!("`{path}` contains a NUL byte"),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Placeholder(Placeholder),
}

/// A string with placeholders, e.g. an env value `{tmp}/cache`.
/// `{{` and `}}` stand for literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Byte offset in `source` of the first placeholder that is not the
    /// first part, for pointing at it when a path may not have one there.
    late_placeholder: Option<usize>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        if text.contains('\0') {
            return Err(TemplateError::Nul);
        }
        let mut parts = Vec::new();
        let mut late_placeholder = None;
        let mut literal = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let brace = rest.as_bytes()[i];
            let after = &rest[i + 1..];
            if after.as_bytes().first() == Some(&brace) {
                literal.push(brace as char);
                rest = &after[1..];
                offset += i + 2;
                continue;
            }
            if brace == b'}' {
                // A lone `}` is a literal; only `{` opens a placeholder.
                literal.push('}');
                rest = after;
                offset += i + 1;
                continue;
            }
            let Some(close) = after.find('}') else {
                return Err(TemplateError::Unclosed { offset: offset + i });
            };
            let name = &after[..close];
            let placeholder =
                Placeholder::from_name(name).ok_or_else(|| TemplateError::UnknownPlaceholder {
                    name: name.to_string(),
                    offset: offset + i,
                })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            if !parts.is_empty() && late_placeholder.is_none() {
                late_placeholder = Some(offset + i);
            }
            parts.push(Part::Placeholder(placeholder));
            rest = &after[close + 1..];
            offset += i + 1 + close + 1;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: text.to_string(),
            parts,
            late_placeholder,
        })
    }

    /// The text as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Fills in the placeholders.
    pub fn render(&self, values: &Placeholders<'_>) -> Result<String, UnresolvedPlaceholder> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Placeholder(p) => out.push_str(&values.value(*p)?.to_string_lossy()),
            }
        }
        Ok(out)
    }

    /// True if the template uses `placeholder`.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Placeholder(placeholder))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// An absolute path, possibly rooted at a placeholder: `/usr`, `{repo}/target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    base: Option<Placeholder>,
    rest: PathBuf,
}

impl PathTemplate {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let template = Template::parse(text)?;
        let (base, rest) = match template.parts.as_slice() {
            [Part::Placeholder(p)] => (Some(*p), String::new()),
            [Part::Placeholder(p), Part::Literal(rest)] => (Some(*p), rest.clone()),
            [Part::Literal(rest)] => (None, rest.clone()),
            // An empty path says nothing: relative to wherever it is used.
            [] => return Err(TemplateError::Relative),
            _ => {
                let offset = template.late_placeholder.expect(
                    "a template that is not one of the shapes above has a late placeholder",
                );
                return Err(TemplateError::PlaceholderNotFirst { offset });
            }
        };
        // Absolute: `/…` everywhere, and on Windows also `C:\…` and `\\server\…`.
        if base.is_none() && !rest.starts_with('/') && !Path::new(&rest).is_absolute() {
            return Err(TemplateError::Relative);
        }
        if base.is_some() && !rest.is_empty() && !rest.starts_with(std::path::is_separator) {
            // `{repo}target` would silently name a sibling of the repo.
            return Err(TemplateError::Relative);
        }
        let rest_path = PathBuf::from(&rest);
        if rest_path.components().any(|c| c == Component::ParentDir) {
            return Err(TemplateError::ParentComponent);
        }
        // Keep only normal components after a placeholder; a plain absolute
        // path keeps its root.
        let rest: PathBuf = rest_path
            .components()
            .filter(|c| {
                !matches!(c, Component::CurDir)
                    && (base.is_none() || matches!(c, Component::Normal(_)))
            })
            .collect();
        // After a placeholder only plain names may follow: on Windows
        // `{repo}/C:/x` would otherwise become the drive-relative `C:x`
        // and replace the repository in the joined path.
        if base.is_some() && !rest.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(TemplateError::Relative);
        }
        Ok(Self {
            source: text.to_string(),
            base,
            rest,
        })
    }

    /// The text as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The placeholder the path starts with, if any.
    pub fn base(&self) -> Option<Placeholder> {
        self.base
    }

    /// Fills in the placeholder.
    pub fn resolve(&self, values: &Placeholders<'_>) -> Result<PathBuf, UnresolvedPlaceholder> {
        Ok(match self.base {
            None => self.rest.clone(),
            Some(p) if self.rest.as_os_str().is_empty() => values.value(p)?.to_path_buf(),
            Some(p) => values.value(p)?.join(&self.rest),
        })
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> (PathBuf, PathBuf, PathBuf) {
        ("/r".into(), "/h".into(), "/t/j1".into())
    }

    #[test]
    fn paths_resolve() {
        let (r, h, t) = values();
        let v = Placeholders {
            repo: &r,
            home: Some(&h),
            tmp: &t,
        };
        let cases = [
            ("/usr", "/usr"),
            ("{repo}", "/r"),
            ("{repo}/target", "/r/target"),
            ("{home}/.cargo/bin/", "/h/.cargo/bin"),
            ("{tmp}", "/t/j1"),
            ("/usr//lib/./x", "/usr/lib/x"),
        ];
        for (text, want) in cases {
            let t = PathTemplate::parse(text).unwrap();
            assert_eq!(t.resolve(&v).unwrap(), PathBuf::from(want), "{text}");
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        use TemplateError::*;
        assert_eq!(PathTemplate::parse("usr/lib"), Err(Relative));
        assert_eq!(PathTemplate::parse("{repo}target"), Err(Relative));
        assert_eq!(PathTemplate::parse("/usr/../etc"), Err(ParentComponent));
        assert_eq!(PathTemplate::parse("{repo}/../x"), Err(ParentComponent));
        assert!(matches!(
            PathTemplate::parse("/x/{repo}"),
            Err(PlaceholderNotFirst { offset: 3 })
        ));
        assert!(matches!(
            PathTemplate::parse("{rpeo}/x"),
            Err(UnknownPlaceholder { ref name, offset: 0 }) if name == "rpeo"
        ));
        assert!(matches!(
            PathTemplate::parse("{repo"),
            Err(Unclosed { offset: 0 })
        ));
        // Offsets count every byte before the brace, escaped braces too.
        assert_eq!(
            PathTemplate::parse("/a{{b}}c{x"),
            Err(Unclosed { offset: 8 })
        );
        // The first placeholder that is not first is the one named.
        assert_eq!(
            PathTemplate::parse("/a/{repo}/{tmp}"),
            Err(PlaceholderNotFirst { offset: 3 })
        );
    }

    #[test]
    fn templates_show_their_source_and_what_they_use() {
        let value = Template::parse("{tmp}/x:{{home}}").unwrap();
        assert_eq!(value.to_string(), "{tmp}/x:{{home}}");
        assert_eq!(value.as_str(), "{tmp}/x:{{home}}");
        assert!(value.uses(Placeholder::Tmp));
        assert!(
            !value.uses(Placeholder::Home),
            "an escaped brace is not a placeholder"
        );
        let path = PathTemplate::parse("{home}/.cargo").unwrap();
        assert_eq!(path.to_string(), "{home}/.cargo");
        assert_eq!(path.as_str(), "{home}/.cargo");
        assert_eq!(path.base(), Some(Placeholder::Home));
        assert_eq!(PathTemplate::parse("/usr").unwrap().base(), None);
        assert_eq!(PathTemplate::parse(""), Err(TemplateError::Relative));
        assert_eq!(
            PathTemplate::parse("{repo}/{tmp}"),
            Err(TemplateError::PlaceholderNotFirst { offset: 7 })
        );
        assert_eq!(
            PathTemplate::parse("/{{x}}/{home}"),
            Err(TemplateError::PlaceholderNotFirst { offset: 7 })
        );
        assert_eq!(
            UnresolvedPlaceholder(Placeholder::Home).to_string(),
            "`{home}` has no value on this host (HOME is not set)"
        );
    }

    #[test]
    fn value_templates_fill_anywhere_and_escape_braces() {
        let (r, h, t) = values();
        let v = Placeholders {
            repo: &r,
            home: None,
            tmp: &t,
        };
        let t1 = Template::parse("{tmp}/cache:{repo}").unwrap();
        assert_eq!(t1.render(&v).unwrap(), "/t/j1/cache:/r");
        let t2 = Template::parse("{{literal}} }").unwrap();
        assert_eq!(t2.render(&v).unwrap(), "{literal} }");
        let t3 = Template::parse("{home}/x").unwrap();
        assert_eq!(t3.render(&v), Err(UnresolvedPlaceholder(Placeholder::Home)));
        let _ = h;
    }
}
