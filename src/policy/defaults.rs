//! What a job gets where the policy is silent.
//!
//! Each built-in default is declared once, here: the key specification in
//! [`super::schema`] names it (so `jobwarden schema` shows it to editors), and
//! the decision falls back to it (so `explain` shows it as `built-in
//! default`). Nothing else writes these values again.

use super::model::{Enforcement, Limit, Pattern};
use super::sections::{GitAccess, OnDisallowed, OnLongTimeout, OutputMode, Sanitize, WhenFull};
use std::time::Duration;

/// `enforcement`: refuse what cannot be fully enforced.
pub const DEFAULT_ENFORCEMENT: Enforcement = Enforcement::Required;

/// `env.on_disallowed`: a request's disallowed variable refuses the job.
pub const DEFAULT_ON_DISALLOWED: OnDisallowed = OnDisallowed::Reject;
/// `env.deny_defaults`: the built-in deny list applies.
pub const DEFAULT_DENY_DEFAULTS: bool = true;

/// `network.unrestricted`: TCP is confined to the listed ports.
pub const DEFAULT_NETWORK_UNRESTRICTED: bool = false;
/// UDP sockets are refused unless granted.
pub const DEFAULT_UDP: bool = false;
/// Netlink route sockets are refused unless granted.
pub const DEFAULT_NETLINK_ROUTE: bool = false;
/// UNIX sockets are refused unless granted.
pub const DEFAULT_UNIX_ANY: bool = false;
/// `.git` is read-only.
pub const DEFAULT_GIT_ACCESS: GitAccess = GitAccess::ReadOnly;

/// `limits.cpu_secs`, `memory`, `processes`, `open_files`, `file_size`:
/// no limit unless the policy sets one.
pub const DEFAULT_LIMIT: Limit = Limit::Unlimited;
/// `limits.core_dumps`: no core files.
pub const DEFAULT_CORE_DUMPS: bool = false;
/// The built-in default timeout when the policy sets none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// The built-in maximum timeout when the policy sets none.
pub const DEFAULT_MAX_TIMEOUT_SECS: u64 = 3600;
/// `limits.on_long_timeout`: an over-long request gets the maximum.
pub const DEFAULT_ON_LONG_TIMEOUT: OnLongTimeout = OnLongTimeout::Clamp;
/// The grace period between the polite and the forced kill, unless the policy says.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// `output.mode`: one event per line.
pub const DEFAULT_OUTPUT_MODE: OutputMode = OutputMode::Lines;
/// `output.sanitize`: colours survive, every other escape is removed.
pub const DEFAULT_SANITIZE: Sanitize = Sanitize::Colors;
/// `output.max_line_bytes`.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 4096;
/// `output.tail_bytes`.
pub const DEFAULT_TAIL_BYTES: u64 = 4096;
/// `output.max_queued_events`.
pub const DEFAULT_MAX_QUEUED_EVENTS: u64 = 10_000;
/// `output.max_queued_bytes`.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 16 << 20;
/// `output.when_full`: a full queue drops the oldest output (a render loop
/// that falls behind wants the latest lines, not a stalled job).
pub const DEFAULT_WHEN_FULL: WhenFull = WhenFull::DropOldest;

/// Built-in sampling interval.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest sampling interval a policy may ask for.
pub const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// `progress.sample`: resource sampling runs.
pub const DEFAULT_SAMPLE: bool = true;

/// `seccomp.deny_dangerous`: the filter is opt-in.
pub const DEFAULT_DENY_DANGEROUS: bool = false;

/// The built-in per-plugin concurrency.
pub const DEFAULT_MAX_CONCURRENT: u64 = 4;

/// The deny patterns that apply unless `env.deny_defaults = false`.
pub const BUILTIN_ENV_DENY: &[&str] = &[
    "LD_*",
    "DYLD_*",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "PROMPT_COMMAND",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "RUBYOPT",
    "NODE_OPTIONS",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_KEY_*",
    "GIT_CONFIG_VALUE_*",
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "SSH_AUTH_SOCK",
    "*_TOKEN",
    "*_TOKEN_*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*_API_KEY",
    "*_ACCESS_KEY*",
    "*_PRIVATE_KEY*",
    "*CREDENTIAL*",
];

/// The built-in deny list as patterns, keyed `env.deny_defaults[i]`;
/// compiled once per process.
pub fn builtin_deny_patterns() -> &'static [Pattern] {
    static PATTERNS: std::sync::OnceLock<Vec<Pattern>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        BUILTIN_ENV_DENY
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let glob = glob::Pattern::new(text).expect("built-in patterns are valid globs");
                Pattern::new(text.to_string(), format!("env.deny_defaults[{i}]"), glob)
            })
            .collect()
    })
}
