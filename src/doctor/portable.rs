//! Doctor checks where jobwarden has no kernel sandbox to probe (macOS,
//! Windows): whether jobs run at all, and what the platform's report says
//! it would and would not enforce for a typical plan.

use super::{Check, Verdict, probe_job};
use crate::contract::JobSpawnRequest;
use crate::decision::{DecisionContext, decide};
use crate::host::JobEnd;
use crate::policy::Policy;
use crate::sandbox::Status;
use crate::sandbox::{HostSupport, SupportOptions, assess};
use std::path::Path;

/// Only Linux has the switch.
pub fn legacy_tiocsti() -> Option<bool> {
    None
}

/// A live check that jobs run (with the probe), then one line per item of
/// the report a confined job would get here.
pub fn machine_checks(
    probe: Option<&Path>,
    options: &SupportOptions,
    support: &HostSupport,
) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(probe) = probe {
        let args = ["say".to_string(), "0".into(), "doctor".into()];
        checks.push(match probe_job(probe, options, "", &args, 10) {
            Some((JobEnd::Exited { code: 0 }, out, _)) if out.contains("doctor") => Check {
                name: "jobs",
                verdict: Verdict::Works,
                detail: "a probe job ran and its output arrived".into(),
            },
            other => Check {
                name: "jobs",
                verdict: Verdict::Fails,
                detail: format!("a probe job did not run as expected: {other:?}"),
            },
        });
    }
    let Ok(exe) = std::env::current_exe() else {
        return checks;
    };
    let policy = format!(
        r#"
version = 1
enforcement = "best_effort"
[limits]
memory = "1GiB"
processes = 64
cpu_secs = 600
open_files = 1024
file_size = "1GiB"
[binaries.probe]
path = '{}'
[plugins.doctor]
binaries = ["probe"]
"#,
        exe.display()
    );
    let Ok(loaded) = Policy::from_toml("<doctor>", &policy) else {
        return checks;
    };
    let dir = std::env::temp_dir();
    let ctx = DecisionContext {
        repo: &dir,
        home: None,
        job_tmp: &dir.join("jobwarden-doctor"),
        host_env: &[],
    };
    let request = JobSpawnRequest::new("probe", Vec::<String>::new());
    if let Ok(plan) = decide(&loaded.policy, "doctor", &request, &ctx) {
        for item in assess(&plan, support).items {
            let verdict = match item.status {
                Status::Enforced | Status::Partial => Verdict::Unverified,
                Status::NotEnforced => Verdict::Unavailable,
                Status::NotRequested => continue,
            };
            checks.push(Check {
                name: item.kind.name(),
                verdict,
                detail: item.detail,
            });
        }
    }
    checks
}
