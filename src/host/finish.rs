//! Ending a job: the exit summary, exactly one terminal event, the status,
//! the audit record, and removal of everything the job was given (its
//! cgroups, its `{tmp}`), with the reason stated in words a person can act
//! on — which limit killed it, which signal, which status.

use super::JobEnd;
use super::audit::EndRecord;
use super::supervisor::{Job, Supervisor};
use crate::contract::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobProgressData, JobStatus,
    timestamp_now,
};
use crate::decision::Plan;
use crate::policy::{Limit, units::format_size};
use crate::sandbox::os;
use std::io::ErrorKind;
use std::time::Duration;

/// How a job ended, for its audit record.
pub(super) struct Outcome {
    pub outcome: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub detail: Option<String>,
}

impl Outcome {
    pub fn failed(exit_code: Option<i32>, signal: Option<i32>, error: String) -> Self {
        Self {
            outcome: "failed",
            exit_code,
            signal,
            detail: Some(error),
        }
    }
}

impl Supervisor {
    pub(super) fn finalize(&mut self, mut job: Job) {
        let exit = job.exit.take().expect("finalize only jobs that exited");
        let info = exit.info;
        // Read everything the tree's containment knows before removing it.
        let ever_forked = job.tree.ever_forked();
        let oom_kills = job.tree.oom_kills();
        let peak = job.tree.memory_peak().unwrap_or(info.max_rss);
        if let Err(problem) = job.tree.dismantle() {
            self.shared
                .warn(format!("cleaning up {}: {problem}", job.id));
        }
        if let Err(e) = std::fs::remove_dir_all(&job.plan.job_tmp)
            && e.kind() != ErrorKind::NotFound
        {
            self.shared
                .warn(format!("cannot remove {}: {e}", job.plan.job_tmp.display()));
        }

        let (user, sys) = (info.user, info.system);
        job.usage.elapsed = exit.elapsed;
        job.usage.cpu_time = job.usage.cpu_time.max(user + sys);
        job.usage.peak_rss_bytes = job.usage.peak_rss_bytes.max(peak);
        job.usage.rss_bytes = 0;
        job.usage.processes = 0;
        let summary = format!(
            "jobwarden: finished in {:.1} s · cpu {:.1} s user / {:.1} s sys · peak rss {}",
            exit.elapsed.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
            format_size(job.usage.peak_rss_bytes)
        );
        let (plugin, id) = (job.plugin.clone(), job.id.clone());
        // Progress declared since the last tick is not lost at the end.
        if let Some((percent, step)) = job.output.progress.take_update() {
            self.emit(
                &plugin,
                JobEvent::JobProgress {
                    job_id: id.clone(),
                    data: JobProgressData { percent, step },
                },
            );
        }
        self.sampler.forget(&job.sampled_pids);
        self.system_line(&plugin, &id, summary);

        let now = timestamp_now();
        let (event, status, end, outcome) = match (&job.termination, info.code, info.signal) {
            _ if info.lost && job.termination.is_none() => failed(
                &id,
                None,
                None,
                "the job's exit status was collected by another part of this program (a waitpid(-1) outside jobwarden)"
                    .into(),
                now,
                JobEnd::StartFailed,
            ),
            (Some(t), code, signal) => (
                JobEvent::JobCancelled {
                    job_id: id.clone(),
                    data: JobCancelledData {
                        reason: t.reason.clone(),
                        cancelled_at: now,
                    },
                },
                JobStatus::Cancelled {
                    reason: t.reason.clone(),
                },
                if t.timed_out { JobEnd::TimedOut } else { JobEnd::Cancelled },
                Outcome {
                    outcome: "cancelled",
                    exit_code: code,
                    signal,
                    detail: Some(t.reason.clone()),
                },
            ),
            (None, Some(0), _) => (
                JobEvent::JobCompleted {
                    job_id: id.clone(),
                    data: JobCompletedData {
                        exit_code: 0,
                        completed_at: now,
                        output_tail: job.output.tail(),
                    },
                },
                JobStatus::Completed { exit_code: 0 },
                JobEnd::Exited { code: 0 },
                Outcome {
                    outcome: "completed",
                    exit_code: Some(0),
                    signal: None,
                    detail: None,
                },
            ),
            (None, Some(code), _) => {
                let mut error = format!("exited with status {code}");
                if oom_kills > 0 {
                    error.push_str(&format!(
                        "; the memory limit ({}, `{}`) was hit {oom_kills} time(s) inside the job",
                        limit_text(&job.plan.limits.memory.value, true),
                        job.plan.limits.memory.key
                    ));
                }
                failed(&id, Some(code), None, error, now, JobEnd::Exited { code })
            }
            (None, None, Some(signal)) => {
                let error = describe_signal(signal, &job.plan, oom_kills, user + sys);
                failed(&id, None, Some(signal), error, now, JobEnd::Signaled { signal })
            }
            (None, None, None) => failed(
                &id,
                None,
                None,
                "the job ended without an exit status".into(),
                now,
                JobEnd::StartFailed,
            ),
        };
        self.emit(&plugin, event);
        {
            let mut jobs = self.shared.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = jobs.records.get_mut(&id) {
                record.usage = Some(job.usage.clone());
                record.end = Some(end);
            }
            jobs.finish(&id, status);
        }
        self.audit_end(
            &plugin,
            &id,
            &job.plan,
            outcome,
            exit.elapsed,
            Some(job.report.summary_line()),
        );
        if let Some(n) = self.running_per_plugin.get_mut(&plugin) {
            *n = n.saturating_sub(1);
        }
        if !job.tree.exact() {
            self.reaper.fallback_job(job.tree.leader_start);
        }
        // A killed tree leaves zombies only if the job ever had more than
        // one process; look for them then.
        if ever_forked {
            self.reaper.scan_soon();
        }
    }

