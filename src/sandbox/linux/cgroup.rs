//! One cgroup per job, created beneath the cgroups the host itself is in.
//!
//! The invariants: a job's cgroup is created beneath the
//! host's own cgroup in each hierarchy, as delegation requires — or, when
//! the host moved into a delegated cgroup of its own (`delegation.rs`),
//! beneath that cgroup, beside the host's leaf; jobwarden never moves a
//! process out of the subtree it started in (the host into a delegated
//! cgroup is the one exception, made only there) and never writes to a
//! cgroup it did not create or was not delegated; every cgroup it creates
//! is removed when the job ends, or for spares made ahead of jobs
//! (`cgroup_pool.rs`), when the host is done. What the machine offers is
//! detected at run time, by trying.
//!
//! A job cgroup gives three things: limits for the whole tree (pids,
//! memory), a reliable member list (sampling, cleanup) and a whole-tree kill
//! that also catches processes that left the session or process group.

use super::cgroup_pool::{CgroupPool, Fresh, Shape};
use super::delegation::{self, Allowed, DelegationReport, Found};
use crate::sandbox::support::SupportOptions;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What cgroups this host can create for jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct CgroupSupport {
    /// The host's own cgroup in the unified (v2) hierarchy, if jobwarden can
    /// create children there.
    pub v2: Option<PathBuf>,
    /// Whether v2 children offer `cgroup.kill`.
    pub v2_kill: bool,
    /// v2 controllers enabled for children of the host's cgroup.
    pub v2_controllers: Vec<String>,
    /// The host's cgroup in the v1 `pids` hierarchy, if usable.
    pub v1_pids: Option<PathBuf>,
    /// The host's cgroup in the v1 `memory` hierarchy, if usable.
    pub v1_memory: Option<PathBuf>,
    /// Why cgroups are not used at all, when they are not.
    pub unavailable: Option<String>,
    /// Whether a cgroup hierarchy is mounted with `favordynmods`, which
    /// spares every job start the RCU grace period a cgroup join waits for.
    pub favordynmods: bool,
    /// Whether the host moved into a delegated cgroup, or why not.
    pub delegation: DelegationReport,
}

impl CgroupSupport {
    /// Finds the host's cgroups and checks, by creating a probe cgroup in
    /// each, which ones jobwarden may use; when they give no limits and the
    /// host is not root, moves it into a delegated cgroup of its own if it
    /// can (`delegation.rs`). `no_cgroups` (the testing aid
    /// `without_cgroups`) pretends none exist. Also returns the probes,
    /// which the caller owns: the pool adopts them as the first job's
    /// cgroups (`cgroup_pool.rs`), or removes them.
    pub fn detect(options: &SupportOptions, is_root: bool) -> (Self, Vec<PathBuf>) {
        if options.no_cgroups {
            let support = Self {
                unavailable: Some(
                    "cgroups switched off by the testing aid `without_cgroups`".into(),
                ),
                ..Self::default()
            };
            return (support, Vec::new());
        }
        let mut probes = Vec::new();
        let mounts = cgroup_mounts();
        let mut support = Self::find(&mounts, &mut probes);
        let v2_mount = mounts.iter().find(|m| m.v2).map(|m| m.dir.clone());
        let own_v2 = super::systemd::own_v2_cgroup();
        let found = Found {
            v2_mount: v2_mount.as_deref(),
            own_v2: own_v2.as_deref(),
            has_pids: support.pids().is_some(),
            has_memory: support.memory().is_some(),
            has_v2: support.v2.is_some(),
            v1_limits: mounts
                .iter()
                .any(|m| !m.v2 && m.controllers.iter().any(|c| c == "pids" || c == "memory")),
            is_root,
        };
        let allowed = Allowed {
            mode: options.cgroup_delegation,
            extra: &options.delegation_extra_controllers,
        };
        let report = delegation::obtain(&found, &allowed);
        if report.moved {
            // Moved, but into no usable cgroup: look again from there.
            support = Self::find(&mounts, &mut probes);
        }
        if let Some(delegated) = &report.taken {
            support.use_delegated(&delegated.root);
        }
        support.delegation = report;
        (support, probes)
    }

