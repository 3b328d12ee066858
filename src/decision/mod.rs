//! The decision: a pure function from (policy, plugin, request, repo) to a
//! fully resolved [`Plan`] or a [`Denial`] that names the rule.
//!
//! Invariants kept here, each with tests in `tests/decision.rs`:
//! - the program is a file the policy names, found through the policy's own
//!   paths, never the request's or the host's `PATH`;
//! - the environment holds only what the policy passes, and deny patterns
//!   win over every inherit, set and allow;
//! - the working directory is inside the repository after every symlink is
//!   resolved.
//!
//! The only I/O is looking at paths (canonicalising the working directory
//! and the program, checking that they exist); nothing is opened, hashed or
//! spawned here, so it is cheap enough for a TUI thread.

mod args;
mod plan;
mod repo;
mod request;

pub use args::allowed_command_lines;
pub use plan::*;
pub use repo::repo_refusal;
pub use request::{MAX_ARG_BYTES, MAX_ARGS, MAX_ENV_BYTES, MAX_ENV_VARS, MAX_LABEL_BYTES};
// The built-in defaults are the policy's (declared once, in
// `policy::defaults`); these names stay for code that reads them here.
pub use crate::policy::defaults::{
    DEFAULT_KILL_GRACE, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_QUEUED_EVENTS, DEFAULT_PROGRESS_INTERVAL, DEFAULT_TAIL_BYTES,
};

use crate::contract::JobSpawnRequest;
use crate::policy::defaults::*;
use crate::policy::{BinaryRule, Layer, Limit, Pattern, Placeholders, Policy, Sourced};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The facts about the host a decision needs besides the policy and request.
#[derive(Debug, Clone)]
pub struct DecisionContext<'a> {
    /// The repository root, already canonical.
    pub repo: &'a Path,
    /// The host user's home directory, for `{home}`.
    pub home: Option<&'a Path>,
    /// The directory the host will create for this job (`{tmp}`).
    pub job_tmp: &'a Path,
    /// The host's environment, for `env.inherit`.
    pub host_env: &'a [(String, String)],
}

/// Decides whether `plugin` may run `request`, and exactly how.
pub fn decide(
    policy: &Policy,
    plugin: &str,
    request: &JobSpawnRequest,
    ctx: &DecisionContext<'_>,
) -> Result<Plan, Denial> {
    decide_with(policy, plugin, request, ctx, true)
}

/// The plan `plugin`'s jobs of `binary` would get, whatever their
/// arguments: every rule but the argument rules. For assessing what a
/// binary's jobs would get on this machine (`doctor --policy`, whose
/// requests have no arguments an `args.allow` list would take), never for
/// running a job.
pub fn plan_for_binary(
    policy: &Policy,
    plugin: &str,
    binary: &str,
    ctx: &DecisionContext<'_>,
) -> Result<Plan, Denial> {
    let request = JobSpawnRequest::new(binary, Vec::<String>::new());
    decide_with(policy, plugin, &request, ctx, false)
}

