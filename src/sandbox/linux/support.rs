//! What this Linux machine lets jobwarden enforce, detected once per host
//! by asking the kernel and by trying (a probe cgroup is created and
//! removed), never guessed from versions.

use super::cgroup::CgroupSupport;
use super::landlock::LandlockSupport;
use super::procs;
use super::tree::HostProcess;
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
}

/// Why learn mode leaves a mechanism out, in reports.
pub(crate) const LEARN_MODE: &str =
    "not applied in learn mode, which records what the job does instead of refusing it";

/// How a job gets its own mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MountNamespace {
    /// The host holds `CAP_SYS_ADMIN`: `unshare(CLONE_NEWNS)`.
    Privileged,
    /// An unprivileged user namespace owns it: `unshare(CLONE_NEWUSER |
    /// CLONE_NEWNS)` with the host's uid and gid mapped to themselves.
    UserNamespace,
}

impl MountNamespace {
    /// Finds out by trying: the new mount API must exist (Linux ≥ 5.12 for
    /// `mount_setattr`), and without `CAP_SYS_ADMIN` a throwaway child must
    /// be able to create a user and a mount namespace (distributions may
    /// restrict unprivileged user namespaces: a sysctl, AppArmor).
    fn detect(has_sys_admin: bool) -> Result<Self, String> {
        // SAFETY: mount_setattr with an invalid descriptor and no attribute
        // only validates its arguments; it touches no memory.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                0,
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        if ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            return Err("this kernel has no mount_setattr (Linux 5.12 or newer is needed)".into());
        }
        if has_sys_admin {
            return Ok(Self::Privileged);
        }
        match probe_user_namespace() {
            Ok(()) => Ok(Self::UserNamespace),
            Err(e) => Err(format!(
                "the host is not root and cannot create a user namespace ({e}){}",
                userns_hint()
            )),
        }
    }
}

/// Why unprivileged user namespaces may be off, from the usual switches.
fn userns_hint() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|v| v.trim().to_string())
    };
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        "; AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): see `jobwarden doctor`".into()
    } else if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        "; kernel.unprivileged_userns_clone=0".into()
    } else if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        "; user.max_user_namespaces=0".into()
    } else {
        String::new()
    }
}

/// Creates and ends a child in a new user and mount namespace.
fn probe_user_namespace() -> std::io::Result<()> {
    extern "C" fn child(_: *mut libc::c_void) -> libc::c_int {
        0
    }
    let mut stack = vec![0u8; 16 * 1024];
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: CLONE_VM | CLONE_VFORK suspends this thread until the child,
    // which only returns, has exited; the stack outlives it.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::SIGCHLD,
            std::ptr::null_mut(),
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: reaps the child just created.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(())
}

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
        Self {
            mount_namespace: MountNamespace::detect(has_sys_admin),
            // SAFETY: getuid and getgid have no preconditions.
            ids: unsafe { (libc::getuid(), libc::getgid()) },
            landlock: LandlockSupport::detect(options.landlock_abi_max),
            cgroups: CgroupSupport::detect(!options.no_cgroups),
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
        lines
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        let cg = &self.cgroups;
        let mut tips = Vec::new();
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
        for dir in [&cg.v2, &cg.v1_pids, &cg.v1_memory].into_iter().flatten() {
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
