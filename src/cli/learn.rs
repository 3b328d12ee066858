//! `jobwarden learn [flags] [--write FILE] -- BINARY [ARGS...]`: runs one
//! trusted command observed, without the filesystem and network
//! restrictions that would stop it, and prints the smallest policy
//! addition that lets exactly that run pass.
//!
//! The command runs in the repository with the base policy's environment,
//! limits, session and privileges (learn mode: see
//! `HostBuilder::learn_mode`); a binary the base policy does not define is
//! defined for the run (and in the addition) by the path it was found at.
//! What the base policy refuses on purpose — a request its rules deny, a
//! protected path, a kind of socket no key grants — is reported and never
//! granted. The addition goes to stdout as TOML (the command's own output
//! to stderr); `--write FILE` writes the base policy with it merged in,
//! checked to be valid and to grant every access the run needed.
//!
//! Exit codes: the command's own (the addition is printed whatever it
//! was); 125 jobwarden's own error; 126 the base policy refuses the request.

use super::{CliError, Failure, HostFacts, JobArgs, build_request, load_policy, repo_root};
use jobwarden::contract::{JobEvent, STREAM_STDERR, STREAM_STDOUT};
use jobwarden::decision::{DecisionContext, decide, shell_quote};
use jobwarden::observe::{
    Enforced, Grants, Places, PolicyEdit, Suggestion, Verdict, merge, plugin_sets_network_flags,
    snippet, suggest,
};
use jobwarden::policy::{CATCH_ALL, EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, Policy};
use jobwarden::sandbox::SupportOptions;
use jobwarden::{JobEnd, PolicyJobHost};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_OWN_ERROR: u8 = 125;
const EXIT_DENIED: u8 = 126;

fn own(message: String) -> Failure {
    CliError::Request(message).exit(EXIT_OWN_ERROR)
}

