//! What the decision produces: a fully resolved [`Plan`] or a [`Denial`].

pub use crate::policy::GitAccess;
use crate::policy::{
    EnforcementPolicy, Limit, OutputMode, ProgressPattern, Sanitize, Sourced, WhenFull,
    units::format_size,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything needed to run one job, resolved from the policy: nothing here
/// is looked up again at spawn time, and nothing the request said survives
/// unless a rule allowed it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The plugin that asked.
    pub plugin: String,
    /// The request's label.
    pub label: String,
    /// The binary name the request used.
    pub binary: String,
    /// The file that will be executed: canonical, symlinks resolved.
    pub program: PathBuf,
    /// `argv[0]`: the path as the policy names it (multi-call binaries look at it).
    pub argv0: String,
    /// The key that chose the program: `binaries.git.path` or `search_path[1]`.
    pub program_key: String,
    /// Expected sha256 of `program`, checked when the job starts.
    #[serde(serialize_with = "serialize_digest")]
    pub sha256: Option<Sourced<[u8; 32]>>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// The `args.allow` pattern the arguments matched (`binaries.npm.args.allow[0]`),
    /// or `None` when no allow-list applies to this plugin and binary.
    pub args_key: Option<String>,
    /// The job's complete environment.
    pub env: BTreeMap<String, String>,
    /// For each variable of `env`, the key that put it there
    /// (`env.set.PATH`, `env.inherit[0]`, `env.allow[1]`).
    pub env_keys: BTreeMap<String, String>,
    /// Variables that were left out, and why (names only, never values).
    pub env_dropped: Vec<EnvDrop>,
    /// The canonical working directory (inside `repo`).
    pub cwd: PathBuf,
    /// The canonical repository root.
    pub repo: PathBuf,
    /// The job's private directory (`{tmp}`), created at start, removed at end.
    pub job_tmp: PathBuf,
    /// Paths the job may read, write or execute.
    pub filesystem: FilesystemPlan,
    /// Ports the job may use.
    pub network: NetworkPlan,
    /// Resource limits.
    pub limits: LimitsPlan,
    /// Wall-clock limit, from `JobStarted`.
    #[serde(serialize_with = "serialize_sourced_duration")]
    pub timeout: Sourced<Duration>,
    /// Output handling.
    pub output: OutputPlan,
    /// Progress sampling and patterns.
    pub progress: ProgressPlan,
    /// Whether the seccomp filter of dangerous system calls applies.
    pub seccomp: Sourced<bool>,
    /// Whether missing confinement refuses the job, per group of items.
    pub enforcement: EnforcementPolicy,
    /// sha256 of the policy the plan came from.
    pub policy_sha256: String,
    /// Things the admin may want to know (a clamped timeout, a skipped path).
    pub notes: Vec<String>,
}

/// A variable left out of the job's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvDrop {
    /// Its name.
    pub name: String,
    /// Where it came from: `host`, `set` or `request`.
    pub origin: &'static str,
    /// The rule that dropped it.
    pub rule: String,
}

/// A path and the key that granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanPath {
    /// The path, placeholders such as `{repo}` resolved.
    pub path: PathBuf,
    /// The policy key that granted it, or a built-in name for what
    /// jobwarden adds itself (such as [`PROTECTED_KEY`](crate::decision::PROTECTED_KEY)).
    pub key: String,
}

/// Filesystem access, before Landlock and the job's mount namespace turn
/// it into rules.
#[derive(Debug, Clone, Serialize)]
pub struct FilesystemPlan {
    /// Trees the job may read (and list).
    pub read: Vec<PlanPath>,
    /// Trees the job may read, create files in and write.
    pub read_write: Vec<PlanPath>,
    /// Executable files or trees; always includes the program itself. An
    /// entry at or beneath a writable root stays executable there.
    pub execute: Vec<PlanPath>,
    /// Paths kept read-only even inside a writable root (and not creatable
    /// when missing): what runs code or changes configuration later,
    /// unsandboxed — IDE settings, `.envrc`, the repository's git hooks.
    pub protected: Vec<PlanPath>,
    /// How much of the repository's `.git` the job may write.
    pub git: Sourced<GitAccess>,
}

impl Default for FilesystemPlan {
    fn default() -> Self {
        Self {
            read: Vec::new(),
            read_write: Vec::new(),
            execute: Vec::new(),
            protected: Vec::new(),
            git: Sourced::builtin(GitAccess::ReadOnly),
        }
    }
}

/// Network access: TCP ports (Landlock), and which other kinds of socket
/// the job may create at all (the seccomp baseline).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkPlan {
    /// True when the policy lets the job use the network freely.
    pub unrestricted: bool,
    /// TCP ports the job may connect to (`network.connect`).
    pub connect: Vec<Sourced<u16>>,
    /// TCP ports the job may bind (`network.bind`; 0 is an ephemeral port).
    pub bind: Vec<Sourced<u16>>,
    /// UDP sockets (any port: a filter cannot see the address).
    pub udp: Sourced<bool>,
    /// `NETLINK_ROUTE` sockets (reading interfaces and routes).
    pub netlink_route: Sourced<bool>,
    /// Pathname UNIX sockets the job may connect to; `*` for any.
    pub unix: Vec<PlanPath>,
}

