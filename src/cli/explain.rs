//! `jobwarden explain [flags] -- BINARY [ARGS...]`: the plan, or the rule
//! that refuses. Exit 0 allowed, 1 denied, 2 usage or policy error.

use super::{Failure, HostFacts, JobArgs, build_request, example_job_tmp, load_policy, repo_root};
use jobwarden::decide;
use jobwarden::sandbox::{HostSupport, SupportOptions, assess};
use std::process::ExitCode;

pub fn run(args: &JobArgs, json: bool, support: &SupportOptions) -> Result<ExitCode, Failure> {
    let loaded = load_policy(args.policy.as_deref()).map_err(|e| e.exit(2))?;
    let policy = &loaded.policy;
    let repo = repo_root(args.repo.as_deref()).map_err(|e| e.exit(2))?;
    let facts = HostFacts::capture(repo);
    let job_tmp = example_job_tmp();
    let ctx = facts.context(&job_tmp);
    let request = build_request(args, policy, &ctx).map_err(|e| e.exit(1))?;
    Ok(match decide(policy, &args.plugin, &request, &ctx) {
        Ok(plan) => {
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&plan).expect("plans serialise")
                );
            } else {
                out!("{plan}");
                print_here(&plan, support);
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
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&denial).expect("denials serialise")
                );
            } else {
                outln!("denied: {}", denial.reason);
                outln!("  rule  {}", denial.rule);
                outln!("  hint  {}", denial.hint);
                outln!("  policy {}", policy.origin.name);
            }
            ExitCode::from(1)
        }
    })
}

/// What this machine would enforce for the plan: the decision is the
/// policy's; whether the job can run *here* also depends on the kernel.
fn print_here(plan: &jobwarden::Plan, support: &SupportOptions) {
    let report = assess(plan, &HostSupport::detect(support));
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