fn decide_with(
    policy: &Policy,
    plugin: &str,
    request: &JobSpawnRequest,
    ctx: &DecisionContext<'_>,
    check_arguments: bool,
) -> Result<Plan, Denial> {
    request::validate(request)?;

    let plugin_rule = policy.plugin_rule(plugin).ok_or_else(|| {
        Denial::new(
            "plugins",
            format!("plugin `{plugin}` is not named in the policy, and the policy has no catch-all"),
            format!("add `[plugins.{plugin}]` with the binaries it may run, or a catch-all `[plugins.\"*\"]`"),
        )
    })?;

    let binary = &request.binary;
    if !plugin_rule.binaries.iter().any(|b| &b.value == binary) {
        let which = if plugin_rule.name == crate::policy::CATCH_ALL {
            format!("plugin `{plugin}` falls under the catch-all, which")
        } else {
            format!("plugin `{plugin}`")
        };
        let hint = if policy.binaries.contains_key(binary) {
            format!("add \"{binary}\" to `{}.binaries`", plugin_rule.key)
        } else {
            format!(
                "define `[binaries.{binary}]` and add \"{binary}\" to `{}.binaries`",
                plugin_rule.key
            )
        };
        return Err(Denial::new(
            format!("{}.binaries", plugin_rule.key),
            format!("{which} may not run `{binary}`"),
            hint,
        ));
    }
    let binary_rule = policy
        .binaries
        .get(binary)
        .expect("plugins only list defined binaries (checked at load)");

    let values = Placeholders {
        repo: ctx.repo,
        home: ctx.home,
        tmp: ctx.job_tmp,
    };
    let layers = [&policy.base, &binary_rule.layer, &plugin_rule.layer];

    // Every policy rule comes before the machine-dependent lookup of the
    // program, so a denial names the policy's rule wherever it runs.
    let args_key = if check_arguments {
        check_args(binary_rule, &request.args)?;
        args::check_allowed(binary_rule, plugin_rule, &request.args)?
    } else {
        None
    };
    let mut notes = Vec::new();
    let (env, env_keys, env_dropped) = build_env(
        policy,
        &layers,
        request,
        ctx,
        &values,
        crate::platform::ENV_IGNORE_CASE,
    )?;
    let cwd = resolve_cwd(ctx.repo, request.cwd.as_deref())?;
    let limits = fold_limits(&layers);
    let timeout = decide_timeout(&layers, request.timeout_secs, &mut notes)?;
    let (program, argv0, program_key) = resolve_program(policy, binary_rule, &values)?;
    let filesystem = build_filesystem(
        &layers,
        binary_rule,
        &program,
        &program_key,
        &values,
        &mut notes,
    );
    let network = fold_network(&layers, &values, &mut notes);
    let output = fold_output(&[&policy.base, &plugin_rule.layer], &layers);
    let progress = fold_progress(&layers);

    Ok(Plan {
        plugin: plugin.to_string(),
        label: request.label.clone(),
        binary: binary.clone(),
        program,
        argv0,
        program_key,
        sha256: binary_rule.sha256.clone(),
        args: request.args.clone(),
        args_key,
        env,
        env_keys,
        env_dropped,
        cwd,
        repo: ctx.repo.to_path_buf(),
        job_tmp: ctx.job_tmp.to_path_buf(),
        filesystem,
        network,
        limits,
        timeout,
        output,
        progress,
        seccomp: last(&layers, |l| &l.seccomp.deny_dangerous)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_DENY_DANGEROUS)),
        enforcement: policy.enforcement.clone(),
        policy_sha256: policy.origin.sha256.clone(),
        notes,
    })
}

/// Finds the file to execute: the binary's `path`, or the first match in the
/// policy's `search_path`. Returns (canonical program, argv0, key).
fn resolve_program(
    policy: &Policy,
    rule: &BinaryRule,
    values: &Placeholders<'_>,
) -> Result<(PathBuf, String, String), Denial> {
    let (candidate, key) = match &rule.path {
        Some(path) => {
            let resolved = path.value.resolve(values).map_err(|e| {
                Denial::new(
                    path.key.clone(),
                    e.to_string(),
                    "set HOME for the host, or use an absolute path",
                )
            })?;
            if !resolved.exists() {
                return Err(Denial::new(
                    path.key.clone(),
                    format!("{} does not exist on this machine", resolved.display()),
                    format!("install `{}` there, or correct `{}`", rule.name, path.key),
                ));
            }
            (resolved, path.key.clone())
        }
        None => {
            let mut found = None;
            for (i, dir) in policy.search_path.iter().enumerate() {
                let Ok(dir) = dir.value.resolve(values) else {
                    continue;
                };
                let candidate = dir.join(&rule.name);
                if is_executable_file(&candidate) {
                    found = Some((candidate, format!("search_path[{i}]")));
                    break;
                }
            }
            found.ok_or_else(|| {
                let dirs: Vec<&str> = policy
                    .search_path
                    .iter()
                    .map(|d| d.value.as_str())
                    .collect();
                Denial::new(
                    format!("{}.path", rule.key),
                    format!(
                        "`{}` was not found in the policy's search_path ({})",
                        rule.name,
                        dirs.join(", ")
                    ),
                    format!(
                        "install it in one of those directories, or set `{}.path`",
                        rule.key
                    ),
                )
            })?
        }
    };
    let program = candidate.canonicalize().map_err(|e| {
        Denial::new(
            key.clone(),
            format!("cannot resolve {}: {e}", candidate.display()),
            "check the path and its permissions",
        )
    })?;
    if !is_executable_file(&program) {
        return Err(Denial::new(
            key,
            format!("{} is not an executable file", program.display()),
            "point the policy at an executable file",
        ));
    }
    Ok((program, candidate.to_string_lossy().into_owned(), key))
}

