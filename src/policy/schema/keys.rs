//! Every key of the policy format, section by section.
//!
//! One entry per key: its kind (with its minimum or choices) and its doc,
//! and, where they apply, its built-in default (a constant of
//! `defaults.rs`), the levels it may be set at, and how a value under its
//! minimum is reported.

use super::{BelowMin, Builtin, KeySpec, Kind, Place};
use crate::policy::defaults::*;
use crate::policy::diagnostic::Code;
use crate::policy::model::{Choice, Enforcement};
use crate::policy::sections::{
    GitAccess, OnDisallowed, OnLongTimeout, OutputMode, Sanitize, WhenFull,
};

const fn key(name: &'static str, kind: Kind, doc: &'static str) -> KeySpec {
    KeySpec::new(name, kind, doc)
}

/// A choice key's words, from the enum that holds its value.
const fn words<T: Choice>() -> Kind {
    Kind::Choice(T::NAMES)
}

/// `[env]`: the job's environment (at the top level, per binary and per
/// plugin).
pub const ENV: &[KeySpec] = &[
    key(
        "inherit",
        Kind::GlobList,
        "Host variables passed through, by name or glob.",
    ),
    key(
        "allow",
        Kind::GlobList,
        "Names (or globs) a request may inject.",
    ),
    key(
        "deny",
        Kind::GlobList,
        "Globs never passed, whatever inherit, set or allow say; added to the built-in list.",
    ),
    key(
        "set",
        Kind::StringTable,
        "Fixed values; placeholders {repo}, {home}, {tmp} allowed. A request may not override them.",
    ),
    key(
        "on_disallowed",
        words::<OnDisallowed>(),
        "What a request's denied or not-allowed variable does: refuse the job, or drop the variable.",
    )
    .with_default(Builtin::Word(DEFAULT_ON_DISALLOWED.name())),
    key(
        "deny_defaults",
        Kind::Bool,
        "whether the built-in deny list (LD_*, DYLD_*, *_TOKEN, ...) applies.",
    )
    .only(Place::TopOnly)
    .with_default(Builtin::Bool(DEFAULT_DENY_DEFAULTS)),
];

/// `[filesystem]`: paths the job may read, write and execute.
pub const FILESYSTEM: &[KeySpec] = &[
    key("read", Kind::PathList, "Paths the job may read beneath."),
    key(
        "read_write",
        Kind::PathList,
        "Paths the job may read and write beneath (never execute, never create devices).",
    ),
    key(
        "execute",
        Kind::PathList,
        "Paths the job may execute beneath (inside a writable root, this keeps them executable).",
    ),
    key(
        "protected",
        Kind::PathList,
        "Paths kept read-only inside writable roots, added to the built-in list (.git, .gitmodules, .vscode, .idea, .envrc); a missing one is held by an empty directory while a job runs, so it cannot be created either.",
    ),
    key(
        "git",
        words::<GitAccess>(),
        "How much of the repository's .git a job may write: read_only, commit (all but hooks, config and info), or writable.",
    )
    .with_default(Builtin::Word(DEFAULT_GIT_ACCESS.name())),
];

/// `[network]`: TCP ports and the other sockets the job may use.
pub const NETWORK: &[KeySpec] = &[
    key(
        "connect",
        Kind::Ports { allow_zero: false },
        "TCP ports the job may connect to.",
    ),
    key(
        "bind",
        Kind::Ports { allow_zero: true },
        "TCP ports the job may bind (0: an ephemeral port).",
    ),
    key(
        "unrestricted",
        Kind::Bool,
        "No network restriction at all (TCP, UDP, UNIX and every other socket).",
    )
    .with_default(Builtin::Bool(DEFAULT_NETWORK_UNRESTRICTED)),
    key(
        "udp",
        Kind::Bool,
        "UDP sockets, to any port (a system call filter cannot see the address); DNS needs it.",
    )
    .with_default(Builtin::Bool(DEFAULT_UDP)),
    key(
        "netlink_route",
        Kind::Bool,
        "NETLINK_ROUTE sockets (reading interfaces and routes).",
    )
    .with_default(Builtin::Bool(DEFAULT_NETLINK_ROUTE)),
    key(
        "unix",
        Kind::PathList,
        "Pathname UNIX sockets the job may connect to (on kernels whose Landlock cannot restrict connect() by path, granting any means every path, reported as partial).",
    ),
    key("unix_any", Kind::Bool, "Any UNIX socket, by any path.")
        .with_default(Builtin::Bool(DEFAULT_UNIX_ANY)),
];

