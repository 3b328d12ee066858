//! `jobwarden doctor [--policy FILE] [--json]`: what this machine can
//! enforce, probed with real jobs; with `--policy`, what each of the
//! policy's jobs would get. Exit 1 when the policy says `required` and some
//! job would be refused here, or when a probe shows confinement failing.

use super::{load_policy, repo_root};
use jobwarden::doctor::{Verdict, assess_policy, probe_machine, weaker};
use jobwarden::sandbox::os::SupportOptions;
use std::path::Path;
use std::process::ExitCode;

pub fn run(policy: Option<&Path>, json: bool) -> ExitCode {
    let probe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("jobwarden-probe")))
        .filter(|p| p.is_file());
    let options = SupportOptions::from_env();
    let machine = probe_machine(probe.as_deref(), &options);
    let policy_report = match policy {
        Some(path) => {
            let Ok(loaded) = load_policy(Some(path)) else {
                return ExitCode::from(2);
            };
            let repo = repo_root(None).unwrap_or_else(|_| std::env::temp_dir());
            Some(assess_policy(&loaded.policy, &machine.support, &repo))
        }
        None => None,
    };
    let failing = machine.checks.iter().any(|c| c.verdict == Verdict::Fails);
    let refuses = policy_report.as_ref().is_some_and(|r| r.would_refuse);
    if json {
        let value = serde_json::json!({"machine": machine, "policy": policy_report});
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("reports serialise")
        );
    } else {
        print_machine(&machine, probe.is_some());
        if let Some(report) = &policy_report {
            println!();
            println!(
                "policy {} (enforcement {:?}):",
                report.policy, report.enforcement
            );
            for check in &report.checks {
                let who = format!("{} → {}", check.plugin, check.binary);
                match (&check.items, &check.note) {
                    (Some(items), _) => {
                        let weak: Vec<String> = items
                            .iter()
                            .filter(|i| weaker(i))
                            .map(|i| format!("{} {:?}: {}", i.name, i.status, i.detail))
                            .collect();
                        if weak.is_empty() {
                            println!("  {who:<28} everything it asks is enforced here");
                        } else {
                            println!("  {who:<28} {}", weak.join("; "));
                        }
                    }
                    (None, Some(note)) => println!("  {who:<28} not assessed: {note}"),
                    (None, None) => {}
                }
            }
            if report.would_refuse {
                println!(
                    "  => this machine cannot give what the policy requires: such jobs would be refused"
                );
            }
        }
    }
    if failing || refuses {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_machine(machine: &jobwarden::doctor::MachineReport, probed: bool) {
    let support = &machine.support;
    println!("jobwarden doctor: what this machine can enforce");
    println!("  platform      {}", machine.platform);
    println!(
        "  user          {}",
        if machine.root {
            "root: RLIMIT_NPROC is ignored for root, only a pids cgroup limits processes"
        } else {
            "not root"
        }
    );
    match (&support.landlock.unavailable, support.landlock.kernel_abi) {
        (None, Some(k)) if k != support.landlock.abi => {
            println!(
                "  landlock      ABI {} (kernel {k}, capped by JOBWARDEN_LANDLOCK_ABI_MAX)",
                support.landlock.abi
            )
        }
        (None, _) => println!("  landlock      ABI {}", support.landlock.abi),
        (Some(why), _) => println!("  landlock      unavailable: {why}"),
    }
    let cg = &support.cgroups;
    let mut groups = Vec::new();
    if let Some(v2) = &cg.v2 {
        let kill = if cg.v2_kill { ", cgroup.kill" } else { "" };
        let controllers = if cg.v2_controllers.is_empty() {
            " (no controllers delegated)".to_string()
        } else {
            format!(" (controllers: {})", cg.v2_controllers.join(" "))
        };
        groups.push(format!("v2 {}{kill}{controllers}", v2.display()));
    }
    if let Some(p) = &cg.v1_pids {
        groups.push(format!("v1 pids {}", p.display()));
    }
    if let Some(m) = &cg.v1_memory {
        groups.push(format!("v1 memory {}", m.display()));
    }
    match &cg.unavailable {
        Some(why) => println!("  cgroups       none usable: {why}"),
        None => println!("  cgroups       {}", groups.join("; ")),
    }
    if !probed {
        println!(
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
        println!("  {:<13} {verdict}: {}", check.name, check.detail);
    }
    if cg.unavailable.is_none() && !cg.favordynmods {
        println!(
            "  tip           every job start waits for an RCU grace period to join its cgroups (a few ms);\n                mounting a cgroup hierarchy with favordynmods removes the wait, e.g.\n                `mount -o remount,favordynmods {}` (forks become slightly slower system-wide)",
            cg.v2
                .as_deref()
                .or(cg.v1_pids.as_deref())
                .map_or("/sys/fs/cgroup".into(), |p| p.display().to_string())
        );
    }
    match machine.legacy_tiocsti {
        Some(true) => println!(
            "  tiocsti       legacy TIOCSTI is enabled (dev.tty.legacy_tiocsti=1); jobs hold no terminal, so they cannot inject keystrokes"
        ),
        Some(false) => println!("  tiocsti       legacy TIOCSTI is disabled"),
        None => println!("  tiocsti       the kernel has no legacy_tiocsti switch"),
    }
}