fn is_executable_file(path: &Path) -> bool {
    crate::platform::is_executable_file(path)
}

/// The argument rules of the binary.
fn check_args(rule: &BinaryRule, args: &[String]) -> Result<(), Denial> {
    let rules = &rule.args;
    let (max_count, count_key) = match &rules.max_count {
        Some(m) => (m.value as usize, m.key.clone()),
        None => (MAX_ARGS, "request.args".to_string()),
    };
    if args.len() > max_count {
        return Err(Denial::new(
            count_key.clone(),
            format!(
                "the request has {} arguments; at most {max_count} are allowed",
                args.len()
            ),
            if count_key.starts_with("request") {
                "pass fewer arguments".to_string()
            } else {
                format!("raise `{count_key}`, or pass fewer arguments")
            },
        ));
    }
    let bytes: usize = args.iter().map(|a| a.len() + 1).sum();
    let (max_bytes, bytes_key) = match &rules.max_bytes {
        Some(m) => (m.value as usize, m.key.clone()),
        None => (MAX_ARG_BYTES, "request.args".to_string()),
    };
    if bytes > max_bytes {
        return Err(Denial::new(
            bytes_key.clone(),
            format!("the arguments take {bytes} bytes; at most {max_bytes} are allowed"),
            if bytes_key.starts_with("request") {
                "pass shorter arguments".to_string()
            } else {
                format!("raise `{bytes_key}`, or pass shorter arguments")
            },
        ));
    }
    for (i, arg) in args.iter().enumerate() {
        if let Some(pattern) = rules.deny.iter().find(|p| p.matches(arg)) {
            return Err(Denial::new(
                pattern.key.clone(),
                format!(
                    "argument {} `{}` matches the denied pattern \"{}\"",
                    i + 1,
                    arg.escape_debug(),
                    pattern.text
                ),
                format!(
                    "remove the argument, or remove \"{}\" from `{}`",
                    pattern.text,
                    list_key(&pattern.key)
                ),
            ));
        }
        if let Some(name) = arg.strip_prefix("--") {
            let name = name.split('=').next().unwrap_or_default();
            if !name.is_empty()
                && let Some(option) = rules
                    .deny_long_options
                    .iter()
                    .find(|o| o.value.starts_with(name))
            {
                let spelled = if name == option.value {
                    String::new()
                } else {
                    format!(" (an abbreviation of --{})", option.value)
                };
                return Err(Denial::new(
                    option.key.clone(),
                    format!(
                        "argument {} `{}` is the denied option --{}{spelled}",
                        i + 1,
                        arg.escape_debug(),
                        option.value
                    ),
                    format!(
                        "remove the option, or remove \"{}\" from `{}`",
                        option.value,
                        list_key(&option.key)
                    ),
                ));
            }
        }
    }
    if let Some(subcommands) = &rules.subcommands
        && let Some(first) = args.iter().find(|a| !a.starts_with('-'))
        && !subcommands.value.iter().any(|s| s == first)
    {
        return Err(Denial::new(
            subcommands.key.clone(),
            format!(
                "`{}` is not an allowed subcommand of `{}` (allowed: {})",
                first.escape_debug(),
                rule.name,
                subcommands.value.join(", ")
            ),
            format!("add \"{first}\" to `{}` if it is safe", subcommands.key),
        ));
    }
    Ok(())
}

/// `binaries.git.args.deny[1]` → `binaries.git.args.deny`: the list a
/// hint tells the admin to edit. Every list item's key ends in its index.
fn list_key(key: &str) -> &str {
    key.rsplit_once('[').map_or(key, |(list, _)| list)
}

fn builtin_deny() -> &'static [Pattern] {
    builtin_deny_patterns()
}

/// The job's environment, the key that put each variable there, and what
/// was left out.
type EnvBuilt = (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    Vec<EnvDrop>,
);