/// `[limits]`: resource limits and timeouts.
pub const LIMITS: &[KeySpec] = &[
    key(
        "cpu_secs",
        Kind::CountOrUnlimited { min: 1 },
        "CPU seconds per process (RLIMIT_CPU).",
    )
    .with_default(Builtin::limit(DEFAULT_LIMIT)),
    key(
        "memory",
        Kind::Size {
            unlimited: true,
            min: 1,
        },
        "Memory of the whole job tree (memory cgroup; RLIMIT_AS per process where none).",
    )
    .with_default(Builtin::limit(DEFAULT_LIMIT)),
    key(
        "processes",
        Kind::CountOrUnlimited { min: 1 },
        "Processes and threads in the job tree (pids cgroup: every thread counts); a job that hits it is named in a `system` line and its report.",
    )
    .with_default(Builtin::limit(DEFAULT_LIMIT)),
    key(
        "open_files",
        Kind::CountOrUnlimited { min: 4 },
        "Open descriptors per process (RLIMIT_NOFILE); at least 4.",
    )
    .with_default(Builtin::limit(DEFAULT_LIMIT))
    .below_min(BelowMin {
        code: Code::ContradictoryLimits,
        message: "`{key}` is {value}, but every job already holds 3 descriptors (stdin, stdout, stderr)",
        help: Some("help: allow at least 16 open files"),
    }),
    key(
        "file_size",
        Kind::Size {
            unlimited: true,
            min: 1,
        },
        "Largest file a process may write (RLIMIT_FSIZE).",
    )
    .with_default(Builtin::limit(DEFAULT_LIMIT)),
    key("core_dumps", Kind::Bool, "Whether processes may dump core.")
        .with_default(Builtin::Bool(DEFAULT_CORE_DUMPS)),
    key(
        "timeout_secs",
        Kind::Integer { min: 1 },
        "Wall-clock limit when a request asks for none.",
    )
    .with_default(Builtin::Integer(DEFAULT_TIMEOUT_SECS)),
    key(
        "max_timeout_secs",
        Kind::Integer { min: 1 },
        "The longest timeout a request may ask for.",
    )
    .with_default(Builtin::Integer(DEFAULT_MAX_TIMEOUT_SECS)),
    key(
        "on_long_timeout",
        words::<OnLongTimeout>(),
        "What a longer request gets: the maximum, or a denial.",
    )
    .with_default(Builtin::Word(DEFAULT_ON_LONG_TIMEOUT.name())),
    key(
        "kill_grace_secs",
        Kind::Number {
            min: 0.0,
            max: 3600.0,
        },
        "Seconds between SIGTERM and SIGKILL on timeout, cancel or shutdown.",
    )
    .with_default(Builtin::Number(DEFAULT_KILL_GRACE.as_secs_f64())),
];

/// The event queue is a plugin's: a binary cannot size it.
const QUEUE: Place = Place::NotPerBinary {
    because: "the event queue belongs to a plugin",
};

/// `[output]`: how output reaches the plugin, and the plugin's queue.
pub const OUTPUT: &[KeySpec] = &[
    key(
        "mode",
        words::<OutputMode>(),
        "One JobLogLine per line, or JobOutputChunks of bytes.",
    )
    .with_default(Builtin::Word(DEFAULT_OUTPUT_MODE.name())),
    key(
        "sanitize",
        words::<Sanitize>(),
        "Keep colours and remove other escape sequences, remove all, or pass bytes untouched.",
    )
    .with_default(Builtin::Word(DEFAULT_SANITIZE.name())),
    key(
        "max_line_bytes",
        Kind::Size {
            unlimited: false,
            min: 80,
        },
        "Longer lines are split; at least 80.",
    )
    .with_default(Builtin::Integer(DEFAULT_MAX_LINE_BYTES)),
    key(
        "tail_bytes",
        Kind::Size {
            unlimited: false,
            min: 0,
        },
        "How much of the end of stdout JobCompleted carries; 0 for none.",
    )
    .with_default(Builtin::Integer(DEFAULT_TAIL_BYTES)),
    key(
        "max_queued_events",
        Kind::Integer { min: 16 },
        "undrained events kept per plugin.",
    )
    .only(QUEUE)
    .with_default(Builtin::Integer(DEFAULT_MAX_QUEUED_EVENTS)),
    key(
        "max_queued_bytes",
        Kind::Size {
            unlimited: false,
            min: 64 * 1024,
        },
        "undrained bytes kept per plugin; at least 64 KiB.",
    )
    .only(QUEUE)
    .with_default(Builtin::Integer(DEFAULT_MAX_QUEUED_BYTES)),
    key(
        "when_full",
        words::<WhenFull>(),
        "What a full queue does: drop the oldest output (and say how many events), or stop reading the job's pipes until the plugin drains, so the job waits and nothing is lost.",
    )
    .only(QUEUE)
    .with_default(Builtin::Word(DEFAULT_WHEN_FULL.name())),
];

