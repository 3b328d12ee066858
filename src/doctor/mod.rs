//! `jobwarden doctor`: what this machine can really enforce.
//!
//! Facts are probed, not guessed from versions: each check runs
//! `jobwarden-probe` as a real job under a purpose-made policy and looks at
//! what the kernel answered (a refused read, connect or signal; a fork
//! stopped at a pids limit; an allocation killed by a memory limit; an
//! escaped process killed with its job). Without the probe binary the
//! detected support is shown, marked unverified.

use crate::contract::{JobEvent, JobSpawnRequest};
use crate::decision::{DecisionContext, plan_for_binary};
use crate::host::{JobEnd, PluginHandle, PolicyJobHost};
use crate::policy::{EnforcementPolicy, Policy};
use crate::sandbox::Item;
use crate::sandbox::{HostSupport, SupportOptions, assess};
use serde::Serialize;
use std::path::{Path, PathBuf};

// The checks that depend on what the platform offers.
#[cfg(target_os = "linux")]
mod baseline;
#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "portable.rs")]
mod checks;
#[cfg(target_os = "linux")]
mod observation;
use std::time::{Duration, Instant};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The kernel refused as it should.
    Works,
    /// The job was able to do what it should not.
    Fails,
    /// Detected, not probed (no probe binary).
    Unverified,
    /// This machine does not offer it.
    Unavailable,
}

/// One checked capability.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The capability, in a few words.
    pub name: &'static str,
    /// What probing it showed, or that it could not be probed.
    pub verdict: Verdict,
    /// What was tried and what happened, for a human.
    pub detail: String,
}

/// What this machine can enforce.
#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    /// The operating system and kernel, in words.
    pub platform: String,
    /// Whether jobwarden runs as root (RLIMIT_NPROC is then ignored).
    pub root: bool,
    /// The enforcement layers detected here.
    pub support: HostSupport,
    /// `dev.tty.legacy_tiocsti`, when the kernel has it.
    pub legacy_tiocsti: Option<bool>,
    /// One entry per capability probed.
    pub checks: Vec<Check>,
}

/// What one plugin × binary of a policy would get here.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyCheck {
    /// The plugin's name (`*` for the catch-all).
    pub plugin: String,
    /// The binary as the policy names it.
    pub binary: String,
    /// `None` when the binary is not installed here (the reason in `note`).
    pub items: Option<Vec<Item>>,
    /// Why there are no `items`: the denial's reason.
    pub note: Option<String>,
    /// When the binary's `sha256` pin does not match the file here (every
    /// job of it would be refused): what the file hashes to, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256_mismatch: Option<String>,
}

/// A policy's needs against this machine.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// The policy's path, or `<embedded default policy>`.
    pub policy: String,
    /// What the policy does when enforcement is missing.
    pub enforcement: EnforcementPolicy,
    /// One entry per plugin × binary.
    pub checks: Vec<PolicyCheck>,
    /// True when `enforcement = "required"` and some job would be refused here.
    pub would_refuse: bool,
}

/// Probes the machine. `probe` is the `jobwarden-probe` binary, if found.
pub fn probe_machine(probe: Option<&Path>, options: &SupportOptions) -> MachineReport {
    let support = HostSupport::detect(options);
    MachineReport {
        platform: crate::platform::platform_description(),
        root: support.is_root(),
        legacy_tiocsti: checks::legacy_tiocsti(),
        checks: checks::machine_checks(probe, options, &support),
        support,
    }
}

fn doctor_policy(probe: &Path, extra: &str) -> String {
    let probe_dir = probe.parent().unwrap_or(Path::new("/")).display();
    format!(
        r#"
version = 1
enforcement = "best_effort"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{probe_dir}"]
read_write = ["{{repo}}", "{{tmp}}"]
[limits]
timeout_secs = 30
kill_grace_secs = 0.2
[binaries.probe]
path = "{}"
[plugins.doctor]
binaries = ["probe"]
{extra}
"#,
        probe.display()
    )
}