/// The job's environment: inherited host variables, then the policy's fixed
/// values, then what the request injects; deny patterns win over all three.
/// With `ignore_case` (Windows), names are compared without case and the
/// job sees them in upper case, so no spelling slips past a rule.
fn build_env(
    policy: &Policy,
    layers: &[&Layer],
    request: &JobSpawnRequest,
    ctx: &DecisionContext<'_>,
    values: &Placeholders<'_>,
    ignore_case: bool,
) -> Result<EnvBuilt, Denial> {
    let mut deny: Vec<&Pattern> = Vec::new();
    if policy.builtin_env_deny {
        deny.extend(builtin_deny());
    }
    for layer in layers {
        deny.extend(layer.env.deny.iter());
    }
    let matches = |p: &Pattern, name: &str| p.matches_env_name(name, ignore_case);
    let denied = |name: &str| deny.iter().copied().find(|p| matches(p, name));
    let fold = |name: &str| {
        if ignore_case {
            name.to_ascii_uppercase()
        } else {
            name.to_string()
        }
    };
    let inherit: Vec<&Pattern> = layers.iter().flat_map(|l| l.env.inherit.iter()).collect();
    let allow: Vec<&Pattern> = layers.iter().flat_map(|l| l.env.allow.iter()).collect();
    let on_disallowed = layers
        .iter()
        .filter_map(|l| l.env.on_disallowed.as_ref())
        .next_back()
        .map_or(DEFAULT_ON_DISALLOWED, |s| s.value);

    let mut env = BTreeMap::new();
    let mut keys = BTreeMap::new();
    let mut dropped = Vec::new();

    for (name, value) in ctx.host_env {
        // Windows folds case beyond ASCII by its own table: a name outside
        // ASCII could alias a denied one, so none is passed there.
        let Some(inherited_by) = inherit.iter().find(|p| matches(p, name)) else {
            continue;
        };
        if ignore_case && !name.is_ascii() {
            continue;
        }
        match denied(name) {
            Some(rule) => dropped.push(EnvDrop {
                name: name.clone(),
                origin: "host",
                rule: rule.key.clone(),
            }),
            None => {
                env.insert(fold(name), value.clone());
                keys.insert(fold(name), inherited_by.key.clone());
            }
        }
    }

    let mut fixed: BTreeMap<String, &Sourced<crate::policy::Template>> = BTreeMap::new();
    for layer in layers {
        for (name, template) in &layer.env.set {
            fixed.insert(fold(name), template);
        }
    }
    for (name, template) in &fixed {
        if let Some(rule) = denied(name) {
            dropped.push(EnvDrop {
                name: name.to_string(),
                origin: "set",
                rule: rule.key.clone(),
            });
            env.remove(name);
            keys.remove(name);
            continue;
        }
        let value = template.value.render(values).map_err(|e| {
            Denial::new(
                template.key.clone(),
                e.to_string(),
                "set HOME for the host, or do not use {home} here",
            )
        })?;
        env.insert(name.clone(), value);
        keys.insert(name.clone(), template.key.clone());
    }

    let mut injected: Vec<(&String, &String)> = request.env.iter().collect();
    injected.sort();
    for (name, value) in injected {
        let mut allowed = None;
        let refusal = if ignore_case && !name.is_ascii() {
            Some(Denial::new(
                "env",
                format!("the request injects {name:?}, a name outside ASCII"),
                "use ASCII variable names: on Windows other names could alias a denied one",
            ))
        } else if let Some(rule) = denied(name) {
            Some(Denial::new(
                rule.key.clone(),
                format!(
                    "the request injects {name}, which matches the denied pattern \"{}\"",
                    rule.text
                ),
                "do not inject it: deny patterns win over every allow",
            ))
        } else if let Some(template) = fixed.get(&fold(name)) {
            Some(Denial::new(
                template.key.clone(),
                format!("the request injects {name}, which the policy fixes"),
                format!("do not inject {name}, or remove it from `{}`", template.key),
            ))
        } else if let Some(allowed_by) = allow.iter().find(|p| matches(p, name)) {
            allowed = Some(allowed_by.key.clone());
            None
        } else {
            Some(Denial::new(
                "env.allow",
                format!("the request injects {name}, which no `env.allow` rule allows"),
                format!(
                    "add \"{name}\" to `env.allow` (or a binary's or plugin's `env.allow`), or do not inject it"
                ),
            ))
        };
        match (refusal, on_disallowed) {
            (None, _) => {
                env.insert(fold(name), value.clone());
                keys.insert(fold(name), allowed.unwrap_or_else(|| "env.allow".into()));
            }
            (Some(denial), crate::policy::OnDisallowed::Reject) => return Err(denial),
            (Some(denial), crate::policy::OnDisallowed::Drop) => dropped.push(EnvDrop {
                name: name.clone(),
                origin: "request",
                rule: denial.rule,
            }),
        }
    }
    Ok((env, keys, dropped))
}