    /// Job cgroups go beneath the delegated root, beside the host's leaf.
    fn use_delegated(&mut self, root: &Path) {
        self.v2 = Some(root.to_path_buf());
        self.v2_kill = root.join("cgroup.kill").exists() || probe_kill(root);
        self.v2_controllers = fs::read_to_string(root.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        self.unavailable = None;
    }

    /// The host's own cgroups that jobwarden may create children in.
    fn find(mounts: &[Mount], kept: &mut Vec<PathBuf>) -> Self {
        let Ok(membership) = fs::read_to_string("/proc/self/cgroup") else {
            return Self {
                unavailable: Some("cannot read /proc/self/cgroup".into()),
                ..Self::default()
            };
        };
        let mut support = Self {
            favordynmods: mounts.iter().any(|m| m.favordynmods),
            ..Self::default()
        };
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let relative = path.trim_start_matches('/');
            if controllers.is_empty() {
                if let Some(mount) = mounts.iter().find(|m| m.v2) {
                    let dir = mount.dir.join(relative);
                    if probe(&dir, kept) {
                        // The root cgroup has no `cgroup.kill`; its children do.
                        support.v2_kill = dir.join("cgroup.kill").exists()
                            || kept.iter().any(|p| {
                                p.parent() == Some(dir.as_path()) && p.join("cgroup.kill").exists()
                            });
                        support.v2_controllers =
                            fs::read_to_string(dir.join("cgroup.subtree_control"))
                                .unwrap_or_default()
                                .split_whitespace()
                                .map(str::to_string)
                                .collect();
                        support.v2 = Some(dir);
                    }
                }
                continue;
            }
            for controller in controllers.split(',') {
                let slot = match controller {
                    "pids" => &mut support.v1_pids,
                    "memory" => &mut support.v1_memory,
                    _ => continue,
                };
                if let Some(mount) = mounts
                    .iter()
                    .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))
                {
                    let dir = mount.dir.join(relative);
                    if probe(&dir, kept) {
                        *slot = Some(dir);
                    }
                }
            }
        }
        if support.v2.is_none() && support.v1_pids.is_none() && support.v1_memory.is_none() {
            support.unavailable =
                Some("no cgroup hierarchy lets jobwarden create job cgroups here".into());
        }
        support
    }

    /// Whether a job can get a pids limit.
    pub fn pids(&self) -> Option<&'static str> {
        if self.v2.is_some() && self.v2_controllers.iter().any(|c| c == "pids") {
            Some("cgroup v2 pids.max")
        } else if self.v1_pids.is_some() {
            Some("cgroup v1 pids.max")
        } else {
            None
        }
    }

    /// Whether a job can get a memory limit for its whole tree.
    pub fn memory(&self) -> Option<&'static str> {
        if self.v2.is_some() && self.v2_controllers.iter().any(|c| c == "memory") {
            Some("cgroup v2 memory.max")
        } else if self.v1_memory.is_some() {
            Some("cgroup v1 memory.limit_in_bytes")
        } else {
            None
        }
    }

    /// How a whole job tree is killed.
    pub fn tree_kill(&self) -> Option<&'static str> {
        if self.v2.is_some() && self.v2_kill {
            Some("cgroup v2 cgroup.kill")
        } else if self.v2.is_some() || self.v1_pids.is_some() || self.v1_memory.is_some() {
            Some("cgroup member scan")
        } else {
            None
        }
    }
}

struct Mount {
    dir: PathBuf,
    v2: bool,
    controllers: Vec<String>,
    favordynmods: bool,
}

fn cgroup_mounts() -> Vec<Mount> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts = Vec::new();
    for line in info.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let after: Vec<&str> = after.split(' ').collect();
        if fields.len() < 5 || after.len() < 3 {
            continue;
        }
        let root = fields[3];
        if root != "/" {
            // A bind mount of a subtree: paths from /proc/self/cgroup do not map onto it.
            continue;
        }
        let dir = PathBuf::from(unescape_mount(fields[4]));
        match after[0] {
            "cgroup2" => mounts.push(Mount {
                dir,
                v2: true,
                controllers: Vec::new(),
                favordynmods: after[2].split(',').any(|o| o == "favordynmods"),
            }),
            "cgroup" => mounts.push(Mount {
                dir,
                v2: false,
                controllers: after[2].split(',').map(str::to_string).collect(),
                favordynmods: after[2].split(',').any(|o| o == "favordynmods"),
            }),
            _ => {}
        }
    }
    mounts
}

