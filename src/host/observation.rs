//! A job's observation as the host thread holds it: its listener, polled
//! with the job's pipes, and what it recorded; at the job's end, the
//! refusals in policy terms (`run --why`) or everything it did (learn).
//!
//! The invariant: observing a job never changes what it may do or how it
//! ends; it only adds `system` lines before the exit summary and a record
//! a caller can ask for ([`super::PluginHandle::observed`]).

use crate::contract::{JobEvent, JobId, JobLogLineData, STREAM_SYSTEM};
use crate::decision::Plan;
use crate::observe::{Enforced, GrantContext, Grants, Observed, Places, Refusal};
use crate::sandbox::{EnforcementReport, Observation, Observer, ObserverState};
use mio::{Registry, Token};
use std::path::PathBuf;

/// How many refusals a job's end lists; the rest are counted.
const REFUSALS_SHOWN: usize = 40;

/// What observation found about one job.
#[derive(Debug, Clone, Default)]
pub struct ObservedJob {
    /// Every distinct access the job attempted. Kept in learn mode; a host
    /// that explains denials keeps only `refusals`.
    pub observed: Observed,
    /// What the job's confinement refused, in policy terms, each once.
    pub refusals: Vec<Refusal>,
    /// What the layers added to the plan's grants (the ELF loader, the
    /// protected paths), for judging the accesses again.
    pub context: GrantContext,
    /// The job's `{tmp}` (removed now), to write paths beneath it as
    /// `{tmp}` when judging again.
    pub job_tmp: PathBuf,
}

/// One running job's observation.
pub(super) struct JobObservation {
    observer: Option<Observer>,
    observed: Observed,
    mode: Observation,
    /// The host's home, for `{home}` in what is said.
    home: Option<PathBuf>,
}

impl JobObservation {
    pub fn new(observer: Observer, mode: Observation, home: Option<PathBuf>) -> Self {
        Self {
            observer: Some(observer),
            observed: Observed::default(),
            mode,
            home,
        }
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        match &mut self.observer {
            Some(observer) => observer.register(registry, token),
            None => Ok(()),
        }
    }

    /// Answers what is pending; returns whether more is (come back soon).
    pub fn service(&mut self, registry: &Registry) -> bool {
        let Some(observer) = &mut self.observer else {
            return false;
        };
        match observer.service(&mut self.observed) {
            ObserverState::MoreLater => true,
            ObserverState::Drained => false,
            ObserverState::Closed => {
                observer.deregister(registry);
                false
            }
        }
    }

    /// At the job's end (its tree is gone, its `{tmp}` not yet): the
    /// `system` lines to show and what to keep.
    pub fn conclude(
        mut self,
        registry: &Registry,
        id: &JobId,
        plan: &Plan,
        report: &EnforcementReport,
        failed: bool,
    ) -> (Vec<JobEvent>, ObservedJob) {
        while self.service(registry) {}
        let context = match self.observer.take() {
            Some(mut observer) => {
                observer.deregister(registry);
                observer.context().clone()
            }
            None => GrantContext::default(),
        };
        let line = |line: String| JobEvent::JobLogLine {
            job_id: id.clone(),
            data: JobLogLineData {
                line,
                stream: STREAM_SYSTEM.to_string(),
            },
        };
        let places = Places::of(plan, self.home.as_deref());
        let grants = Grants::new(plan, &context, places, Enforced::from_report(report));
        let refusals = grants.refusals(self.observed.accesses());
        let mut events = Vec::new();
        if self.mode == Observation::Denials {
            for refusal in refusals.iter().take(REFUSALS_SHOWN) {
                events.push(line(format!("jobwarden: {refusal}")));
            }
            if refusals.len() > REFUSALS_SHOWN {
                events.push(line(format!(
                    "jobwarden: … and {} more refused accesses",
                    refusals.len() - REFUSALS_SHOWN
                )));
            }
            if refusals.is_empty() && failed {
                events.push(line(
                    "jobwarden: --why saw no access the policy's paths or ports refused; sockets the kernel baseline refuses (UDP, UNIX, netlink) fail before they can be observed — `jobwarden learn` records them".into(),
                ));
            }
            if self.observed.dropped > 0 {
                events.push(line(format!(
                    "jobwarden: observation kept {} distinct accesses and dropped {} more",
                    self.observed.len(),
                    self.observed.dropped
                )));
            }
        }
        let observed = if self.mode == Observation::Learn {
            std::mem::take(&mut self.observed)
        } else {
            self.observed.counts()
        };
        (
            events,
            ObservedJob {
                observed,
                refusals,
                context,
                job_tmp: plan.job_tmp.clone(),
            },
        )
    }
}