/// The working directory: the repo root, a path relative to it, or an
/// absolute path inside it — after resolving every symlink.
fn resolve_cwd(repo: &Path, cwd: Option<&str>) -> Result<PathBuf, Denial> {
    let Some(cwd) = cwd.filter(|c| !c.is_empty()) else {
        return Ok(repo.to_path_buf());
    };
    let requested = Path::new(cwd);
    let joined = if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        repo.join(requested)
    };
    let canonical = joined.canonicalize().map_err(|e| {
        Denial::new(
            "request.cwd",
            format!("the working directory `{cwd}` cannot be resolved: {e}"),
            "use an existing directory inside the repository",
        )
    })?;
    if !canonical.starts_with(repo) {
        // Only a symlink makes the resolved path differ from the one
        // written, once `.` and `..` are taken as written.
        let via = if canonical != lexically_normal(&joined) {
            " (through a symlink)"
        } else {
            ""
        };
        return Err(Denial::new(
            "request.cwd",
            format!(
                "the working directory `{cwd}` resolves to {}{via}, outside the repository {}",
                canonical.display(),
                repo.display()
            ),
            "use a directory inside the repository",
        ));
    }
    if !canonical.is_dir() {
        return Err(Denial::new(
            "request.cwd",
            format!("the working directory `{cwd}` is not a directory"),
            "use a directory inside the repository",
        ));
    }
    Ok(canonical)
}

/// `path` with `.` dropped and each `..` taking away the component before
/// it, without looking at the filesystem.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn last<'a, T: 'a>(
    layers: &[&'a Layer],
    get: impl Fn(&'a Layer) -> &'a Option<Sourced<T>>,
) -> Option<&'a Sourced<T>> {
    layers.iter().filter_map(|l| get(l).as_ref()).next_back()
}

fn fold_limits(layers: &[&Layer]) -> crate::decision::LimitsPlan {
    let limit = |get: fn(&Layer) -> &Option<Sourced<Limit>>| {
        last(layers, get)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_LIMIT))
    };
    LimitsPlan {
        cpu_secs: limit(|l| &l.limits.cpu_secs),
        memory: limit(|l| &l.limits.memory),
        processes: limit(|l| &l.limits.processes),
        open_files: limit(|l| &l.limits.open_files),
        file_size: limit(|l| &l.limits.file_size),
        core_dumps: last(layers, |l| &l.limits.core_dumps)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_CORE_DUMPS)),
        kill_grace: last(layers, |l| &l.limits.kill_grace)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_KILL_GRACE)),
    }
}

fn decide_timeout(
    layers: &[&Layer],
    requested: u64,
    notes: &mut Vec<String>,
) -> Result<Sourced<Duration>, Denial> {
    let default = last(layers, |l| &l.limits.timeout_secs)
        .cloned()
        .unwrap_or_else(|| Sourced::builtin(DEFAULT_TIMEOUT_SECS));
    let max = last(layers, |l| &l.limits.max_timeout_secs)
        .cloned()
        .unwrap_or_else(|| Sourced::builtin(DEFAULT_MAX_TIMEOUT_SECS));
    let on_long =
        last(layers, |l| &l.limits.on_long_timeout).map_or(DEFAULT_ON_LONG_TIMEOUT, |s| s.value);
    if requested == 0 {
        return Ok(Sourced::new(
            Duration::from_secs(default.value),
            default.key,
        ));
    }
    if requested <= max.value {
        return Ok(Sourced::new(
            Duration::from_secs(requested),
            "request.timeout_secs",
        ));
    }
    match on_long {
        crate::policy::OnLongTimeout::Clamp => {
            notes.push(format!(
                "the requested timeout of {requested} s was shortened to {} s (`{}`)",
                max.value, max.key
            ));
            Ok(Sourced::new(Duration::from_secs(max.value), max.key))
        }
        crate::policy::OnLongTimeout::Reject => Err(Denial::new(
            max.key.clone(),
            format!(
                "the request asks for a {requested} s timeout; the maximum is {} s",
                max.value
            ),
            format!("ask for at most {} s, or raise `{}`", max.value, max.key),
        )),
    }
}

