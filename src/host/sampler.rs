//! Resource sampling of running jobs, and the `JobProgress` heartbeat.
//!
//! At each job's interval (policy `progress.interval_ms`, default 1 s,
//! at least 200 ms) the job's whole tree is found — the cgroup's members, or
//! the `/proc` reconstruction without one — and only those pids are
//! refreshed with sysinfo (a targeted refresh costs ~40 µs per pid here; a
//! full refresh 8–27 ms). All jobs due at the same moment share one refresh.
//! Each tick yields one `JobProgress` per job, so a TUI gets at most one per
//! interval: the latest declared percent and step, or, when the job declared
//! nothing, its resource use.

use crate::policy::units::format_size;
use std::collections::HashMap;
use std::time::Duration;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

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