impl Default for NetworkPlan {
    fn default() -> Self {
        Self {
            unrestricted: false,
            connect: Vec::new(),
            bind: Vec::new(),
            udp: Sourced::builtin(false),
            netlink_route: Sourced::builtin(false),
            unix: Vec::new(),
        }
    }
}

impl NetworkPlan {
    /// Whether the job may create UNIX sockets for every path (`*`).
    pub fn any_unix_socket(&self) -> bool {
        self.unix.iter().any(|p| p.path.as_os_str() == "*")
    }
}

/// Resource limits; `Limit::Unlimited` leaves the host's own limit.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsPlan {
    /// CPU seconds per process (RLIMIT_CPU); `limits.cpu_secs`.
    pub cpu_secs: Sourced<Limit>,
    /// Bytes of memory for the whole job tree (memory cgroup; RLIMIT_AS per
    /// process where there is none); `limits.memory`.
    pub memory: Sourced<Limit>,
    /// Processes and threads in the job tree (pids cgroup); `limits.processes`.
    pub processes: Sourced<Limit>,
    /// Open descriptors per process (RLIMIT_NOFILE); `limits.open_files`.
    pub open_files: Sourced<Limit>,
    /// Largest file a process may write, in bytes (RLIMIT_FSIZE);
    /// `limits.file_size`.
    pub file_size: Sourced<Limit>,
    /// Whether processes may dump core; `limits.core_dumps`.
    pub core_dumps: Sourced<bool>,
    /// Time between SIGTERM and SIGKILL on timeout, cancel or shutdown;
    /// `limits.kill_grace_secs`.
    #[serde(serialize_with = "serialize_sourced_duration")]
    pub kill_grace: Sourced<Duration>,
}

/// Output handling.
#[derive(Debug, Clone, Serialize)]
pub struct OutputPlan {
    /// Lines or byte chunks; `output.mode`.
    pub mode: Sourced<OutputMode>,
    /// Which escape sequences are removed; `output.sanitize`.
    pub sanitize: Sourced<Sanitize>,
    /// Longer lines are split, in bytes; `output.max_line_bytes`.
    pub max_line_bytes: Sourced<u64>,
    /// Bytes of the end of stdout the completion event carries (0 for none);
    /// `output.tail_bytes`.
    pub tail_bytes: Sourced<u64>,
    /// Undrained events kept for the plugin; `output.max_queued_events`.
    pub max_queued_events: Sourced<u64>,
    /// Undrained bytes kept for the plugin; `output.max_queued_bytes`.
    pub max_queued_bytes: Sourced<u64>,
    /// What the plugin's full queue does to this job: drop its oldest
    /// output, or stop reading its pipes until the plugin drains.
    pub when_full: Sourced<WhenFull>,
}

/// Progress handling.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressPlan {
    /// How often the running job is sampled; `progress.interval_ms`.
    #[serde(serialize_with = "serialize_sourced_duration")]
    pub interval: Sourced<Duration>,
    /// Whether resource sampling runs; `progress.sample`.
    pub sample: Sourced<bool>,
    /// Regexes tried on every output line to find progress;
    /// `progress.patterns`.
    pub patterns: Vec<Sourced<ProgressPattern>>,
}

/// Why a request was refused: the rule, one sentence of why, and the policy
/// change that would allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("denied by `{rule}`: {reason} (hint: {hint})")]
pub struct Denial {
    /// The policy key that refused, e.g. `binaries.git.args.deny[1]`, or a
    /// `request.*` key for requests that are malformed whatever the policy says.
    pub rule: String,
    /// One sentence.
    pub reason: String,
    /// What would allow it, or what to fix in the request.
    pub hint: String,
}

impl Denial {
    /// A denial by `rule`, saying `reason` and `hint`.
    pub fn new(
        rule: impl Into<String>,
        reason: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            rule: rule.into(),
            reason: reason.into(),
            hint: hint.into(),
        }
    }
}

fn serialize_digest<S: serde::Serializer>(
    value: &Option<Sourced<[u8; 32]>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => s.serialize_some(&Sourced::new(crate::policy::hex(&d.value), d.key.clone())),
        None => s.serialize_none(),
    }
}

fn serialize_sourced_duration<S: serde::Serializer>(
    value: &Sourced<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    Sourced::new(value.value.as_secs_f64(), value.key.clone()).serialize(s)
}

fn limit_text(limit: &Limit, size: bool, unit: &str) -> String {
    match limit {
        Limit::Unlimited => "unlimited".into(),
        Limit::Value(n) if size => format_size(*n),
        Limit::Value(n) => format!("{n}{unit}"),
    }
}