pub fn run(
    args: &JobArgs,
    write: Option<&Path>,
    support: &SupportOptions,
) -> Result<ExitCode, Failure> {
    let base = load_policy(args.policy.as_deref()).map_err(|e| e.exit(EXIT_OWN_ERROR))?;
    let (base_name, base_text) = match &args.policy {
        Some(path) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| own(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => (
            EMBEDDED_DEFAULT_NAME.to_string(),
            EMBEDDED_DEFAULT.to_string(),
        ),
    };
    let repo = repo_root(args.repo.as_deref()).map_err(|e| e.exit(EXIT_OWN_ERROR))?;
    let facts = HostFacts::capture(repo.clone());

    // The binary: the base policy's, or defined for this run by its path.
    let given = args
        .command
        .first()
        .expect("clap requires a binary")
        .clone();
    let (binary, define_path) = binary_for(&base.policy, &args.plugin, &given, &facts)?;
    let allow_plugin = match base.policy.plugin_rule(&args.plugin) {
        Some(rule) if rule.binaries.iter().any(|b| b.value == binary) => None,
        Some(rule) if rule.name == CATCH_ALL => Some(CATCH_ALL.to_string()),
        _ => Some(args.plugin.clone()),
    };
    let setup = PolicyEdit {
        binary: &binary,
        define_path: define_path.as_deref(),
        allow_plugin: allow_plugin.as_deref(),
        ..PolicyEdit::default()
    };
    let learning_text = merge(
        &base_text,
        &PolicyEdit {
            best_effort: true,
            ..setup.clone()
        },
    )
    .map_err(|e| own(format!("{base_name}: {e}")))?;
    let learning = Policy::from_toml(&base_name, &learning_text)
        .map_err(|e| CliError::from(e).exit(EXIT_OWN_ERROR))?
        .policy;

    let mut job_args = args.clone();
    job_args.command[0] = binary.clone();
    let example_tmp = super::example_job_tmp();
    let request = build_request(&job_args, &learning, &facts.context(&example_tmp))
        .map_err(|e| e.exit(EXIT_DENIED))?;
    // A request the base policy's own rules refuse (argument patterns, a
    // denied variable) is refused here too: learn never grants those.
    if let Err(denial) = decide(
        &learning,
        &args.plugin,
        &request,
        &facts.context(&example_tmp),
    ) {
        errln!("jobwarden: denied by `{}`: {}", denial.rule, denial.reason);
        errln!(
            "jobwarden: learn does not grant what the policy refuses on purpose; hint: {}",
            denial.hint
        );
        return Ok(ExitCode::from(EXIT_DENIED));
    }

    let host = PolicyJobHost::builder(learning.clone(), &repo)
        .support_options(support.clone())
        .learn_mode()
        .build()
        .map_err(|e| CliError::from(e).exit(EXIT_OWN_ERROR))?;
    let plugin = host.plugin(&args.plugin);
    let id = plugin.try_spawn(request.clone()).map_err(|denial| {
        own(format!(
            "the learning run was refused by `{}`: {}",
            denial.rule, denial.reason
        ))
    })?;
    errln!(
        "jobwarden: learning what `{}` does (unconfined by path and port; its output follows)",
        std::iter::once(binary.as_str())
            .chain(request.args.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut stderr = std::io::stderr();
    loop {
        let events = plugin.wait_events(Duration::from_millis(200));
        let mut ended = false;
        for event in events {
            ended |= event.is_terminal();
            match event {
                JobEvent::JobLogLine { data, .. }
                    if data.stream == STREAM_STDOUT || data.stream == STREAM_STDERR =>
                {
                    let _ = writeln!(stderr, "{}", data.line);
                }
                JobEvent::JobFailed { data, .. } => {
                    let _ = writeln!(stderr, "jobwarden: {}", data.error);
                }
                _ => {}
            }
        }
        if ended {
            break;
        }
    }
    let end = plugin.end(&id);
    let report = plugin.enforcement(&id);
    let observed = plugin.observed(&id);
    drop(host);
    let Some(observed) = observed else {
        let why = report
            .as_ref()
            .and_then(|r| r.item("observation").map(|i| i.detail.clone()))
            .unwrap_or_else(|| "the job did not start".into());
        return Err(own(format!("the run could not be observed: {why}")));
    };

    // Judge what the run did against the base policy's grants for it.
    let ctx = DecisionContext {
        job_tmp: &observed.job_tmp,
        ..facts.context(&example_tmp)
    };
    let plan = decide(&learning, &args.plugin, &request, &ctx).map_err(|d| own(d.to_string()))?;
    let places = Places::of(&plan, facts.home.as_deref());
    let grants = Grants::new(&plan, &observed.context, places.clone(), Enforced::ALL);
    let mut suggestion = suggest(&observed.observed, &grants, &plan.program);
    suggestion.notes.push(format!(
        "which environment variables `{binary}` reads cannot be observed (a program reads its environment from its own memory, not through the kernel); the run had {} from the base policy — add more to `binaries.{binary}.env` if it needs them (deny patterns still win)",
        if plan.env.is_empty() {
            "none".to_string()
        } else {
            plan.env.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    ));
    let edit = PolicyEdit {
        suggestion: Some(&suggestion),
        flags_at_plugin: plugin_sets_network_flags(&base.policy, &args.plugin)
            .then_some(args.plugin.as_str()),
        ..setup
    };

    out!(
        "{}",
        render(
            &edit,
            &suggestion,
            &base_name,
            &binary,
            observed.observed.notifications
        )
    );
    if let Some(file) = write {
        let merged = merge(&base_text, &edit).map_err(|e| own(format!("{base_name}: {e}")))?;
        let written = Policy::from_toml(&file.display().to_string(), &merged)
            .map_err(|e| CliError::from(e).exit(EXIT_OWN_ERROR))?
            .policy;
        let missing = still_refused(
            &written,
            &args.plugin,
            &request,
            &ctx,
            &observed,
            &places,
            &suggestion,
        );
        std::fs::write(file, &merged)
            .map_err(|e| own(format!("cannot write {}: {e}", file.display())))?;
        errln!(
            "jobwarden: wrote {} ({base_name} with the addition; `jobwarden check` accepts it)",
            file.display()
        );
        for line in &missing {
            errln!("jobwarden: warning: the written policy still refuses: {line}");
        }
    }
    Ok(ExitCode::from(match end {
        Some(JobEnd::Exited { code }) => code.clamp(0, 255) as u8,
        Some(JobEnd::Signaled { signal }) => (128 + signal).clamp(0, 255) as u8,
        _ => EXIT_OWN_ERROR,
    }))
}

/// The policy's name for `given` and, when the base policy does not
/// define it, the path to define it with.
fn binary_for(
    policy: &Policy,
    plugin: &str,
    given: &str,
    facts: &HostFacts,
) -> Result<(String, Option<String>), Failure> {
    let tmp = super::example_job_tmp();
    let ctx = facts.context(&tmp);
    if !given.contains('/') && policy.binaries.contains_key(given) {
        return Ok((given.to_string(), None));
    }
    let path = if given.contains('/') {
        let path = std::env::current_dir()
            .map(|cwd| cwd.join(given))
            .unwrap_or_else(|_| PathBuf::from(given));
        // A path to a binary the policy already trusts is that binary.
        let real = path.canonicalize().ok();
        if let Some(name) = policy.binaries.keys().find(|name| {
            real.is_some()
                && jobwarden::decision::program_for(policy, name, &ctx).ok() == real
                && policy
                    .plugin_rule(plugin)
                    .is_some_and(|r| r.binaries.iter().any(|b| &b.value == *name))
        }) {
            return Ok((name.clone(), None));
        }
        path
    } else {
        find_program(policy, given, facts).ok_or_else(|| {
            own(format!(
                "`{given}` is neither a binary of the policy nor found in the policy's search_path or PATH; give its path"
            ))
        })?
    };
    if !jobwarden::platform::is_executable_file(&path) {
        return Err(own(format!("{} is not an executable file", path.display())));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if !valid {
        return Err(own(format!(
            "`{name}` cannot name a binary in a policy (letters, digits, `.`, `_`, `+`, `-`); copy or link the program under such a name"
        )));
    }
    if policy.binaries.contains_key(&name) {
        return Err(own(format!(
            "the policy's `{name}` is another file than {}; learn it by its name, or rename the binary in the policy",
            path.display()
        )));
    }
    Ok((name, Some(path.display().to_string())))
}

/// `name` in the policy's search path, then in this shell's `PATH` (learn
/// runs for an admin at a terminal; the policy it writes pins the path).
fn find_program(policy: &Policy, name: &str, facts: &HostFacts) -> Option<PathBuf> {
    let home = facts.home.as_deref().map(|h| h.display().to_string());
    let from_policy = policy.search_path.iter().filter_map(|dir| {
        let text = dir.value.as_str();
        match (&home, text.strip_prefix("{home}")) {
            (Some(home), Some(rest)) => Some(PathBuf::from(format!("{home}{rest}"))),
            (None, Some(_)) => None,
            (_, None) => Some(PathBuf::from(text)),
        }
    });
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_policy
        .chain(from_path)
        .map(|dir| dir.join(name))
        .find(|candidate| jobwarden::platform::is_executable_file(candidate))
}

/// What the written policy still refuses of the run (nothing, unless
/// learn could not express it); refusals learn reported on purpose are
/// left out.
fn still_refused(
    policy: &Policy,
    plugin: &str,
    request: &jobwarden::JobSpawnRequest,
    ctx: &DecisionContext<'_>,
    observed: &jobwarden::host::ObservedJob,
    places: &Places,
    suggestion: &Suggestion,
) -> Vec<String> {
    let plan = match decide(policy, plugin, request, ctx) {
        Ok(plan) => plan,
        Err(denial) => return vec![denial.to_string()],
    };
    let grants = Grants::new(&plan, &observed.context, places.clone(), Enforced::ALL);
    observed
        .observed
        .accesses()
        .into_iter()
        .filter_map(|access| match grants.check(access) {
            Verdict::Refused(r) if !suggestion.refused.iter().any(|s| &s.access == access) => {
                Some(r.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The addition as printed: comments saying what it is, the TOML, then
/// what was not granted and the notes, as comments (the whole stays valid
/// TOML).
fn render(
    edit: &PolicyEdit<'_>,
    suggestion: &Suggestion,
    base: &str,
    binary: &str,
    notifications: u64,
) -> String {
    let mut out = format!(
        "# jobwarden learn: what `{binary}` needed beyond {base}, from one observed run ({notifications} system calls).\n# Merge it into the policy (lists add to the ones already there), or run again with --write FILE.\n"
    );
    if suggestion.grants_nothing() && edit.define_path.is_none() && edit.allow_plugin.is_none() {
        out.push_str("# Nothing: the base policy already grants everything the run did.\n");
    } else {
        let toml = snippet(edit);
        let toml = match edit.allow_plugin {
            Some(plugin) => {
                let header = if plugin == CATCH_ALL {
                    "[plugins.\"*\"]".to_string()
                } else {
                    format!("[plugins.{plugin}]")
                };
                let marked = format!("# {binary} added to the plugin's list:\n{header}");
                match toml.strip_prefix(header.as_str()) {
                    Some(rest) => format!("{marked}{rest}"),
                    None => toml.replacen(&format!("\n{header}"), &format!("\n{marked}"), 1),
                }
            }
            None => toml,
        };
        out.push('\n');
        out.push_str(toml.trim_start());
    }
    if !suggestion.refused.is_empty() {
        out.push_str("\n# Not granted — the base policy refuses these on purpose:\n");
        for refusal in &suggestion.refused {
            out.push_str(&format!("#   {refusal}\n"));
        }
    }
    if !suggestion.notes.is_empty() {
        out.push_str("\n# Notes:\n");
        for note in &suggestion.notes {
            out.push_str(&format!("#   {note}\n"));
        }
    }
    out
}
