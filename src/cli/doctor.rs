//! `jobwarden doctor [--policy FILE] [--json]`: what this machine can
//! enforce, probed with real jobs; with `--policy`, what each of the
//! policy's jobs would get. Exit 1 when the policy says `required` and some
//! job would be refused here, or when a probe shows confinement failing.

use super::{Failure, load_policy, repo_root};
use jobwarden::doctor::{Verdict, assess_policy, probe_machine, weaker};
use jobwarden::sandbox::SupportOptions;
use std::path::Path;
use std::process::ExitCode;

pub fn run(
    policy: Option<&Path>,
    json: bool,
    options: &SupportOptions,
) -> Result<ExitCode, Failure> {
    let probe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("jobwarden-probe")))
        .filter(|p| p.is_file());
    let machine = probe_machine(probe.as_deref(), options);
    let policy_report = match policy {
        Some(path) => {
            let loaded = load_policy(Some(path)).map_err(|e| e.exit(2))?;
            let repo = repo_root(None).unwrap_or_else(|_| std::env::temp_dir());
            Some(assess_policy(&loaded.policy, &machine.support, &repo))
        }
        None => None,
    };
    let failing = machine.checks.iter().any(|c| c.verdict == Verdict::Fails);
    // A pin that does not match the file here refuses every job of its
    // binary, whatever the enforcement level.
    let refuses = policy_report
        .as_ref()
        .is_some_and(|r| r.would_refuse || r.checks.iter().any(|c| c.sha256_mismatch.is_some()));
    if json {
        let value = serde_json::json!({"machine": machine, "policy": policy_report});
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).expect("reports serialise")
        );
    } else {
        print_machine(&machine, probe.is_some());
        if let Some(report) = &policy_report {
            outln!();
            outln!(
                "policy {} (enforcement {}):",
                report.policy,
                report.enforcement.describe()
            );
            for check in &report.checks {
                let who = format!("{} → {}", check.plugin, check.binary);
                if let Some(mismatch) = &check.sha256_mismatch {
                    outln!("  {who:<28} sha256 MISMATCH: {mismatch}");
                }
                match (&check.items, &check.note) {
                    (Some(items), _) => {
                        let weak: Vec<String> = items
                            .iter()
                            .filter(|i| weaker(i))
                            .map(|i| format!("{} {}: {}", i.kind, i.status, i.detail))
                            .collect();
                        if weak.is_empty() {
                            outln!("  {who:<28} everything it asks is enforced here");
                        } else {
                            outln!("  {who:<28} {}", weak.join("; "));
                        }
                    }
                    (None, Some(note)) => outln!("  {who:<28} not assessed: {note}"),
                    (None, None) => {}
                }
            }
            if report.would_refuse {
                outln!(
                    "  => this machine cannot give what the policy requires: such jobs would be refused"
                );
            }
        }
    }
    Ok(if failing || refuses {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--apparmor-profile`: the shipped profile, naming this binary.
pub fn apparmor_profile() -> ExitCode {
    let program = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/bin/jobwarden".into());
    out!("{}", jobwarden::doctor::apparmor_profile(&program));
    ExitCode::SUCCESS
}

fn print_machine(machine: &jobwarden::doctor::MachineReport, probed: bool) {
    let support = &machine.support;
    outln!("jobwarden doctor: what this machine can enforce");
    outln!("  platform      {}", machine.platform);
    for (label, text) in support.describe() {
        outln!("  {label:<13} {text}");
    }
    if !probed {
        outln!(
            "  (jobwarden-probe was not found next to jobwarden: checks below are detected, not probed)"
        );
    }
    for check in &machine.checks {
        let verdict = match check.verdict {
            Verdict::Works => "works",
            Verdict::Fails => "FAILS",
            Verdict::Unverified => "unverified",
            Verdict::Unavailable => "unavailable",
        };
        outln!("  {:<13} {verdict}: {}", check.name, check.detail);
    }
    for tip in support.tips() {
        outln!("  tip           {tip}");
    }
    match machine.legacy_tiocsti {
        Some(true) => outln!(
            "  tiocsti       legacy TIOCSTI is enabled (dev.tty.legacy_tiocsti=1); jobs hold no terminal, so they cannot inject keystrokes"
        ),
        Some(false) => outln!("  tiocsti       legacy TIOCSTI is disabled"),
        None => outln!("  tiocsti       the kernel has no legacy_tiocsti switch"),
    }
}
