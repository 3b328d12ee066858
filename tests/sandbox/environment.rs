//! Invariant 2: the job's environment holds nothing the policy did not pass.

use crate::harness::*;
use jobwarden::JobSpawnRequest;

#[test]
fn host_secrets_are_absent_and_only_policy_variables_present() {
    let fx = Fixture::new("");
    let out = fx.run(JobSpawnRequest::new("probe", ["env"]).with_env("PROBE_MODE", "1"));
    let env: Vec<String> = out
        .stdout()
        .into_iter()
        .filter(|l| l.contains('=') && !l.starts_with("probe:"))
        .collect();
    let names: Vec<&str> = env.iter().map(|l| l.split('=').next().unwrap()).collect();
    assert_eq!(
        names,
        ["HOST_VISIBLE", "PATH", "PROBE_MODE", "TMPDIR"],
        "{env:?}"
    );
    let all = out.stdout().join("\n");
    assert!(!all.contains("s3cr3t"), "a host secret leaked: {all}");
    // The drop is reported by name, never by value.
    let system = out.system().join("\n");
    assert!(system.contains("HOST_API_TOKEN"), "{system}");
    assert!(!system.contains("s3cr3t"), "{system}");
}

#[test]
fn ld_preload_in_a_request_is_refused() {
    let fx = Fixture::new("");
    let out = fx.run(JobSpawnRequest::new("probe", ["env"]).with_env("LD_PRELOAD", "/tmp/evil.so"));
    let error = out.error();
    assert!(error.contains("env.deny_defaults[0]"), "{error}");
    assert!(
        out.events.len() == 1,
        "a refused job has exactly one event: {:#?}",
        out.events
    );
}