/// Human format for durations in reports: `30 s`, `1.5 s`, `250 ms`.
pub fn format_duration(d: Duration) -> String {
    if d.as_millis() < 1000 && !d.is_zero() {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "allowed: plugin `{}` may run `{}`",
            self.plugin, self.binary
        )?;
        writeln!(
            f,
            "  program   {}  ({})",
            self.program.display(),
            self.program_key
        )?;
        if let Some(pin) = &self.sha256 {
            writeln!(
                f,
                "  sha256    {}  ({})",
                crate::policy::hex(&pin.value),
                pin.key
            )?;
        }
        let argv: Vec<String> = std::iter::once(self.argv0.clone())
            .chain(self.args.iter().cloned())
            .map(|a| shell_quote(&a))
            .collect();
        match &self.args_key {
            Some(key) => writeln!(f, "  argv      {}  ({key})", argv.join(" "))?,
            None => writeln!(f, "  argv      {}", argv.join(" "))?,
        }
        writeln!(f, "  cwd       {}", self.cwd.display())?;
        writeln!(
            f,
            "  timeout   {}  ({})",
            format_duration(self.timeout.value),
            self.timeout.key
        )?;
        writeln!(f, "  env")?;
        for (name, value) in &self.env {
            match self.env_keys.get(name) {
                Some(key) => writeln!(f, "    {name}={}  ({key})", shell_quote(value))?,
                None => writeln!(f, "    {name}={}", shell_quote(value))?,
            }
        }
        for drop in &self.env_dropped {
            writeln!(
                f,
                "    (dropped {} from {}: {})",
                drop.name, drop.origin, drop.rule
            )?;
        }
        writeln!(f, "  filesystem")?;
        for (title, list) in [
            ("read", &self.filesystem.read),
            ("read_write", &self.filesystem.read_write),
            ("execute", &self.filesystem.execute),
        ] {
            for p in list {
                writeln!(f, "    {title:<10} {}  ({})", p.path.display(), p.key)?;
            }
        }
        for p in &self.filesystem.protected {
            writeln!(
                f,
                "    protected  {}  ({}; read-only inside writable roots)",
                p.path.display(),
                p.key
            )?;
        }
        writeln!(
            f,
            "    git        .git {}  ({})",
            match self.filesystem.git.value {
                GitAccess::ReadOnly => "read-only",
                GitAccess::Commit => "writable but for hooks, config and info",
                GitAccess::Writable => "writable",
            },
            self.filesystem.git.key
        )?;
        write!(f, "  network   ")?;
        if self.network.unrestricted {
            writeln!(f, "unrestricted")?;
        } else if self.network.connect.is_empty() && self.network.bind.is_empty() {
            writeln!(f, "no TCP connect or bind")?;
        } else {
            let ports = |v: &[Sourced<u16>]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter()
                        .map(|p| p.value.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            writeln!(
                f,
                "connect {}; bind {}",
                ports(&self.network.connect),
                ports(&self.network.bind)
            )?;
        }
        if !self.network.unrestricted {
            let grant = |on: &Sourced<bool>| {
                if on.value {
                    format!("allowed ({})", on.key)
                } else {
                    "refused".to_string()
                }
            };
            writeln!(f, "    udp        {}", grant(&self.network.udp))?;
            writeln!(f, "    netlink    {}", grant(&self.network.netlink_route))?;
            if self.network.unix.is_empty() {
                writeln!(f, "    unix       refused (socketpair only)")?;
            }
            for p in &self.network.unix {
                writeln!(f, "    unix       {}  ({})", p.path.display(), p.key)?;
            }
        }
        let l = &self.limits;
        writeln!(f, "  limits")?;
        writeln!(
            f,
            "    cpu        {}  ({})",
            limit_text(&l.cpu_secs.value, false, " s"),
            l.cpu_secs.key
        )?;
        writeln!(
            f,
            "    memory     {}  ({})",
            limit_text(&l.memory.value, true, ""),
            l.memory.key
        )?;
        writeln!(
            f,
            "    processes  {}  ({})",
            limit_text(&l.processes.value, false, ""),
            l.processes.key
        )?;
        writeln!(
            f,
            "    open_files {}  ({})",
            limit_text(&l.open_files.value, false, ""),
            l.open_files.key
        )?;
        writeln!(
            f,
            "    file_size  {}  ({})",
            limit_text(&l.file_size.value, true, ""),
            l.file_size.key
        )?;
        writeln!(
            f,
            "    core_dumps {}  ({})",
            if l.core_dumps.value { "allowed" } else { "off" },
            l.core_dumps.key
        )?;
        writeln!(
            f,
            "    kill_grace {}  ({})",
            format_duration(l.kill_grace.value),
            l.kill_grace.key
        )?;
        let o = &self.output;
        writeln!(
            f,
            "  output    mode {}, sanitize {}, lines ≤ {}, tail {}, when full {}  ({})",
            o.mode.value.name(),
            o.sanitize.value.name(),
            format_size(o.max_line_bytes.value),
            format_size(o.tail_bytes.value),
            o.when_full.value.name(),
            o.when_full.key
        )?;
        if self.seccomp.value {
            writeln!(
                f,
                "  seccomp   dangerous system calls denied  ({})",
                self.seccomp.key
            )?;
        }
        writeln!(f, "  enforcement {}", self.enforcement.describe())?;
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

/// Quotes a word for display the way a POSIX shell would need it.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