fn unescape_mount(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

/// Can jobwarden create a child cgroup in `dir`? The cgroup made to find
/// out is kept (a spare job cgroup for the pool, see `cgroup_pool.rs`) and
/// pushed onto `kept`.
fn probe(dir: &Path, kept: &mut Vec<PathBuf>) -> bool {
    // One probe per directory: two controllers mounted together share it.
    if kept.iter().any(|p| p.parent() == Some(dir)) {
        return true;
    }
    // A host killed earlier with this pid (a container's fixed pids) may
    // have left spares of the same names: the next name is free.
    for _ in 0..16 {
        let probe = dir.join(super::cgroup_pool::spare_name());
        match fs::create_dir(&probe) {
            Ok(()) => {
                kept.push(probe);
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
pub(super) fn probe_for_tests(dir: &Path, kept: &mut Vec<PathBuf>) -> bool {
    probe(dir, kept)
}

fn probe_kill(dir: &Path) -> bool {
    let probe = dir.join(format!("jobwarden-probe-kill-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return false;
    }
    let ok = probe.join("cgroup.kill").exists();
    let _ = fs::remove_dir(&probe);
    ok
}

/// The cgroups of one job.
#[derive(Debug)]
pub(crate) struct JobCgroup {
    v2: Option<PathBuf>,
    v2_kill: bool,
    pids: Option<PathBuf>,
    memory: Option<PathBuf>,
    /// Where the pids limit was written, if it was.
    pub pids_limit: Option<&'static str>,
    /// Where the memory limit was written, if it was.
    pub memory_limit: Option<&'static str>,
    /// Problems met while setting up, for the report.
    pub problems: Vec<String>,
    /// Set once `remove` succeeded: dropping then has nothing left to do.
    removed: bool,
}

/// Descriptors of `cgroup.procs` files; the child writes "0" to each to join.
/// What the child needs to join the job's cgroups: the file it writes "0"
/// to for each (the v2 `cgroup.procs` first, when there is one; `tasks` in
/// v1, see `cgroup_pool.rs`) and the v2 cgroup's directory, for a child
/// born into it (`CLONE_INTO_CGROUP`, see `spawn.rs`).
#[derive(Debug)]
pub(crate) struct JoinFds {
    pub procs: Vec<OwnedFd>,
    pub v2_dir: Option<OwnedFd>,
}

impl JobCgroup {
    /// Creates the job's cgroups (or takes them from `pool`, made ahead)
    /// and writes its limits. Failures degrade to fewer cgroups and are
    /// listed in `problems`.
    pub fn create(
        support: &CgroupSupport,
        pool: Option<&CgroupPool>,
        name: String,
        processes: Option<u64>,
        memory: Option<u64>,
    ) -> (Self, JoinFds) {
        let shape = Shape::of(memory.is_some());
        let fresh = pool
            .and_then(|pool| pool.take(shape))
            .unwrap_or_else(|| Fresh::make(support, &name, shape));
        let problems = fresh.problems.clone();
        let ([v2, pids, memory_dir], join) = fresh.into_parts();
        let mut cg = Self {
            v2,
            v2_kill: false,
            pids,
            memory: memory_dir,
            pids_limit: None,
            memory_limit: None,
            problems,
            removed: false,
        };
        cg.v2_kill = cg.v2.is_some() && support.v2_kill;
        let v2_has = |c: &str| cg.v2.is_some() && support.v2_controllers.iter().any(|x| x == c);
        let v2_pids = v2_has("pids");
        let v2_memory = v2_has("memory");

        if let Some(max) = processes {
            let target = if v2_pids {
                cg.v2
                    .as_ref()
                    .map(|d| (d.join("pids.max"), "cgroup v2 pids.max"))
            } else {
                cg.pids
                    .as_ref()
                    .map(|d| (d.join("pids.max"), "cgroup v1 pids.max"))
            };
            if let Some((file, how)) = target {
                match write_file(&file, &max.to_string()) {
                    Ok(()) => cg.pids_limit = Some(how),
                    Err(e) => cg
                        .problems
                        .push(format!("cannot write {}: {e}", file.display())),
                }
            }
        }
        if let Some(bytes) = memory {
            let written = if v2_memory {
                let dir = cg
                    .v2
                    .clone()
                    .expect("v2 exists when its controller is used");
                let _ = write_file(&dir.join("memory.oom.group"), "1");
                let _ = write_file(&dir.join("memory.swap.max"), "0");
                write_file(&dir.join("memory.max"), &bytes.to_string())
                    .map(|()| "cgroup v2 memory.max")
            } else if let Some(dir) = &cg.memory {
                let r = write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())
                    .map(|()| "cgroup v1 memory.limit_in_bytes");
                // Without this, the job could push its memory into swap.
                if r.is_ok() && dir.join("memory.memsw.limit_in_bytes").exists() {
                    let _ =
                        write_file(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string());
                }
                r
            } else {
                Err(std::io::Error::other("no memory cgroup"))
            };
            match written {
                Ok(how) => cg.memory_limit = Some(how),
                Err(e) if cg.memory.is_some() || v2_memory => cg
                    .problems
                    .push(format!("cannot set the memory limit: {e}")),
                Err(_) => {}
            }
        }
        (cg, join)
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        self.v2
            .iter()
            .chain(self.pids.iter())
            .chain(self.memory.iter())
    }

    #[cfg(all(test, target_arch = "x86_64"))]
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    #[cfg(all(test, target_arch = "x86_64"))]
    pub fn pids_dir(&self) -> Option<&Path> {
        self.pids.as_deref()
    }

    /// True when the job has a cgroup that tracks its members.
    pub fn tracks_members(&self) -> bool {
        self.dirs().next().is_some()
    }

    /// How a whole-tree kill works for this job.
    pub fn kill_method(&self) -> Option<&'static str> {
        if self.v2_kill {
            Some("cgroup v2 cgroup.kill")
        } else if self.tracks_members() {
            Some("cgroup member scan")
        } else {
            None
        }
    }

    /// Every live process in the job's cgroups. The job joined all of them
    /// at once and cannot move itself (Landlock keeps it out of cgroupfs),
    /// so one hierarchy's list is the whole membership.
    pub fn members(&self) -> Vec<i32> {
        let Some(dir) = self.dirs().next() else {
            return Vec::new();
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills every member, including processes that left the job's session
    /// and group. Returns once no member is left or after a bounded number
    /// of rounds (a fork bomb is held by the pids limit meanwhile).
    pub fn kill_all(&self) {
        if let (true, Some(dir)) = (self.v2_kill, &self.v2) {
            let _ = write_file(&dir.join("cgroup.kill"), "1");
        }
        for _ in 0..200 {
            let members = self.members();
            if members.is_empty() {
                return;
            }
            for pid in members {
                // SAFETY: kill(2) with a pid read from our own job cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// True when no live process is left.
    pub fn is_empty(&self) -> bool {
        self.members().is_empty()
    }

    /// How many times the kernel's OOM killer struck in the job's memory cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, dir) = match (&self.memory_limit, &self.v2, &self.memory) {
            (Some(how), Some(dir), _) if how.contains("v2") => ("memory.events", dir),
            (_, _, Some(dir)) => ("memory.oom_control", dir),
            _ => return 0,
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// How many times the pids controller refused the job a new process or
    /// thread (`max` in `pids.events`): 0 without a pids limit.
    pub fn pids_limit_hits(&self) -> u64 {
        if self.pids_limit.is_none() {
            return 0;
        }
        let Some(dir) = self.pids.as_ref().or(self.v2.as_ref()) else {
            return 0;
        };
        fs::read_to_string(dir.join("pids.events"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok()))
            })
            .unwrap_or(0)
    }

    /// The most processes the job had at once, when a pids cgroup records it.
    pub fn peak_processes(&self) -> Option<u64> {
        let file = if self.pids.is_some() {
            self.pids.as_ref().map(|d| d.join("pids.peak"))
        } else {
            self.v2.as_ref().map(|d| d.join("pids.peak"))
        }?;
        fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Peak memory of the tree, when the cgroup records it.
    pub fn memory_peak(&self) -> Option<u64> {
        let candidates = [
            self.v2.as_ref().map(|d| d.join("memory.peak")),
            self.memory
                .as_ref()
                .map(|d| d.join("memory.max_usage_in_bytes")),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|f| fs::read_to_string(f).ok()?.trim().parse().ok())
    }

    /// Removes the job's cgroups; call once the tree is empty. Returns the
    /// directories that could not be removed.
    pub fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in self.dirs() {
            let mut removed = false;
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => {
                        removed = true;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        removed = true;
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            }
            if !removed {
                left.push(dir.clone());
            }
        }
        self.removed = left.is_empty();
        left
    }
}

/// A job cgroup nobody dismantled (a spawn that failed half-way, a spec
/// dropped unspawned, a host that panicked): kill what entered it and
/// remove it, so no job cgroup outlives its job.
impl Drop for JobCgroup {
    fn drop(&mut self) {
        if !self.removed {
            self.kill_all();
            self.remove();
        }
    }
}

fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(text.as_bytes())
}