/// Runs one probe job under a policy with `extra` appended; returns the
/// end, the probe's stdout and the enforcement report items.
pub(crate) fn probe_job(
    probe: &Path,
    options: &SupportOptions,
    extra: &str,
    args: &[String],
    timeout: u64,
) -> Option<(JobEnd, String, Vec<Item>)> {
    let policy = Policy::from_toml("<doctor>", &doctor_policy(probe, extra))
        .ok()?
        .policy;
    let dir = tempfile::tempdir().ok()?;
    let host = PolicyJobHost::builder(policy, dir.path())
        .tmp_dir(dir.path())
        .support_options(options.clone())
        .build()
        .ok()?;
    let plugin = host.plugin("doctor");
    let request = JobSpawnRequest::new("probe", args.iter().cloned()).with_timeout_secs(timeout);
    let (id, end, output) = run(&plugin, request)?;
    let items = host.enforcement(&id).map(|r| r.items).unwrap_or_default();
    Some((end, output, items))
}

/// Runs one job to its end; returns its id, how it ended and its stdout.
fn run(plugin: &PluginHandle, request: JobSpawnRequest) -> Option<(String, JobEnd, String)> {
    use crate::JobHost;
    let id = plugin.spawn(request);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = String::new();
    loop {
        for event in plugin.wait_events(Duration::from_millis(100)) {
            match event {
                JobEvent::JobLogLine { data, .. } if data.stream == "stdout" => {
                    output.push_str(&data.line);
                    output.push('\n');
                }
                e if e.is_terminal() => return Some((id.clone(), plugin.end(&id)?, output)),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

/// For each plugin and each binary it may run: what the job would get here.
pub fn assess_policy(policy: &Policy, support: &HostSupport, repo: &Path) -> PolicyReport {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env: Vec<(String, String)> = Vec::new();
    let tmp = std::env::temp_dir().join("jobwarden-doctor-job");
    let ctx = DecisionContext {
        repo,
        home: home.as_deref(),
        job_tmp: &tmp,
        host_env: &env,
    };
    let mut checks = Vec::new();
    let mut would_refuse = false;
    for plugin in policy.plugins.values().chain(policy.catch_all.iter()) {
        for binary in &plugin.binaries {
            let (items, note, sha256_mismatch) =
                match plan_for_binary(policy, &plugin.name, &binary.value, &ctx) {
                    Ok(plan) => {
                        let report = assess(&plan, support);
                        let mismatch = pin_mismatch(&plan);
                        if report.refusal(&policy.enforcement).is_some() {
                            would_refuse = true;
                        }
                        (Some(report.items), None, mismatch)
                    }
                    Err(denial) => (None, Some(denial.reason), None),
                };
            checks.push(PolicyCheck {
                plugin: plugin.name.clone(),
                binary: binary.value.clone(),
                items,
                note,
                sha256_mismatch,
            });
        }
    }
    PolicyReport {
        policy: policy.origin.name.clone(),
        enforcement: policy.enforcement.clone(),
        checks,
        would_refuse,
    }
}

/// The AppArmor profile jobwarden ships (`packaging/apparmor/jobwarden`)
/// with its program path set to `program`: on distributions that restrict
/// unprivileged user namespaces through AppArmor (Ubuntu 23.10 and later),
/// it lets that program give each job its own mount namespace.
pub fn apparmor_profile(program: &str) -> String {
    const PROFILE: &str = include_str!("../../packaging/apparmor/jobwarden");
    let mut text = String::with_capacity(PROFILE.len() + program.len());
    for line in PROFILE.lines() {
        if line.starts_with("@{jobwarden_program}=") {
            text.push_str("@{jobwarden_program}=");
            text.push_str(program);
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    text
}

/// Why the plan's program does not match its `sha256` pin, if it does not
/// (what the program layer would refuse the job for).
fn pin_mismatch(plan: &crate::Plan) -> Option<String> {
    let pin = plan.sha256.as_ref()?;
    let actual =
        std::fs::File::open(&plan.program).and_then(|file| crate::sandbox::sha256_of(&file));
    match actual {
        Ok(actual) if actual == pin.value => None,
        Ok(actual) => Some(format!(
            "{} has sha256 {}, but `{}` pins {}: every job of it would be refused",
            plan.program.display(),
            crate::policy::hex(&actual),
            pin.key,
            crate::policy::hex(&pin.value)
        )),
        Err(e) => Some(format!(
            "{} cannot be read to check `{}`: {e}",
            plan.program.display(),
            pin.key
        )),
    }
}

/// True when an item is weaker than asked.
pub fn weaker(item: &Item) -> bool {
    item.status.is_weaker()
}