    pub(super) fn audit_end(
        &self,
        plugin: &str,
        id: &str,
        plan: &Plan,
        outcome: Outcome,
        elapsed: Duration,
        enforcement: Option<String>,
    ) {
        let Some(audit) = &self.shared.audit else {
            return;
        };
        let record = EndRecord {
            record: "job_end",
            time: timestamp_now(),
            plugin,
            job_id: id,
            label: &plan.label,
            binary: &plan.binary,
            program: plan.program.display().to_string(),
            args: &plan.args,
            cwd: plan.cwd.display().to_string(),
            env_names: plan.env.keys().map(String::as_str).collect(),
            outcome: outcome.outcome,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            detail: outcome.detail,
            duration_secs: elapsed.as_secs_f64(),
            enforcement,
            policy_sha256: &plan.policy_sha256,
        };
        if let Err(e) = audit.end(&record) {
            self.shared.warn(format!("cannot write the audit log: {e}"));
        }
    }
}

fn failed(
    id: &str,
    code: Option<i32>,
    signal: Option<i32>,
    error: String,
    now: String,
    end: JobEnd,
) -> (JobEvent, JobStatus, JobEnd, Outcome) {
    (
        JobEvent::JobFailed {
            job_id: id.to_string(),
            data: JobFailedData {
                exit_code: code,
                error: error.clone(),
                failed_at: now,
            },
        },
        JobStatus::Failed {
            exit_code: code,
            error: error.clone(),
        },
        end,
        Outcome::failed(code, signal, error),
    )
}

fn limit_text(limit: &Limit, size: bool) -> String {
    match limit {
        Limit::Unlimited => "unlimited".into(),
        Limit::Value(n) if size => format_size(*n),
        Limit::Value(n) => n.to_string(),
    }
}

/// Why a job died by `signal`, naming the limit when one explains it.
fn describe_signal(signal: i32, plan: &Plan, oom_kills: u64, cpu: Duration) -> String {
    let limits = &plan.limits;
    let signals = os::SIGNALS;
    let cpu_limit = || {
        format!(
            "killed by the CPU time limit ({} s, `{}`)",
            limit_text(&limits.cpu_secs.value, false),
            limits.cpu_secs.key
        )
    };
    let is = |s: Option<i32>| s == Some(signal);
    if is(signals.cpu_limit) {
        cpu_limit()
    } else if is(signals.file_size_limit) {
        format!(
            "killed by the file size limit ({}, `{}`)",
            limit_text(&limits.file_size.value, true),
            limits.file_size.key
        )
    } else if is(signals.kill) && oom_kills > 0 {
        format!(
            "killed by the memory limit ({}, `{}`)",
            limit_text(&limits.memory.value, true),
            limits.memory.key
        )
    } else if is(signals.kill)
        && matches!(limits.cpu_secs.value, Limit::Value(n) if cpu.as_secs() >= n)
    {
        cpu_limit()
    } else {
        format!("killed by signal {signal} ({})", os::signal_name(signal))
    }
}