fn build_filesystem(
    layers: &[&Layer],
    binary: &BinaryRule,
    program: &Path,
    program_key: &str,
    values: &Placeholders<'_>,
    notes: &mut Vec<String>,
) -> FilesystemPlan {
    let mut plan = FilesystemPlan::default();
    let mut resolve =
        |list: &mut Vec<PlanPath>, entry: &Sourced<crate::policy::PathTemplate>| match entry
            .value
            .resolve(values)
        {
            Ok(path) => list.push(PlanPath {
                path,
                key: entry.key.clone(),
            }),
            Err(e) => notes.push(format!("`{}` skipped: {e}", entry.key)),
        };
    for layer in layers {
        for entry in &layer.filesystem.read {
            resolve(&mut plan.read, entry);
        }
        for entry in &layer.filesystem.read_write {
            resolve(&mut plan.read_write, entry);
        }
        for entry in &layer.filesystem.execute {
            resolve(&mut plan.execute, entry);
        }
    }
    plan.execute.insert(
        0,
        PlanPath {
            path: program.to_path_buf(),
            key: program_key.to_string(),
        },
    );
    for helper in &binary.helpers {
        resolve(&mut plan.execute, helper);
    }
    for name in DEFAULT_PROTECTED {
        plan.protected.push(PlanPath {
            path: values.repo.join(name),
            key: PROTECTED_KEY.into(),
        });
    }
    for layer in layers {
        for entry in &layer.filesystem.protected {
            resolve(&mut plan.protected, entry);
        }
    }
    plan.git = last(layers, |l| &l.filesystem.git)
        .cloned()
        .unwrap_or_else(|| Sourced::builtin(crate::policy::DEFAULT_GIT_ACCESS));
    plan
}

/// The key the plan gives [`DEFAULT_PROTECTED`] entries.
pub const PROTECTED_KEY: &str = "built-in protected paths";

/// What stays read-only inside the repository whatever else is writable:
/// everything git runs or reads configuration from (`.git`; how much of it,
/// `filesystem.git` says), `.gitmodules`, and the settings editors and
/// shells act on when the user next opens the directory.
pub const DEFAULT_PROTECTED: &[&str] = &[".git", ".gitmodules", ".vscode", ".idea", ".envrc"];

fn fold_network(
    layers: &[&Layer],
    values: &Placeholders<'_>,
    notes: &mut Vec<String>,
) -> NetworkPlan {
    let flag = |get: fn(&Layer) -> &Option<Sourced<bool>>, default: bool| {
        last(layers, get)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(default))
    };
    let mut plan = NetworkPlan {
        unrestricted: last(layers, |l| &l.network.unrestricted)
            .map_or(DEFAULT_NETWORK_UNRESTRICTED, |u| u.value),
        udp: flag(|l| &l.network.udp, crate::policy::DEFAULT_UDP),
        netlink_route: flag(
            |l| &l.network.netlink_route,
            crate::policy::DEFAULT_NETLINK_ROUTE,
        ),
        ..NetworkPlan::default()
    };
    let any = flag(|l| &l.network.unix_any, crate::policy::DEFAULT_UNIX_ANY);
    if any.value {
        plan.unix.push(PlanPath {
            path: "*".into(),
            key: any.key,
        });
    }
    for layer in layers {
        for entry in &layer.network.unix {
            match entry.value.resolve(values) {
                Ok(path) => plan.unix.push(PlanPath {
                    path,
                    key: entry.key.clone(),
                }),
                Err(e) => notes.push(format!("`{}` skipped: {e}", entry.key)),
            }
        }
    }
    for layer in layers {
        for port in &layer.network.connect {
            if !plan.connect.iter().any(|p| p.value == port.value) {
                plan.connect.push(port.clone());
            }
        }
        for port in &layer.network.bind {
            if !plan.bind.iter().any(|p| p.value == port.value) {
                plan.bind.push(port.clone());
            }
        }
    }
    plan
}

fn fold_output(queue_layers: &[&Layer], layers: &[&Layer]) -> OutputPlan {
    let or = |v: Option<&Sourced<u64>>, d: u64| v.cloned().unwrap_or_else(|| Sourced::builtin(d));
    OutputPlan {
        mode: last(layers, |l| &l.output.mode)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_OUTPUT_MODE)),
        sanitize: last(layers, |l| &l.output.sanitize)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_SANITIZE)),
        max_line_bytes: or(
            last(layers, |l| &l.output.max_line_bytes),
            DEFAULT_MAX_LINE_BYTES,
        ),
        tail_bytes: or(last(layers, |l| &l.output.tail_bytes), DEFAULT_TAIL_BYTES),
        max_queued_events: or(
            last(queue_layers, |l| &l.output.max_queued_events),
            DEFAULT_MAX_QUEUED_EVENTS,
        ),
        max_queued_bytes: or(
            last(queue_layers, |l| &l.output.max_queued_bytes),
            DEFAULT_MAX_QUEUED_BYTES,
        ),
        when_full: last(queue_layers, |l| &l.output.when_full)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_WHEN_FULL)),
    }
}