/// `[progress]`: resource sampling and declared progress.
pub const PROGRESS: &[KeySpec] = &[
    key(
        "interval_ms",
        Kind::Integer {
            min: MIN_PROGRESS_INTERVAL.as_millis() as i64,
        },
        "How often running jobs are sampled.",
    )
    .with_default(Builtin::Integer(
        DEFAULT_PROGRESS_INTERVAL.as_millis() as u64
    ))
    .below_min(BelowMin {
        code: Code::InvalidValue,
        message: "`{key}` is {value} ms; the shortest sampling interval is {min} ms",
        help: None,
    }),
    key("sample", Kind::Bool, "Whether resource sampling runs.")
        .with_default(Builtin::Bool(DEFAULT_SAMPLE)),
    key(
        "patterns",
        Kind::RegexList,
        "Regexes with named groups percent, step, or current and total, tried on every output line.",
    ),
];

/// `[seccomp]`: the opt-in system call filter (Linux).
pub const SECCOMP: &[KeySpec] = &[key(
    "deny_dangerous",
    Kind::Bool,
    "Linux: a seccomp filter makes ptrace, process_vm_readv/writev, process_madvise, pidfd_getfd, perf_event_open, bpf, userfaultfd, keyctl, add_key, request_key, mount and the mount API, unshare, setns, namespace-creating clone flags and the TIOCSTI and TIOCLINUX ioctls fail with EPERM.",
)
.with_default(Builtin::Bool(DEFAULT_DENY_DANGEROUS))];

/// `[binaries.NAME.args]`: rules on a binary's arguments.
pub const ARGS: &[KeySpec] = &[
    key(
        "allow",
        Kind::ArgPatterns,
        "If set, the arguments must match one of these command lines: each an array of literals and globs (a glob never matches an empty argument, nor an option unless it starts with '-'), matched one element per argument; \"...\" as the last element allows any further arguments.",
    ),
    key(
        "deny",
        Kind::GlobList,
        "A job is refused if any argument matches one of these globs.",
    ),
    key(
        "deny_long_options",
        Kind::StringList,
        "Long options refused in every spelling: --name, --name=value and abbreviations.",
    ),
    key(
        "subcommands",
        Kind::StringList,
        "If set, the first argument not starting with '-' must be one of these.",
    ),
    key("max_count", Kind::Integer { min: 0 }, "Most arguments."),
    key(
        "max_bytes",
        Kind::Size {
            unlimited: false,
            min: 1,
        },
        "Most bytes of all arguments together.",
    ),
];

/// `[binaries.NAME]`: one trusted binary, and its overrides of the
/// sections.
pub const BINARY: &[KeySpec] = &[
    key(
        "path",
        Kind::Path,
        "The file to run; {home} and {repo} allowed. Without it, search_path is searched.",
    ),
    key(
        "sha256",
        Kind::Sha256,
        "Expected sha256 of the file, checked before every start.",
    ),
    key(
        "helpers",
        Kind::PathList,
        "Files or directories this binary may execute besides itself.",
    ),
    key("args", Kind::Table(ARGS), "Rules on the arguments."),
    key(
        "env",
        Kind::Table(ENV),
        "Environment overrides for this binary.",
    ),
    key(
        "filesystem",
        Kind::Table(FILESYSTEM),
        "Filesystem overrides for this binary.",
    ),
    key(
        "network",
        Kind::Table(NETWORK),
        "Network overrides for this binary.",
    ),
    key(
        "limits",
        Kind::Table(LIMITS),
        "Limit overrides for this binary.",
    ),
    key(
        "output",
        Kind::Table(OUTPUT),
        "Output overrides for this binary (not the queue bounds).",
    ),
    key(
        "progress",
        Kind::Table(PROGRESS),
        "Progress overrides for this binary.",
    ),
    key(
        "seccomp",
        Kind::Table(SECCOMP),
        "System call filter override for this binary.",
    ),
];

