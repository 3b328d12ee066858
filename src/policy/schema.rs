//! The policy format's keys, in one place: the loader takes its lists of
//! known keys from here, and `jobwarden schema` generates the JSON Schema
//! from here, so the two cannot drift apart (a test keeps the shipped
//! `policy/jobwarden.schema.json` equal to what this generates).

use serde_json::{Value, json};

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Integer {
        min: i64,
    },
    Number {
        min: f64,
        max: f64,
    },
    Bool,
    Str,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A byte size: an integer or a string like "512 MiB".
    Size {
        unlimited: bool,
    },
    /// A positive integer or "unlimited".
    CountOrUnlimited,
    /// 64 hexadecimal digits.
    Sha256,
    /// An absolute path or one starting with a placeholder.
    Path,
    /// An array of paths.
    PathList,
    /// An array of glob patterns.
    GlobList,
    /// An array of plain strings.
    StringList,
    /// An array of regular expressions.
    RegexList,
    /// An array of TCP ports.
    Ports {
        allow_zero: bool,
    },
    /// A table of variable names to string values.
    StringTable,
    /// A nested table with these keys.
    Table(&'static [KeySpec]),
    /// A table whose keys are names (binaries, plugins) of tables with these keys.
    NamedTables(&'static [KeySpec]),
}

/// One key of a section.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn key(name: &'static str, kind: Kind, doc: &'static str) -> KeySpec {
    KeySpec { name, kind, doc }
}

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
        Kind::Choice(&["reject", "drop"]),
        "What a request's denied or not-allowed variable does: refuse the job, or drop the variable.",
    ),
    key(
        "deny_defaults",
        Kind::Bool,
        "Top level only: whether the built-in deny list (LD_*, DYLD_*, *_TOKEN, ...) applies.",
    ),
];

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
        "Paths the job may execute beneath.",
    ),
];

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
    key("unrestricted", Kind::Bool, "No TCP restriction at all."),
];

pub const LIMITS: &[KeySpec] = &[
    key(
        "cpu_secs",
        Kind::CountOrUnlimited,
        "CPU seconds per process (RLIMIT_CPU).",
    ),
    key(
        "memory",
        Kind::Size { unlimited: true },
        "Memory of the whole job tree (memory cgroup; RLIMIT_AS per process where none).",
    ),
    key(
        "processes",
        Kind::CountOrUnlimited,
        "Processes in the job tree (pids cgroup).",
    ),
    key(
        "open_files",
        Kind::CountOrUnlimited,
        "Open descriptors per process (RLIMIT_NOFILE); at least 4.",
    ),
    key(
        "file_size",
        Kind::Size { unlimited: true },
        "Largest file a process may write (RLIMIT_FSIZE).",
    ),
    key("core_dumps", Kind::Bool, "Whether processes may dump core."),
    key(
        "timeout_secs",
        Kind::Integer { min: 1 },
        "Wall-clock limit when a request asks for none.",
    ),
    key(
        "max_timeout_secs",
        Kind::Integer { min: 1 },
        "The longest timeout a request may ask for.",
    ),
    key(
        "on_long_timeout",
        Kind::Choice(&["clamp", "reject"]),
        "What a longer request gets: the maximum, or a denial.",
    ),
    key(
        "kill_grace_secs",
        Kind::Number {
            min: 0.0,
            max: 3600.0,
        },
        "Seconds between SIGTERM and SIGKILL on timeout, cancel or shutdown.",
    ),
];

pub const OUTPUT: &[KeySpec] = &[
    key(
        "mode",
        Kind::Choice(&["lines", "chunks"]),
        "One JobLogLine per line, or JobOutputChunks of bytes.",
    ),
    key(
        "sanitize",
        Kind::Choice(&["colors", "strip", "raw"]),
        "Keep colours and remove other escape sequences, remove all, or pass bytes untouched.",
    ),
    key(
        "max_line_bytes",
        Kind::Size { unlimited: false },
        "Longer lines are split; at least 80.",
    ),
    key(
        "tail_bytes",
        Kind::Size { unlimited: false },
        "How much of the end of stdout JobCompleted carries; 0 for none.",
    ),
    key(
        "max_queued_events",
        Kind::Integer { min: 16 },
        "Top level or plugin: undrained events kept per plugin.",
    ),
    key(
        "max_queued_bytes",
        Kind::Size { unlimited: false },
        "Top level or plugin: undrained bytes kept per plugin; at least 64 KiB.",
    ),
];

pub const PROGRESS: &[KeySpec] = &[
    key(
        "interval_ms",
        Kind::Integer { min: 200 },
        "How often running jobs are sampled.",
    ),
    key("sample", Kind::Bool, "Whether resource sampling runs."),
    key(
        "patterns",
        Kind::RegexList,
        "Regexes with named groups percent, step, or current and total, tried on every output line.",
    ),
];

