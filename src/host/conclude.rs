//! How a job ended, decided once: [`conclude`] is a pure function from what
//! is known when a job's first process has exited (its exit status, how it
//! was stopped, what its containment recorded) to one [`Ending`], and the
//! terminal event, the job's status and its audit record are all derived
//! from that one value, so they can never disagree. The reason is stated in
//! words a person can act on — which limit killed it (with the policy key),
//! which signal, which status.

use super::JobEnd;
use crate::contract::{
    JobCancelledData, JobCompletedData, JobEvent, JobFailedData, JobId, JobStatus,
};
use crate::decision::Plan;
use crate::platform::{SIGNALS, signal_name};
use crate::policy::{Limit, units::format_size};
use crate::sandbox::ExitInfo;
use std::time::Duration;

/// How a job was stopped by jobwarden, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stopped {
    /// Why, as the `JobCancelled` event says it.
    pub reason: String,
    /// It was the job's timeout (else a cancel or the host's shutdown).
    pub timed_out: bool,
}

/// The one value a job's end is derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ending {
    pub end: JobEnd,
    /// Why it failed or was cancelled; `None` for a success.
    pub reason: Option<String>,
    /// The first process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
}

/// The three outcomes the contract knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

impl Outcome {
    /// The word in the audit log.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl Ending {
    /// A job that never ran: refused by a rule, by `required`, or unable to start.
    pub fn before_start(end: JobEnd, reason: String) -> Self {
        Self {
            end,
            reason: Some(reason),
            exit_code: None,
            signal: None,
        }
    }

    /// Which of the contract's terminal events this is.
    pub fn outcome(&self) -> Outcome {
        match self.end {
            JobEnd::Exited { code: 0 } => Outcome::Completed,
            JobEnd::TimedOut | JobEnd::Cancelled => Outcome::Cancelled,
            _ => Outcome::Failed,
        }
    }

    fn reason_text(&self) -> String {
        self.reason.clone().unwrap_or_default()
    }

    /// The job's terminal event.
    pub fn event(&self, id: &JobId, at: String, output_tail: Option<String>) -> JobEvent {
        let job_id = id.clone();
        match self.outcome() {
            Outcome::Completed => JobEvent::JobCompleted {
                job_id,
                data: JobCompletedData {
                    exit_code: 0,
                    completed_at: at,
                    output_tail,
                },
            },
            Outcome::Cancelled => JobEvent::JobCancelled {
                job_id,
                data: JobCancelledData {
                    reason: self.reason_text(),
                    cancelled_at: at,
                },
            },
            Outcome::Failed => JobEvent::JobFailed {
                job_id,
                data: JobFailedData {
                    exit_code: self.exit_code,
                    error: self.reason_text(),
                    failed_at: at,
                },
            },
        }
    }

    /// The job's final status.
    pub fn status(&self) -> JobStatus {
        match self.outcome() {
            Outcome::Completed => JobStatus::Completed { exit_code: 0 },
            Outcome::Cancelled => JobStatus::Cancelled {
                reason: self.reason_text(),
            },
            Outcome::Failed => JobStatus::Failed {
                exit_code: self.exit_code,
                error: self.reason_text(),
            },
        }
    }
}

/// How a job that ran ended. `oom_kills` is how often the memory limit's
/// OOM killer struck inside it; `cpu` its CPU time.
pub(super) fn conclude(
    plan: &Plan,
    exit: &ExitInfo,
    stopped: Option<&Stopped>,
    oom_kills: u64,
    cpu: Duration,
) -> Ending {
    let ended = |end, reason: Option<String>| Ending {
        end,
        reason,
        exit_code: exit.code,
        signal: exit.signal,
    };
    if exit.lost && stopped.is_none() {
        return ended(
            JobEnd::StartFailed,
            Some(
                "the job's exit status was collected by another part of this program (a waitpid(-1) outside jobwarden)"
                    .into(),
            ),
        );
    }
    if let Some(stopped) = stopped {
        let end = if stopped.timed_out {
            JobEnd::TimedOut
        } else {
            JobEnd::Cancelled
        };
        return ended(end, Some(stopped.reason.clone()));
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => ended(JobEnd::Exited { code: 0 }, None),
        (Some(code), _) => {
            let mut error = format!("exited with status {code}");
            if oom_kills > 0 {
                error.push_str(&format!(
                    "; the memory limit ({}, `{}`) was hit {oom_kills} time(s) inside the job",
                    limit_text(&plan.limits.memory.value, true),
                    plan.limits.memory.key
                ));
            }
            ended(JobEnd::Exited { code }, Some(error))
        }
        (None, Some(signal)) => ended(
            JobEnd::Signaled { signal },
            Some(describe_signal(signal, plan, oom_kills, cpu)),
        ),
        (None, None) => ended(
            JobEnd::StartFailed,
            Some("the job ended without an exit status".into()),
        ),
    }
}

