//! What this Linux machine lets jobwarden enforce, detected once per host
//! by asking the kernel and by trying (a probe cgroup is created and
//! removed), never guessed from versions.

use super::cgroup::CgroupSupport;
use super::cgroup_pool::{CgroupPool, DEFAULT_SPARES};
use super::landlock::LandlockSupport;
use super::procs;
use super::tree::HostProcess;
pub(crate) use super::userns::MountNamespace;
use super::userns::{apparmor_restricts_userns, apparmor_tip};
use crate::sandbox::support::{BaselineLayer, Observation, SupportOptions, TreeMechanism};
use std::path::Path;

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Support {
    pub landlock: LandlockSupport,
    pub cgroups: CgroupSupport,
    /// Whether the host could become a child subreaper.
    pub subreaper: bool,
    /// Whether the host runs as root (RLIMIT_NPROC is then ignored).
    pub is_root: bool,
    /// Whether the host holds capabilities (to drop for jobs).
    pub has_capabilities: bool,
    /// Highest capability number.
    pub cap_last: u32,
    /// How a job gets its own mount namespace, or why it cannot.
    pub mount_namespace: Result<MountNamespace, String>,
    /// The host's user and group, for a user namespace's one-line maps.
    #[serde(skip)]
    pub ids: (libc::uid_t, libc::gid_t),
    /// Baseline layers switched off by a testing aid.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub without_baseline: Vec<String>,
    #[serde(skip)]
    pub disabled: Vec<BaselineLayer>,
    /// Testing aid: jobs keep the host's session (no `setsid`).
    #[serde(skip)]
    pub keep_session: bool,
    /// Whether jobs are observed (`run --why`, `learn`).
    #[serde(skip)]
    pub observation: Observation,
    /// Job cgroups made ahead of the jobs (`cgroup_pool.rs`).
    #[serde(skip)]
    pub cgroup_pool: std::sync::Arc<CgroupPool>,
}

/// Why learn mode leaves a mechanism out, in reports.
pub(crate) const LEARN_MODE: &str =
    "not applied in learn mode, which records what the job does instead of refusing it";

impl Support {
    pub fn detect(options: &SupportOptions) -> Self {
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        // CAP_SYS_ADMIN is capability 21.
        let has_sys_admin = mask("CapEff:") & (1 << 21) != 0;
        // SAFETY: getuid and getgid have no preconditions.
        let ids = unsafe { (libc::getuid(), libc::getgid()) };
        let (cgroups, probes) = CgroupSupport::detect(options, is_root);
        let spares = options.spare_cgroups.unwrap_or(DEFAULT_SPARES);
        Self {
            mount_namespace: MountNamespace::detect(has_sys_admin, ids),
            ids,
            landlock: LandlockSupport::detect(options.landlock_abi_max),
            cgroup_pool: std::sync::Arc::new(CgroupPool::new(cgroups.clone(), spares, probes)),
            cgroups,
            subreaper: procs::become_subreaper(),
            is_root,
            has_capabilities: mask("CapEff:") != 0 || (is_root && mask("CapBnd:") != 0),
            cap_last: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(40),
            without_baseline: options
                .without_baseline
                .iter()
                .map(|l| format!("{l:?}"))
                .collect(),
            disabled: options.without_baseline.clone(),
            keep_session: options.keep_session,
            observation: options.observation,
        }
    }

    /// Why `layer` is off, when a testing aid switched it off.
    pub fn switched_off(&self, layer: BaselineLayer) -> Option<String> {
        // Learn mode lifts the sockets filter; the mount layer keeps its
        // protected paths there and drops only `noexec` (see mounts.rs).
        if self.learning() && layer == BaselineLayer::Sockets {
            return Some(LEARN_MODE.into());
        }
        self.disabled
            .contains(&layer)
            .then(|| format!("switched off by the testing aid `without_baseline({layer:?})`"))
    }

    pub fn is_root(&self) -> bool {
        self.is_root
    }

    /// Removes what was made ahead for jobs to come (the host is done).
    pub fn release(&self) {
        self.cgroup_pool.close();
    }

    /// Whether this host runs learn mode's jobs (see [`Observation::Learn`]).
    pub fn learning(&self) -> bool {
        self.observation == Observation::Learn
    }

    pub fn landlock_abi(&self) -> Option<u32> {
        self.landlock
            .unavailable
            .is_none()
            .then_some(self.landlock.abi)
    }