/// `[plugins.NAME.args.BINARY]`: what a plugin may override of a binary's
/// argument rules.
pub const PLUGIN_ARGS: &[KeySpec] = &[key(
    "allow",
    Kind::ArgPatterns,
    "The command lines this plugin may run the binary with; replaces the binary's own args.allow for this plugin's jobs.",
)];

/// `[plugins.NAME]`: what one plugin may run, and its overrides of the
/// sections.
pub const PLUGIN: &[KeySpec] = &[
    key(
        "binaries",
        Kind::StringList,
        "Binaries (defined under [binaries]) this plugin may run.",
    ),
    key(
        "args",
        Kind::NamedTables(PLUGIN_ARGS),
        "Per binary this plugin may run: argument patterns that replace the binary's args.allow.",
    ),
    key(
        "max_concurrent",
        Kind::Integer { min: 1 },
        "Jobs beyond this wait as Pending and start in order.",
    )
    .with_default(Builtin::Integer(DEFAULT_MAX_CONCURRENT)),
    key(
        "env",
        Kind::Table(ENV),
        "Environment overrides for this plugin's jobs.",
    ),
    key(
        "filesystem",
        Kind::Table(FILESYSTEM),
        "Filesystem overrides for this plugin's jobs.",
    ),
    key(
        "network",
        Kind::Table(NETWORK),
        "Network overrides for this plugin's jobs.",
    ),
    key(
        "limits",
        Kind::Table(LIMITS),
        "Limit overrides for this plugin's jobs.",
    ),
    key(
        "output",
        Kind::Table(OUTPUT),
        "Output overrides for this plugin's jobs.",
    ),
    key(
        "progress",
        Kind::Table(PROGRESS),
        "Progress overrides for this plugin's jobs.",
    ),
    key(
        "seccomp",
        Kind::Table(SECCOMP),
        "System call filter override for this plugin's jobs.",
    ),
];

/// `enforcement = { ... }`: one level per group of report items; a group
/// left out is required.
pub const ENFORCEMENT: &[KeySpec] = &[
    key(
        "confinement",
        words::<Enforcement>(),
        "Filesystem, network, sockets, scopes, privileges, the kernel baseline, session and descriptors.",
    )
    .with_default(Builtin::Word(DEFAULT_ENFORCEMENT.name())),
    key(
        "limits",
        words::<Enforcement>(),
        "CPU, memory, processes, open files, file size and core dumps.",
    )
    .with_default(Builtin::Word(DEFAULT_ENFORCEMENT.name())),
    key(
        "cleanup",
        words::<Enforcement>(),
        "Whole-tree cleanup and dying with the host.",
    )
    .with_default(Builtin::Word(DEFAULT_ENFORCEMENT.name())),
];

/// The top level of a policy file: every section and table it may hold.
pub const TOP: &[KeySpec] = &[
    key(
        "version",
        Kind::Integer { min: 1 },
        "Schema version; must be 1.",
    ),
    key(
        "enforcement",
        Kind::ChoiceOrTable(<Enforcement as Choice>::NAMES, ENFORCEMENT),
        "Refuse jobs whose confinement cannot be fully applied here (required), or run them with what can be (best_effort); a table sets confinement, limits and cleanup separately.",
    )
    .with_default(Builtin::Word(DEFAULT_ENFORCEMENT.name())),
    key(
        "search_path",
        Kind::PathList,
        "Directories searched, in order, for binaries without a path. Never PATH.",
    ),
    key("env", Kind::Table(ENV), "The job's environment."),
    key(
        "filesystem",
        Kind::Table(FILESYSTEM),
        "Paths the job may read, write and execute.",
    ),
    key(
        "network",
        Kind::Table(NETWORK),
        "TCP ports the job may use.",
    ),
    key(
        "limits",
        Kind::Table(LIMITS),
        "Resource limits and timeouts.",
    ),
    key(
        "output",
        Kind::Table(OUTPUT),
        "How output reaches the plugin.",
    ),
    key(
        "progress",
        Kind::Table(PROGRESS),
        "Sampling and declared progress.",
    ),
    key(
        "binaries",
        Kind::NamedTables(BINARY),
        "Trusted binaries, by the name requests use.",
    ),
    key(
        "plugins",
        Kind::NamedTables(PLUGIN),
        "Plugins and what they may run; \"*\" is the catch-all.",
    ),
    key(
        "seccomp",
        Kind::Table(SECCOMP),
        "The opt-in system call filter (Linux).",
    ),
];
