//! The optional JSONL audit log: one record per decision and one per job end.
//!
//! Records carry environment variable *names* only, never values, and the
//! sha256 of the policy that decided, so an auditor can tell which policy
//! version allowed what.

use crate::contract::{JobSpawnRequest, timestamp_now};
use crate::decision::{Denial, Plan};
use serde::Serialize;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::Mutex;

/// An append-only JSONL file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<LineWriter<File>>,
}

#[derive(Serialize)]
struct DecisionRecord<'a> {
    record: &'static str,
    time: String,
    plugin: &'a str,
    job_id: Option<&'a str>,
    label: &'a str,
    binary: &'a str,
    program: Option<String>,
    args: &'a [String],
    cwd: Option<String>,
    env_names: Vec<&'a str>,
    decision: &'static str,
    rule: Option<&'a str>,
    reason: Option<&'a str>,
    policy_sha256: &'a str,
}

/// How a job ended, for its audit record.
#[derive(Debug, Serialize)]
pub struct EndRecord<'a> {
    pub record: &'static str,
    pub time: String,
    pub plugin: &'a str,
    pub job_id: &'a str,
    pub label: &'a str,
    pub binary: &'a str,
    pub program: String,
    pub args: &'a [String],
    pub cwd: String,
    pub env_names: Vec<&'a str>,
    /// `completed`, `failed`, `cancelled`.
    pub outcome: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub detail: Option<String>,
    pub duration_secs: f64,
    pub enforcement: Option<String>,
    pub policy_sha256: &'a str,
}

impl AuditLog {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = crate::sandbox::os::open_private_append(path)?;
        Ok(Self {
            file: Mutex::new(LineWriter::new(file)),
        })
    }

    fn write(&self, record: &impl Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&line)
    }

    /// Records a decision.
    pub fn decision(
        &self,
        plugin: &str,
        job_id: Option<&str>,
        request: &JobSpawnRequest,
        outcome: Result<&Plan, &Denial>,
        policy_sha256: &str,
    ) -> std::io::Result<()> {
        let mut env_names: Vec<&str> = request.env.keys().map(String::as_str).collect();
        env_names.sort_unstable();
        let (program, cwd) = match outcome {
            Ok(plan) => (
                Some(plan.program.display().to_string()),
                Some(plan.cwd.display().to_string()),
            ),
            Err(_) => (None, request.cwd.clone()),
        };
        self.write(&DecisionRecord {
            record: "decision",
            time: timestamp_now(),
            plugin,
            job_id,
            label: &request.label,
            binary: &request.binary,
            program,
            args: &request.args,
            cwd,
            env_names,
            decision: if outcome.is_ok() { "allow" } else { "deny" },
            rule: outcome.err().map(|d| d.rule.as_str()),
            reason: outcome.err().map(|d| d.reason.as_str()),
            policy_sha256,
        })
    }

    /// Records a job's end.
    pub fn end(&self, record: &EndRecord<'_>) -> std::io::Result<()> {
        self.write(record)
    }
}