fn fold_progress(layers: &[&Layer]) -> ProgressPlan {
    ProgressPlan {
        interval: last(layers, |l| &l.progress.interval)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_PROGRESS_INTERVAL)),
        sample: last(layers, |l| &l.progress.sample)
            .cloned()
            .unwrap_or_else(|| Sourced::builtin(DEFAULT_SAMPLE)),
        patterns: layers
            .iter()
            .flat_map(|l| l.progress.patterns.iter().cloned())
            .collect(),
    }
}

/// The file a policy binary resolves to here, for tools that accept a path
/// and must map it back to a trusted name (the CLI's `run -- /bin/true`).
/// Returns the canonical program path.
pub fn program_for(
    policy: &Policy,
    binary: &str,
    ctx: &DecisionContext<'_>,
) -> Result<PathBuf, Denial> {
    let rule = policy.binaries.get(binary).ok_or_else(|| {
        Denial::new(
            "binaries",
            format!("`{binary}` is not defined under [binaries]"),
            format!("define `[binaries.{binary}]`"),
        )
    })?;
    let values = Placeholders {
        repo: ctx.repo,
        home: ctx.home,
        tmp: ctx.job_tmp,
    };
    resolve_program(policy, rule, &values).map(|(program, _, _)| program)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Windows rules, exercised wherever the tests run: a name in any
    /// case meets the same deny, allow and fixed-value rules.
    #[test]
    fn env_names_compared_without_case_meet_the_same_rules() {
        let policy = Policy::from_toml(
            "<test>",
            r#"
version = 1
[env]
inherit = ["LANG"]
allow = ["MY_*"]
set = { PATH = "/bin" }
[binaries.t]
path = "/bin/true"
[plugins.p]
binaries = ["t"]
"#,
        )
        .unwrap()
        .policy;
        let layers = [&policy.base];
        let repo = Path::new("/");
        let values = Placeholders {
            repo,
            home: None,
            tmp: repo,
        };
        let host_env = vec![
            ("lang".to_string(), "C".to_string()),
            ("github_token".to_string(), "secret".to_string()),
        ];
        let ctx = DecisionContext {
            repo,
            home: None,
            job_tmp: repo,
            host_env: &host_env,
        };
        let env_of = |request: &JobSpawnRequest, ignore_case| {
            build_env(&policy, &layers, request, &ctx, &values, ignore_case)
        };
        let plain = JobSpawnRequest::new("t", Vec::<String>::new());

        // Case-insensitive: `lang` is inherited as LANG.
        let (env, _, _) = env_of(&plain, true).unwrap();
        assert_eq!(env.get("LANG").map(String::as_str), Some("C"));
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
        // Case-sensitive: `lang` is not `LANG`.
        let (env, _, _) = env_of(&plain, false).unwrap();
        assert!(!env.contains_key("LANG") && !env.contains_key("lang"));

        // A lower-case spelling of a denied name is denied.
        let token = plain.clone().with_env("github_token", "x");
        let denial = env_of(&token, true).unwrap_err();
        assert!(denial.reason.contains("denied pattern"), "{denial}");
        // A lower-case spelling of a fixed name cannot override it.
        let path = plain.clone().with_env("path", "/evil");
        let denial = env_of(&path, true).unwrap_err();
        assert!(denial.reason.contains("fixes"), "{denial}");
        // Allowed in any case, and passed upper-cased.
        // A name outside ASCII could alias a denied one under Windows's
        // own case folding: refused there.
        let odd = plain.clone().with_env("PROBE_\u{17f}", "1");
        assert!(env_of(&odd, true).is_err());
        let flag = plain.clone().with_env("my_flag", "1");
        let (env, _, _) = env_of(&flag, true).unwrap();
        assert_eq!(env.get("MY_FLAG").map(String::as_str), Some("1"));
        assert!(env_of(&flag, false).is_err());
    }
}
