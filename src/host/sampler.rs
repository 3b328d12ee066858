//! Resource sampling of running jobs, and the `JobProgress` heartbeat.
//!
//! At each job's interval (policy `progress.interval_ms`, default 1 s,
//! at least 200 ms) the job's whole tree is found — the cgroup's members, or
//! the `/proc` reconstruction without one — and only those pids are
//! refreshed with sysinfo (a targeted refresh costs ~40 µs per pid here; a
//! full refresh 8–27 ms). All jobs due at the same moment share one refresh.
//! Each tick yields one `JobProgress` per job: the latest declared percent
//! and step, or, when the job declared nothing, its resource use. Progress
//! a job declares is not held for the tick: it is sampled at once, unless a
//! `JobProgress` went out less than 100 ms before (`MIN_PROGRESS_GAP`).

use super::Usage;
use super::job::Job;
use crate::contract::{JobEvent, JobId};
use crate::policy::units::format_size;
use crate::sandbox::{HostProcess, Tree};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The first point after `now` on the grid `epoch + k × interval`: jobs with
/// the same interval fall due together and share one refresh.
pub(super) fn next_on_grid(epoch: Instant, now: Instant, interval: Duration) -> Instant {
    let interval = interval.max(Duration::from_millis(1));
    let elapsed = now.saturating_duration_since(epoch);
    let k = elapsed.as_nanos() / interval.as_nanos() + 1;
    epoch + interval * k as u32
}

/// One job's progress from a sampling round.
pub(super) struct Update {
    pub plugin: Arc<str>,
    pub id: JobId,
    pub event: JobEvent,
    pub usage: Usage,
    pub started_at: String,
    pub percent: Option<u8>,
}

/// One job's figures from one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// CPU use since the previous refresh, in percent of one core.
    pub cpu_percent: f32,
    /// Resident memory of the tree.
    pub rss_bytes: u64,
    /// Processes in the tree.
    pub processes: u32,
    /// CPU time the live members have used so far.
    pub cpu_time: Duration,
}

impl Sample {
    /// `cpu 37% · rss 120 MiB · 4 procs`
    pub fn describe(&self) -> String {
        format!(
            "cpu {:.0}% · rss {} · {} proc{}",
            self.cpu_percent,
            format_size(self.rss_bytes),
            self.processes,
            if self.processes == 1 { "" } else { "s" }
        )
    }
}

/// Refreshes process figures for job trees.
pub struct Sampler {
    system: Option<System>,
}

impl Sampler {
    pub fn new() -> Self {
        Self {
            system: System::new().ok(),
        }
    }

    /// Samples several trees at once; `trees` maps a key to its member pids.
    pub fn sample<K: Copy + Eq + std::hash::Hash>(
        &mut self,
        trees: &[(K, Vec<i32>)],
    ) -> HashMap<K, Sample> {
        let mut out = HashMap::new();
        let Some(system) = self.system.as_mut() else {
            return out;
        };
        let pids: Vec<Pid> = trees
            .iter()
            .flat_map(|(_, members)| members.iter().map(|p| Pid::from_u32(*p as u32)))
            .collect();
        if pids.is_empty() {
            return out;
        }
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        for (key, members) in trees {
            let mut sample = Sample::default();
            for pid in members {
                if let Some(process) = system.process(Pid::from_u32(*pid as u32)) {
                    sample.cpu_percent += process.cpu_usage();
                    sample.rss_bytes += process.memory();
                    sample.cpu_time += Duration::from_millis(process.accumulated_cpu_time());
                    sample.processes += 1;
                }
            }
            out.insert(*key, sample);
        }
        out
    }

    /// One round: refreshes the membership of trees without cgroups whose
    /// scan is due, and samples every job whose interval is due, sharing
    /// one `/proc` scan and one sysinfo refresh among them.
    pub(super) fn round(
        &mut self,
        jobs: &mut HashMap<usize, Job>,
        epoch: Instant,
        host: HostProcess,
        leaders: &HashSet<i32>,
    ) -> Vec<Update> {
        let now = Instant::now();
        let due = |j: &Job, at: Instant| j.running() && now >= at;
        let track_due: Vec<usize> = jobs
            .iter()
            .filter(|(_, j)| !j.tree.exact() && due(j, j.tree.next_scan))
            .map(|(s, _)| *s)
            .collect();
        // Declared progress goes out when it is printed (rate-limited by
        // the job), not at the job's next point on the grid.
        let sample_due: Vec<usize> = jobs
            .iter()
            .filter(|(_, j)| due(j, j.next_sample) || (j.running() && j.progress_waiting(now)))
            .map(|(s, _)| *s)
            .collect();
        if track_due.is_empty() && sample_due.is_empty() {
            return Vec::new();
        }
        let needs_snapshot = track_due
            .iter()
            .chain(&sample_due)
            .any(|s| !jobs[s].tree.exact());
        let snapshot = if needs_snapshot {
            Tree::snapshot()
        } else {
            Default::default()
        };
        for slot in &track_due {
            if let Some(job) = jobs.get_mut(slot) {
                job.tree.track(&snapshot, host, leaders);
            }
        }
        let mut trees = Vec::new();
        for slot in &sample_due {
            let Some(job) = jobs.get_mut(slot) else {
                continue;
            };
            job.next_sample = next_on_grid(epoch, now, job.plan.progress.interval.value);
            if job.plan.progress.sample.value {
                let members = job.tree.member_pids(&snapshot, host, leaders);
                job.sampled_pids.clone_from(&members);
                trees.push((*slot, members));
            }
        }
        let samples = self.sample(&trees);
        let mut updates = Vec::new();
        for slot in sample_due {
            let Some(job) = jobs.get_mut(&slot) else {
                continue;
            };
            if let Some(event) = job.process_limit_notice() {
                updates.push(Update {
                    plugin: job.plugin.clone(),
                    id: job.id.clone(),
                    event,
                    usage: job.usage.clone(),
                    started_at: job.started_at.clone(),
                    percent: job.output.progress.percent,
                });
            }
            if let Some(event) = job.sampled(samples.get(&slot).copied()) {
                updates.push(Update {
                    plugin: job.plugin.clone(),
                    id: job.id.clone(),
                    event,
                    usage: job.usage.clone(),
                    started_at: job.started_at.clone(),
                    percent: job.output.progress.percent,
                });
            }
        }
        updates
    }

    /// Forgets processes that are gone (keeps the table small over
    /// thousands of jobs).
    pub fn forget(&mut self, pids: &[i32]) {
        if pids.is_empty() {
            return;
        }
        if let Some(system) = self.system.as_mut() {
            let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p as u32)).collect();
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing(),
            );
        }
    }
}