    pub fn tree_mechanism(&self, what: TreeMechanism) -> Option<&'static str> {
        match what {
            TreeMechanism::Processes => self.cgroups.pids(),
            TreeMechanism::Memory => self.cgroups.memory(),
            TreeMechanism::Kill => self.cgroups.tree_kill(),
        }
    }

    pub fn subreaper(&self) -> bool {
        self.subreaper
    }

    pub fn mount_namespace(&self) -> Result<&'static str, String> {
        match &self.mount_namespace {
            Ok(MountNamespace::Privileged) => Ok("unshare(CLONE_NEWNS) with CAP_SYS_ADMIN"),
            Ok(MountNamespace::UserNamespace) => Ok("an unprivileged user namespace"),
            Err(why) => Err(why.clone()),
        }
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![(
            "user",
            if self.is_root {
                "root: RLIMIT_NPROC is ignored for root, only a pids cgroup limits processes"
            } else {
                "not root"
            }
            .to_string(),
        )];
        let ll = &self.landlock;
        lines.push((
            "landlock",
            match (&ll.unavailable, ll.kernel_abi) {
                (None, Some(k)) if k != ll.abi => {
                    format!("ABI {} (kernel {k}, capped for testing)", ll.abi)
                }
                (None, _) => format!("ABI {}", ll.abi),
                (Some(why), _) => format!("unavailable: {why}"),
            },
        ));
        lines.push((
            "mount ns",
            match self.mount_namespace() {
                Ok(how) => format!("each job gets its own, by {how}"),
                Err(why) => format!("unavailable: {why}"),
            },
        ));
        let cg = &self.cgroups;
        let mut groups = Vec::new();
        if let Some(v2) = &cg.v2 {
            let kill = if cg.v2_kill { ", cgroup.kill" } else { "" };
            let controllers = if cg.v2_controllers.is_empty() {
                " (no controllers delegated)".to_string()
            } else {
                format!(" (controllers: {})", cg.v2_controllers.join(" "))
            };
            groups.push(format!("v2 {}{kill}{controllers}", v2.display()));
        }
        if let Some(p) = &cg.v1_pids {
            groups.push(format!("v1 pids {}", p.display()));
        }
        if let Some(m) = &cg.v1_memory {
            groups.push(format!("v1 memory {}", m.display()));
        }
        lines.push((
            "cgroups",
            match &cg.unavailable {
                Some(why) => format!("none usable: {why}"),
                None => groups.join("; "),
            },
        ));
        let delegation = &cg.delegation;
        lines.push((
            "delegation",
            match &delegation.taken {
                Some(taken) => taken.describe(),
                None if cg.unavailable.is_some() && delegation.not_taken.is_empty() => {
                    "not tried: no cgroups".to_string()
                }
                None if delegation
                    .not_taken
                    .first()
                    .is_some_and(|why| why.starts_with("not ")) =>
                {
                    delegation.not_taken.join("; ")
                }
                None => format!("none usable: {}", delegation.not_taken.join("; ")),
            },
        ));
        if delegation.taken.is_some() && !delegation.not_taken.is_empty() {
            lines.push((
                "",
                format!("(not taken: {})", delegation.not_taken.join("; ")),
            ));
        }
        lines
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        let cg = &self.cgroups;
        let mut tips = Vec::new();
        if cg.pids().is_none() || cg.memory().is_none() {
            tips.extend(cg.delegation.hints.iter().cloned());
        }
        if let Err(why) = &self.mount_namespace
            && apparmor_restricts_userns()
        {
            tips.push(apparmor_tip(why));
        }
        if cg.unavailable.is_none() && !cg.favordynmods {
            tips.push(format!(
                "every job start waits for an RCU grace period to join its cgroups (a few ms);\n                mounting a cgroup hierarchy with favordynmods removes the wait, e.g.\n                `mount -o remount,favordynmods {}` (forks become slightly slower system-wide)",
                cg.v2
                    .as_deref()
                    .or(cg.v1_pids.as_deref())
                    .map_or("/sys/fs/cgroup".into(), |p| p.display().to_string())
            ));
        }
        tips
    }

    /// Removes job cgroups left by hosts that died without cleaning up,
    /// killing whatever is still in them. A cgroup belongs to a dead host
    /// when the pid in its name (`jobwarden-PID-…`) no longer exists.
    pub fn clean_stale(&self, host: HostProcess) {
        let cg = &self.cgroups;
        // Scopes of dead hosts are siblings of this host's scope: job
        // cgroups left in them are as stale as those beside this one.
        let stale_scopes = cg
            .delegation
            .taken
            .as_ref()
            .map(super::delegation::stale_scopes)
            .unwrap_or_default();
        let parents = [&cg.v2, &cg.v1_pids, &cg.v1_memory]
            .into_iter()
            .flatten()
            .chain(stale_scopes.iter());
        for dir in parents {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("jobwarden-")) else {
                    continue;
                };
                let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                    continue;
                };
                if pid == host.pid || Path::new(&format!("/proc/{pid}")).exists() {
                    continue;
                }
                let path = entry.path();
                let mut killed = false;
                if let Ok(procs) = std::fs::read_to_string(path.join("cgroup.procs")) {
                    for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill(2) of a process left in a stale job cgroup of ours.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                        killed = true;
                    }
                }
                // A killed process leaves the cgroup only once it has died
                // (a few milliseconds): until then rmdir fails with EBUSY.
                for _ in 0..if killed { 100 } else { 1 } {
                    if std::fs::remove_dir(&path).is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }
}