/// What the processes limit did to a job it refused `hits` times.
pub(super) fn process_limit_text(plan: &Plan, hits: u64) -> String {
    format!(
        "the processes limit ({}, `{}`) refused {hits} new process(es) or thread(s); threads count against it",
        limit_text(&plan.limits.processes.value, false),
        plan.limits.processes.key
    )
}

fn limit_text(limit: &Limit, size: bool) -> String {
    match limit {
        Limit::Unlimited => "unlimited".into(),
        Limit::Value(n) if size => format_size(*n),
        Limit::Value(n) => n.to_string(),
    }
}

/// The words that say a limit killed a job, and the limit's name in the
/// usage line (`wire.rs` reads a terminal event's text by these).
pub(super) const LIMIT_KILLS: [(&str, &str); 3] = [
    ("killed by the CPU time limit", "cpu"),
    ("killed by the file size limit", "file_size"),
    ("killed by the memory limit", "memory"),
];

/// Why a job died by `signal`, naming the limit when one explains it.
fn describe_signal(signal: i32, plan: &Plan, oom_kills: u64, cpu: Duration) -> String {
    let limits = &plan.limits;
    let cpu_limit = || {
        format!(
            "{} ({} s, `{}`)",
            LIMIT_KILLS[0].0,
            limit_text(&limits.cpu_secs.value, false),
            limits.cpu_secs.key
        )
    };
    let is = |s: Option<i32>| s == Some(signal);
    if is(SIGNALS.cpu_limit) {
        cpu_limit()
    } else if is(SIGNALS.file_size_limit) {
        format!(
            "{} ({}, `{}`)",
            LIMIT_KILLS[1].0,
            limit_text(&limits.file_size.value, true),
            limits.file_size.key
        )
    } else if is(SIGNALS.kill) && oom_kills > 0 {
        format!(
            "{} ({}, `{}`)",
            LIMIT_KILLS[2].0,
            limit_text(&limits.memory.value, true),
            limits.memory.key
        )
    } else if is(SIGNALS.kill)
        && matches!(limits.cpu_secs.value, Limit::Value(n) if cpu.as_secs() >= n)
    {
        cpu_limit()
    } else {
        format!("killed by signal {signal} ({})", signal_name(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::JobSpawnRequest;
    use crate::decision::{DecisionContext, decide};
    use crate::policy::Policy;

    /// A plan for this test binary under a policy with every limit set.
    fn plan() -> Plan {
        let exe = std::env::current_exe().unwrap();
        let text = format!(
            "version = 1\n[limits]\ncpu_secs = 5\nmemory = \"64 MiB\"\nfile_size = \"1 MiB\"\n\
             [binaries.me]\npath = '{}'\n[plugins.p]\nbinaries = [\"me\"]\n",
            exe.display()
        );
        let policy = Policy::from_toml("<test>", &text).unwrap().policy;
        let dir = std::env::temp_dir();
        let ctx = DecisionContext {
            repo: &dir,
            home: None,
            job_tmp: &dir.join("job"),
            host_env: &[],
        };
        decide(
            &policy,
            "p",
            &JobSpawnRequest::new("me", Vec::<String>::new()),
            &ctx,
        )
        .unwrap()
    }

    fn exit(code: Option<i32>, signal: Option<i32>) -> ExitInfo {
        ExitInfo {
            code,
            signal,
            ..ExitInfo::default()
        }
    }

    #[test]
    fn every_way_a_job_ends_gives_one_consistent_event_status_and_audit_word() {
        let plan = plan();
        let cancel = Stopped {
            reason: "cancelled by plugin p".into(),
            timed_out: false,
        };
        let timeout = Stopped {
            reason: "timeout after 1 s".into(),
            timed_out: true,
        };
        let kill = SIGNALS.kill.unwrap_or(9);
        // (exit, stopped, OOM kills, CPU seconds, end, outcome, the reason contains)
        type Case<'a> = (
            ExitInfo,
            Option<&'a Stopped>,
            u64,
            u64,
            JobEnd,
            Outcome,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                exit(Some(0), None),
                None,
                0,
                0,
                JobEnd::Exited { code: 0 },
                Outcome::Completed,
                "",
            ),
            (
                exit(Some(3), None),
                None,
                0,
                0,
                JobEnd::Exited { code: 3 },
                Outcome::Failed,
                "exited with status 3",
            ),
            (
                exit(Some(1), None),
                None,
                2,
                0,
                JobEnd::Exited { code: 1 },
                Outcome::Failed,
                "the memory limit (64 MiB, `limits.memory`) was hit 2 time(s)",
            ),
            (
                exit(None, Some(kill)),
                None,
                1,
                0,
                JobEnd::Signaled { signal: kill },
                Outcome::Failed,
                "killed by the memory limit (64 MiB, `limits.memory`)",
            ),
            (
                exit(None, Some(kill)),
                None,
                0,
                9,
                JobEnd::Signaled { signal: kill },
                Outcome::Failed,
                "killed by the CPU time limit (5 s, `limits.cpu_secs`)",
            ),
            (
                exit(None, Some(kill)),
                None,
                0,
                0,
                JobEnd::Signaled { signal: kill },
                Outcome::Failed,
                "killed by signal",
            ),
            (
                exit(Some(0), None),
                Some(&cancel),
                0,
                0,
                JobEnd::Cancelled,
                Outcome::Cancelled,
                "cancelled by plugin p",
            ),
            (
                exit(None, Some(kill)),
                Some(&timeout),
                0,
                0,
                JobEnd::TimedOut,
                Outcome::Cancelled,
                "timeout after 1 s",
            ),
            (
                ExitInfo {
                    lost: true,
                    ..ExitInfo::default()
                },
                None,
                0,
                0,
                JobEnd::StartFailed,
                Outcome::Failed,
                "collected by another part",
            ),
            (
                exit(None, None),
                None,
                0,
                0,
                JobEnd::StartFailed,
                Outcome::Failed,
                "without an exit status",
            ),
        ];
        #[cfg(unix)]
        let cases = {
            let mut cases = cases;
            cases.push((
                exit(None, Some(libc::SIGXCPU)),
                None,
                0,
                0,
                JobEnd::Signaled {
                    signal: libc::SIGXCPU,
                },
                Outcome::Failed,
                "killed by the CPU time limit (5 s, `limits.cpu_secs`)",
            ));
            cases.push((
                exit(None, Some(libc::SIGXFSZ)),
                None,
                0,
                0,
                JobEnd::Signaled {
                    signal: libc::SIGXFSZ,
                },
                Outcome::Failed,
                "killed by the file size limit (1 MiB, `limits.file_size`)",
            ));
            cases
        };
        // Where no signal ends a process (Windows), the cases of a signal
        // are cases no job can reach; the rest hold everywhere.
        let cases = cases
            .into_iter()
            .filter(|case| SIGNALS.kill.is_some() || case.0.signal.is_none());
        for (i, (info, stopped, oom, cpu, end, outcome, reason)) in cases.enumerate() {
            let ending = conclude(&plan, &info, stopped, oom, Duration::from_secs(cpu));
            assert_eq!(ending.end, end, "case {i}");
            assert_eq!(ending.outcome(), outcome, "case {i}");
            let text = ending.reason.clone().unwrap_or_default();
            assert!(text.contains(reason), "case {i}: {text}");
            let event = ending.event(&"job-1".to_string(), "t".into(), Some("tail".into()));
            let status = ending.status();
            match (outcome, &event, &status) {
                (
                    Outcome::Completed,
                    JobEvent::JobCompleted { data, .. },
                    JobStatus::Completed { exit_code: 0 },
                ) => {
                    assert_eq!(data.output_tail.as_deref(), Some("tail"));
                }
                (
                    Outcome::Failed,
                    JobEvent::JobFailed { data, .. },
                    JobStatus::Failed { exit_code, error },
                ) => {
                    assert_eq!(
                        (&data.error, data.exit_code),
                        (error, *exit_code),
                        "case {i}"
                    );
                    assert_eq!(data.exit_code, info.code, "case {i}");
                }
                (
                    Outcome::Cancelled,
                    JobEvent::JobCancelled { data, .. },
                    JobStatus::Cancelled { reason },
                ) => {
                    assert_eq!(&data.reason, reason, "case {i}");
                }
                other => panic!("case {i}: event and status disagree: {other:?}"),
            }
            assert!(event.is_terminal() && status.is_finished(), "case {i}");
        }
    }

    #[test]
    fn a_job_that_never_ran_fails_with_its_reason_and_no_exit_code() {
        let ending = Ending::before_start(
            JobEnd::Denied {
                rule: "binaries.me.sha256".into(),
            },
            "denied".into(),
        );
        assert_eq!(ending.outcome(), Outcome::Failed);
        assert_eq!(
            ending.status(),
            JobStatus::Failed {
                exit_code: None,
                error: "denied".into()
            }
        );
        let cancelled = Ending::before_start(JobEnd::Cancelled, "host shut down".into());
        assert_eq!(cancelled.outcome().word(), "cancelled");
    }
}