pub const SECCOMP: &[KeySpec] = &[key(
    "deny_dangerous",
    Kind::Bool,
    "Linux: a seccomp filter makes ptrace, process_vm_readv/writev, process_madvise, pidfd_getfd, perf_event_open, bpf, userfaultfd, keyctl, add_key, request_key, mount and the mount API, unshare, setns, namespace-creating clone flags and the TIOCSTI and TIOCLINUX ioctls fail with EPERM.",
)];

pub const ARGS: &[KeySpec] = &[
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
        Kind::Size { unlimited: false },
        "Most bytes of all arguments together.",
    ),
];

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

pub const PLUGIN: &[KeySpec] = &[
    key(
        "binaries",
        Kind::StringList,
        "Binaries (defined under [binaries]) this plugin may run.",
    ),
    key(
        "max_concurrent",
        Kind::Integer { min: 1 },
        "Jobs beyond this wait as Pending and start in order.",
    ),
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

pub const TOP: &[KeySpec] = &[
    key(
        "version",
        Kind::Integer { min: 1 },
        "Schema version; must be 1.",
    ),
    key(
        "enforcement",
        Kind::Choice(&["required", "best_effort"]),
        "Refuse jobs whose confinement cannot be fully applied here, or run them with what can be.",
    ),
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

/// The names of a section's keys, in order.
pub fn names(specs: &'static [KeySpec]) -> impl Iterator<Item = &'static str> {
    specs.iter().map(|k| k.name)
}

/// The JSON Schema (draft 2020-12) of the policy format.
pub fn json_schema() -> Value {
    let mut schema = table_schema(TOP);
    let object = schema.as_object_mut().expect("a table schema is an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert(
        "$id".into(),
        json!("https://jobwarden.invalid/policy/v1.schema.json"),
    );
    object.insert("title".into(), json!("jobwarden trust policy, version 1"));
    object.insert(
        "description".into(),
        json!("Which plugins may run which binaries, and with what environment, paths, ports and limits. Documented key by key in policy/README.md."),
    );
    object.insert("required".into(), json!(["version"]));
    schema
}

fn table_schema(specs: &'static [KeySpec]) -> Value {
    let mut properties = serde_json::Map::new();
    for spec in specs {
        let mut value = kind_schema(spec.kind);
        if let Some(object) = value.as_object_mut() {
            object.insert("description".into(), json!(spec.doc));
        }
        properties.insert(spec.name.into(), value);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn kind_schema(kind: Kind) -> Value {
    const SIZE_PATTERN: &str =
        r"^\s*[0-9_]+\s*(B|b|K|k|KiB|Ki|M|MiB|Mi|G|GiB|Gi|T|TiB|Ti|kB|KB|MB|GB|TB)?\s*$";
    const PATH_PATTERN: &str = r"^(/|\{(repo|home|tmp)\}(/|$))";
    match kind {
        Kind::Integer { min } => json!({"type": "integer", "minimum": min}),
        Kind::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Str => json!({"type": "string"}),
        Kind::Choice(values) => json!({"enum": values}),
        Kind::Size { unlimited } => {
            let mut any = vec![
                json!({"type": "integer", "minimum": 1}),
                json!({"type": "string", "pattern": SIZE_PATTERN}),
            ];
            if unlimited {
                any.push(json!({"const": "unlimited"}));
            }
            json!({"anyOf": any})
        }
        Kind::CountOrUnlimited => {
            json!({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "unlimited"}]})
        }
        Kind::Sha256 => json!({"type": "string", "pattern": "^(sha256:)?[0-9a-fA-F]{64}$"}),
        Kind::Path => json!({"type": "string", "pattern": PATH_PATTERN}),
        Kind::PathList => {
            json!({"type": "array", "items": {"type": "string", "pattern": PATH_PATTERN}, "uniqueItems": true})
        }
        Kind::GlobList | Kind::StringList | Kind::RegexList => {
            json!({"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": true})
        }
        Kind::Ports { allow_zero } => json!({
            "type": "array",
            "items": {"type": "integer", "minimum": if allow_zero { 0 } else { 1 }, "maximum": 65535},
            "uniqueItems": true
        }),
        Kind::StringTable => json!({
            "type": "object",
            "propertyNames": {"pattern": "^[^=\\u0000]+$"},
            "additionalProperties": {"type": "string"}
        }),
        Kind::Table(specs) => table_schema(specs),
        Kind::NamedTables(specs) => {
            json!({"type": "object", "additionalProperties": table_schema(specs)})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_schema_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policy/jobwarden.schema.json"
        ))
        .unwrap_or_default();
        assert!(
            generated == shipped,
            "policy/jobwarden.schema.json is out of date: run `cargo run -- schema > policy/jobwarden.schema.json`"
        );
    }
}
