//! The JSONL audit log: one record per decision and one per job end, with
//! variable names but never values, and the policy's hash.

use crate::harness::*;
use jobwarden::JobSpawnRequest;

#[test]
fn decisions_and_ends_are_recorded_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let fx = Fixture::with("", |b| b.audit_log(&log));
    let out =
        fx.run(JobSpawnRequest::new("probe", ["print", "hi"]).with_env("PROBE_MODE", "hunter2"));
    let _ = out;
    let denied = fx.run(JobSpawnRequest::new("bash", ["-c", "id"]));
    assert!(denied.error().contains("denied"));
    // The log's own thread writes records; wait for it.
    fx.host.flush_audit_log().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("hunter2"),
        "values never reach the audit log"
    );
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["record"].as_str().unwrap(),
                r["decision"].as_str().or(r["outcome"].as_str()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("decision", "allow"),
            ("job_end", "completed"),
            ("decision", "deny")
        ],
        "{text}"
    );
    let allow = &records[0];
    assert_eq!(allow["env_names"][0], "PROBE_MODE");
    assert_eq!(allow["policy_sha256"].as_str().unwrap().len(), 64);
    let end = &records[1];
    assert!(end["enforcement"].as_str().unwrap().contains("filesystem"));
    assert!(end["duration_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(records[2]["rule"], "plugins.tests.binaries");
}
