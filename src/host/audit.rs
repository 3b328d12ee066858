//! The optional JSONL audit log: one record per decision and one per job end.
//!
//! Records carry environment variable *names* only, never values, and the
//! sha256 of the policy that decided, so an auditor can tell which policy
//! version allowed what.
//!
//! Records are serialised on the caller's thread and written by the log's
//! own thread, so `spawn` returns quickly whatever the disk does. The queue
//! between them is bounded: when the writer falls that far behind, a record
//! is dropped, the caller is told (the host warns), and the log itself
//! records how many were dropped when the writer catches up — an audit log
//! never silently misses a record.

use super::conclude::Ending;
use crate::contract::{JobSpawnRequest, timestamp_now};
use crate::decision::{Denial, Plan};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Records queued for the writer before new ones are dropped.
const QUEUE: usize = 8192;

/// An append-only JSONL file, written by its own thread.
#[derive(Debug)]
pub struct AuditLog {
    sender: Option<SyncSender<Message>>,
    writer: Option<JoinHandle<()>>,
    state: Arc<WriterState>,
}

/// What callers send the writer thread.
#[derive(Debug)]
enum Message {
    /// One serialised record, newline included.
    Record(Vec<u8>),
    /// Write everything before this, flush, then answer.
    Flush(SyncSender<()>),
}

/// What the writer thread tells the callers.
#[derive(Debug, Default)]
struct WriterState {
    /// Records dropped since the writer last wrote a `dropped` record.
    dropped: AtomicU64,
    /// The writer's last I/O error, reported by the next call.
    error: Mutex<Option<String>>,
}

/// Why a record did not make it to the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The record could not be turned into JSON.
    #[error("cannot serialise the record: {0}")]
    Serialise(#[source] serde_json::Error),
    /// The writer is too far behind; the record was dropped and counted.
    #[error(
        "the audit log writer is {QUEUE} records behind; this record was dropped (the log will say how many)"
    )]
    Behind,
    /// The writer thread is gone (the host is shutting down).
    #[error("the audit log writer has stopped")]
    Stopped,
    /// The last write failed; the message is the I/O error.
    #[error("writing the audit log failed: {0}")]
    Write(String),
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

impl<'a> EndRecord<'a> {
    /// The record of a job of `plan` that ended as `ending`.
    pub(super) fn new(
        plugin: &'a str,
        job_id: &'a str,
        plan: &'a Plan,
        ending: &Ending,
        elapsed: std::time::Duration,
        enforcement: Option<String>,
    ) -> Self {
        Self {
            record: "job_end",
            time: timestamp_now(),
            plugin,
            job_id,
            label: &plan.label,
            binary: &plan.binary,
            program: plan.program.display().to_string(),
            args: &plan.args,
            cwd: plan.cwd.display().to_string(),
            env_names: plan.env.keys().map(String::as_str).collect(),
            outcome: ending.outcome().word(),
            exit_code: ending.exit_code,
            signal: ending.signal,
            detail: ending.reason.clone(),
            duration_secs: elapsed.as_secs_f64(),
            enforcement,
            policy_sha256: &plan.policy_sha256,
        }
    }
}

impl AuditLog {
    /// Opens (creating, mode 0600) `path` for appending and starts its writer.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = crate::platform::open_private_append(path)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let state = Arc::new(WriterState::default());
        let writer_state = state.clone();
        let writer = std::thread::Builder::new()
            .name("jobwarden-audit".into())
            .spawn(move || write_records(file, &receiver, &writer_state))?;
        Ok(Self {
            sender: Some(sender),
            writer: Some(writer),
            state,
        })
    }

    fn write(&self, record: &impl Serialize) -> Result<(), AuditError> {
        if let Some(error) = super::locks::lock(&self.state.error).take() {
            return Err(AuditError::Write(error));
        }
        let mut line = serde_json::to_vec(record).map_err(AuditError::Serialise)?;
        line.push(b'\n');
        let sender = self.sender.as_ref().ok_or(AuditError::Stopped)?;
        match sender.try_send(Message::Record(line)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
                Err(AuditError::Behind)
            }
            Err(TrySendError::Disconnected(_)) => Err(AuditError::Stopped),
        }
    }

    /// Records a decision.
    pub fn decision(
        &self,
        plugin: &str,
        job_id: Option<&str>,
        request: &JobSpawnRequest,
        outcome: Result<&Plan, &Denial>,
        policy_sha256: &str,
    ) -> Result<(), AuditError> {
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
    pub fn end(&self, record: &EndRecord<'_>) -> Result<(), AuditError> {
        self.write(record)
    }

    /// Waits until every record made so far is in the file (and flushed).
    pub fn flush(&self) -> Result<(), AuditError> {
        let sender = self.sender.as_ref().ok_or(AuditError::Stopped)?;
        let (done, written) = std::sync::mpsc::sync_channel(1);
        sender
            .send(Message::Flush(done))
            .map_err(|_| AuditError::Stopped)?;
        written.recv().map_err(|_| AuditError::Stopped)?;
        match super::locks::lock(&self.state.error).take() {
            Some(error) => Err(AuditError::Write(error)),
            None => Ok(()),
        }
    }
}

/// Writes every record queued before the log is dropped, then flushes.
impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: one record per line, flushed whenever the queue is
/// empty (so a reader of the file sees every record soon after it was made).
fn write_records(file: File, messages: &Receiver<Message>, state: &WriterState) {
    let mut out = BufWriter::new(file);
    let fail = |e: std::io::Error| {
        *super::locks::lock(&state.error) = Some(e.to_string());
    };
    let mut waiting = Vec::new();
    while let Ok(first) = messages.recv() {
        let dropped = state.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note = format!(
                "{{\"record\":\"dropped\",\"time\":\"{}\",\"count\":{dropped}}}\n",
                timestamp_now()
            );
            if let Err(e) = out.write_all(note.as_bytes()) {
                fail(e);
            }
        }
        for message in std::iter::once(first).chain(std::iter::from_fn(|| messages.try_recv().ok()))
        {
            match message {
                Message::Record(line) => {
                    if let Err(e) = out.write_all(&line) {
                        fail(e);
                    }
                }
                Message::Flush(done) => waiting.push(done),
            }
        }
        if let Err(e) = out.flush() {
            fail(e);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    if let Err(e) = out.flush() {
        fail(e);
    }
}
