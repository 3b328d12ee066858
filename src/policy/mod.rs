//! The trust policy: an admin-written TOML file that says which plugins may
//! run which binaries, with which environment, paths, ports and limits.
//!
//! Loading is strict: unknown keys, wrong types, bad globs and regexes,
//! unknown placeholders, relative paths, zero or contradictory limits,
//! duplicates and undefined binaries are all errors, and every one of them is
//! reported at once with `file:line:col`. The schema is documented key by key
//! in `policy/README.md`.

//!
//! How the loader is laid out: `schema.rs` declares every key (type,
//! minimum, choices, default, where it may be set); `defaults.rs` holds the
//! built-in defaults and deny list; `load.rs` reads the document, each
//! section in `sections/` reads its own keys through `section.rs` (which
//! applies the schema) into the struct beside it, and `validate.rs` checks
//! what needs the whole policy. `reader.rs` turns spanned TOML values into
//! diagnostics and is shared with the test-case loader.

pub mod defaults;
mod diagnostic;
mod load;
mod machine;
mod model;
pub(crate) mod reader;
pub mod schema;
mod section;
mod sections;
mod template;
pub mod units;
mod validate;

pub use defaults::{
    BUILTIN_ENV_DENY, DEFAULT_GIT_ACCESS, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_TIMEOUT_SECS,
    DEFAULT_NETLINK_ROUTE, DEFAULT_TIMEOUT_SECS, DEFAULT_UDP, DEFAULT_UNIX_ANY,
    MIN_PROGRESS_INTERVAL, builtin_deny_patterns,
};
pub use diagnostic::{Code, Diagnostic, Severity, Source, did_you_mean};
pub use machine::ThisMachine;
pub use model::*;
pub use sections::{
    ArgElement, ArgPattern, ArgRules, BinaryRule, Difference, EnvLayer, FilesystemLayer, GitAccess,
    Layer, LimitsLayer, NetworkLayer, OnDisallowed, OnLongTimeout, OutputLayer, OutputMode,
    PluginArgs, PluginRule, ProgressLayer, ProgressPattern, REST_MARKER, Sanitize, SeccompLayer,
    WhenFull, check_env_name, valid_binary_name, valid_plugin_name,
};
pub use template::{PathTemplate, Placeholder, Placeholders, Template, UnresolvedPlaceholder};

use sha2::Digest;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The policy compiled into the binary, used when no `--policy` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policy/default.toml");

/// The largest policy file [`Policy::load`] reads: far more than any
/// policy needs (the shipped ones are a few KiB), small enough that a
/// wrong path costs nothing.
pub const MAX_POLICY_FILE_BYTES: u64 = 1 << 20;

/// The name the embedded default policy goes by in messages.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default policy>";

/// Diagnostics together with the text they point into, ready to render.
#[derive(Debug, Clone)]
pub struct Report {
    /// The policy's name and text, which the diagnostics' spans index.
    pub source: Source,
    /// Errors and warnings, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Every diagnostic, rendered in the house format.
    pub fn render(&self) -> String {
        self.source.render_all(&self.diagnostics)
    }

    /// How many are errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// How many are warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the policy file {}: {source}", path.display())]
    Read {
        /// The policy file, as given.
        path: PathBuf,
        /// Why opening or reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file: reading a FIFO, a device such as
    /// `/dev/zero`, a socket or a directory could block or never end.
    #[error("cannot read the policy file {}: it is {kind}, not a regular file; give the path of a policy file", path.display())]
    NotAFile {
        /// The path, as given.
        path: PathBuf,
        /// What it is instead.
        kind: crate::platform::FileKind,
    },
    /// The file is bigger than any policy needs to be.
    #[error("cannot read the policy file {}: it is {} ({size} bytes), more than the {} a policy file may have", path.display(), units::format_size(*size), units::format_size(*limit))]
    TooLarge {
        /// The policy file, as given.
        path: PathBuf,
        /// Its size in bytes (at least `limit + 1`).
        size: u64,
        /// [`MAX_POLICY_FILE_BYTES`].
        limit: u64,
    },
    /// The file's bytes could not be decoded as UTF-8.
    #[error("the policy file {} is not UTF-8 text", path.display())]
    Decode {
        /// The policy file, as given.
        path: PathBuf,
        /// Where the first invalid byte is.
        #[source]
        source: std::str::Utf8Error,
    },
    /// The file has errors; the report lists every one.
    #[error("{} has {} error(s):\n{}", .0.source.name, .0.error_count(), .0.render())]
    Invalid(Report),
}

/// A policy that loaded, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    /// The validated policy, shared with the hosts that run it.
    pub policy: Arc<Policy>,
    /// Warnings only (no errors: a policy with errors does not load); may be
    /// empty.
    pub warnings: Report,
}

impl Policy {
    /// Reads and validates the policy file at `path`: a regular file of at
    /// most [`MAX_POLICY_FILE_BYTES`], read in bounded time and memory
    /// whatever the path really is.
    pub fn load(path: impl AsRef<Path>) -> Result<LoadedPolicy, LoadError> {
        Self::load_for(path, ThisMachine::Load)
    }

    /// Reads and validates the policy file at `path`, judging its binaries
    /// against this machine as `mode` says (`jobwarden check` uses
    /// [`ThisMachine::Check`]: a binary path that is not a program, or a
    /// pin that does not match the file here, is an error).
    pub fn load_for(path: impl AsRef<Path>, mode: ThisMachine) -> Result<LoadedPolicy, LoadError> {
        use crate::platform::{SmallFileError, read_small_file};
        let path = path.as_ref();
        let bytes = read_small_file(path, MAX_POLICY_FILE_BYTES).map_err(|e| match e {
            SmallFileError::NotAFile(kind) => LoadError::NotAFile {
                path: path.to_path_buf(),
                kind,
            },
            SmallFileError::TooLarge { size, limit } => LoadError::TooLarge {
                path: path.to_path_buf(),
                size,
                limit,
            },
            SmallFileError::Io(source) => LoadError::Read {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|source| LoadError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_for(&path.display().to_string(), text, mode)
    }

    /// Validates policy text. `name` is how messages refer to it.
    pub fn from_toml(name: &str, text: &str) -> Result<LoadedPolicy, LoadError> {
        Self::from_toml_for(name, text, ThisMachine::Load)
    }

    /// Validates policy text, judging its binaries against this machine as
    /// `mode` says.
    pub fn from_toml_for(
        name: &str,
        text: &str,
        mode: ThisMachine,
    ) -> Result<LoadedPolicy, LoadError> {
        let sha256 = hex(&sha2::Sha256::digest(text.as_bytes()));
        let source = Source {
            name: name.to_string(),
            text: Arc::from(text),
        };
        match load::load(name, text, sha256, mode) {
            Ok(loaded) => Ok(LoadedPolicy {
                policy: Arc::new(loaded.policy),
                warnings: Report {
                    source,
                    diagnostics: loaded.warnings,
                },
            }),
            Err(diagnostics) => Err(LoadError::Invalid(Report {
                source,
                diagnostics,
            })),
        }
    }

    /// The policy compiled into this build.
    pub fn embedded_default() -> Arc<Policy> {
        Self::from_toml(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT)
            .expect("the embedded default policy is valid (tested in policy/tests)")
            .policy
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
