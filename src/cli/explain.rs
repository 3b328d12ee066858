//! `jobwarden explain [flags] -- BINARY [ARGS...]`: the plan, or the rule
//! that refuses. Exit 0 allowed, 1 denied, 2 usage or policy error.
//!
//! `--json` prints one object: `decision` (`allowed` or `denied`), `rule`
//! (the key that allowed the plugin to run the binary, or the one that
//! refused), and for an allowed request the resolved `plan` (every value
//! with the key behind it), `sources` (the keys of the values the plan
//! holds bare: program, arguments, working directory), `executables` (all
//! the job may execute, each with its key) and `here` (what this machine
//! would not enforce); for a denied one `reason` and `hint`. The format is
//! documented in the README.

use super::{Failure, HostFacts, JobArgs, build_request, example_job_tmp, load_policy, repo_root};
use jobwarden::decision::allowed_command_lines;
use jobwarden::policy::Policy;
use jobwarden::sandbox::{
    Executable, ExecutableKind, HostSupport, SupportOptions, assess, executables,
};
use jobwarden::{JobSpawnRequest, Plan, decide};
use serde_json::json;
use std::process::ExitCode;

pub fn run(args: &JobArgs, json: bool, support: &SupportOptions) -> Result<ExitCode, Failure> {
    let loaded = load_policy(args.policy.as_deref()).map_err(|e| e.exit(2))?;
    let policy = &loaded.policy;
    let repo = repo_root(args.repo.as_deref()).map_err(|e| e.exit(2))?;
    let facts = HostFacts::capture(repo);
    let job_tmp = example_job_tmp();
    let ctx = facts.context(&job_tmp);
    let request = build_request(args, policy, &ctx).map_err(|e| e.exit(1))?;
    let support = HostSupport::detect(support);
    let policy_json = json!({"name": policy.origin.name, "sha256": policy.origin.sha256});
    Ok(match decide(policy, &args.plugin, &request, &ctx) {
        Ok(plan) => {
            let may_execute = executables(&plan, &support);
            if json {
                let report = assess(&plan, &support);
                let value = json!({
                    "decision": "allowed",
                    "rule": binary_rule(policy, &plan),
                    "plan": plan,
                    "sources": sources(&plan, &request),
                    "executables": may_execute,
                    "here": {
                        "platform": report.platform,
                        "weaker_than_asked": report.weaker_than_asked(),
                        "refusal": report.refusal(&plan.enforcement),
                    },
                    "policy": policy_json,
                });
                print_json(&value);
            } else {
                out!("{plan}");
                print_executables(&may_execute);
                print_here(&plan, &support);
                outln!(
                    "  note: {{tmp}} is a fresh directory per job; {} stands for it here",
                    job_tmp.display()
                );
                outln!(
                    "  policy {} (sha256 {})",
                    policy.origin.name,
                    &policy.origin.sha256[..16]
                );
            }
            ExitCode::SUCCESS
        }
        Err(denial) => {
            if json {
                print_json(&json!({
                    "decision": "denied",
                    "rule": denial.rule,
                    "reason": denial.reason,
                    "hint": denial.hint,
                    "policy": policy_json,
                }));
            } else {
                outln!("denied: {}", denial.reason);
                outln!("  rule  {}", denial.rule);
                outln!("  hint  {}", denial.hint);
                print_allowed_command_lines(policy, &args.plugin, &request, &denial.rule);
                outln!("  policy {}", policy.origin.name);
            }
            ExitCode::from(1)
        }
    })
}

/// Prints `value`; a reader that went away (`| head`) is not an error.
fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    outln!("{text}");
}

/// The key that lets the plan's plugin run its binary.
fn binary_rule(policy: &Policy, plan: &Plan) -> Option<String> {
    let rule = policy.plugin_rule(&plan.plugin)?;
    let entry = rule.binaries.iter().find(|b| b.value == plan.binary)?;
    Some(entry.key.clone())
}

/// The keys behind the values a plan holds without one.
fn sources(plan: &Plan, request: &JobSpawnRequest) -> serde_json::Value {
    json!({
        "program": plan.program_key,
        "argv0": plan.program_key,
        "args": plan.args_key.clone().unwrap_or_else(|| {
            "request.args (no args.allow applies: any arguments the other argument rules allow)".into()
        }),
        "env": plan.env_keys,
        "cwd": if request.cwd.as_deref().is_some_and(|c| !c.is_empty()) {
            "request.cwd"
        } else {
            "the repository root (the request names no cwd)"
        },
        "label": "request.label",
        "job_tmp": "{tmp}: a fresh directory per job",
    })
}

/// Everything the job may execute, each with the key behind it.
fn print_executables(list: &[Executable]) {
    outln!("  may execute (the kernel refuses every other file)");
    for e in list {
        let what = match e.kind {
            ExecutableKind::Program => "program",
            ExecutableKind::Interpreter => "runs it",
            ExecutableKind::Granted if e.key.contains(".helpers[") => "helper",
            ExecutableKind::Granted => "execute",
            ExecutableKind::EnvTarget => "env runs",
        };
        match (&e.note, e.allowed) {
            (Some(note), Some(false)) => outln!(
                "    {what:<10} {}  ({})\n               {note}",
                e.path.display(),
                e.key
            ),
            (Some(note), _) => outln!("    {what:<10} {}  ({}; {note})", e.path.display(), e.key),
            (None, _) => outln!("    {what:<10} {}  ({})", e.path.display(), e.key),
        }
    }
}

/// Under a denial by an `args.allow` list, the command lines it allows.
fn print_allowed_command_lines(
    policy: &Policy,
    plugin: &str,
    request: &JobSpawnRequest,
    rule: &str,
) {
    let Some(plugin_rule) = policy.plugin_rule(plugin) else {
        return;
    };
    let Some(binary) = policy.binaries.get(&request.binary) else {
        return;
    };
    let Some(allow) = allowed_command_lines(binary, plugin_rule) else {
        return;
    };
    if !rule.starts_with(&allow.key) {
        return;
    }
    outln!("  allowed command lines of `{}`:", request.binary);
    for pattern in &allow.value {
        outln!("    {}  ({})", pattern.text(), pattern.key);
    }
}

/// What this machine would enforce for the plan: the decision is the
/// policy's; whether the job can run *here* also depends on the kernel.
fn print_here(plan: &Plan, support: &HostSupport) {
    let report = assess(plan, support);
    let weaker = report.weaker_than_asked();
    if weaker.is_empty() {
        outln!("  here      everything the plan asks is enforced on this machine");
        return;
    }
    outln!("  here      on this machine ({}):", report.platform);
    for item in &weaker {
        outln!("    {:<13} {}: {}", item.kind, item.status, item.detail);
    }
    if let Some(why) = report.refusal(&plan.enforcement) {
        outln!("    => this job would be refused here before it runs: {why}");
    }
}
