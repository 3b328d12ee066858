//! What this machine lets jobwarden enforce, detected once per host.

use super::os;
use serde::Serialize;

/// Knobs for detection. Both simulate a weaker machine, for tests and for
/// proving that a report matches the kernel's answers; they are never read
/// from the environment, only set explicitly (the builder's
/// `landlock_abi_max` and `without_cgroups`, the CLI's hidden
/// `--simulate-*` flags).
#[derive(Debug, Clone, Default)]
pub struct SupportOptions {
    /// Pretend the kernel's Landlock ABI is at most this (Linux; 0 = none).
    pub landlock_abi_max: Option<u32>,
    /// Do not use cgroups (Linux).
    pub no_cgroups: bool,
    /// Switch off layers of the kernel baseline (Linux), so a test can show
    /// that an attempt the layer refuses succeeds without it.
    pub without_baseline: Vec<BaselineLayer>,
    /// Let jobs keep the host's session and controlling terminal (no
    /// `setsid`; Linux). Only for tests that show, as a control, what the
    /// session prevents; the report then says `session` NOT enforced, so
    /// `required` policies refuse.
    pub keep_session: bool,
    /// Whether jobs are observed, and why (not a testing aid: `run --why`
    /// and `learn` set it explicitly; see [`Observation`]).
    pub observation: Observation,
    /// Whether a host that is not root may move its process into a
    /// delegated cgroup of its own (Linux; see [`CgroupDelegation`]). Not a
    /// testing aid: the embedding program's choice.
    pub cgroup_delegation: CgroupDelegation,
    /// Testing aid (Linux): cgroup v2 controllers to enable in a delegated
    /// cgroup besides `pids` and `memory`, counted as a reason to move the
    /// host. A machine whose unified hierarchy lacks `pids` and `memory`
    /// (they are in v1 hierarchies) can then still exercise moving the host
    /// and enabling a controller it does offer (e.g. `hugetlb`).
    pub delegation_extra_controllers: Vec<String>,
    /// How many sets of job cgroups the host keeps made ahead of its jobs
    /// (Linux; `None`: two). A host that runs one job (`jobwarden run`)
    /// needs none: it would make them only to remove them.
    pub spare_cgroups: Option<usize>,
}

/// Whether a host observes its jobs' attempts (Linux: seccomp user
/// notification), and what for. Observation never changes what a job may
/// do; learn mode is the one setting that also lifts restrictions, and it
/// is chosen explicitly, for one trusted command at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Observation {
    /// Jobs run unobserved.
    #[default]
    Off,
    /// Jobs run confined as usual, and every refused access is reported
    /// in policy terms at their end (`run --why`).
    Denials,
    /// Learn mode (`jobwarden learn`): jobs run without the filesystem and
    /// network restrictions that would stop them (no Landlock, no sockets
    /// filter, writable roots not `noexec`), with everything else of the
    /// plan — environment, limits, session, no capabilities, the rest of
    /// the kernel baseline, protected paths read-only — and everything they
    /// attempt is recorded.
    Learn,
}

/// Whether a host that is not root may move its own process into a cgroup
/// delegated to its user (Linux), to give jobs process and memory limits
/// and a whole-tree kill where the cgroups it was started in give none.
///
/// This moves the embedding process: into a leaf (`jobwarden.host`) of the
/// cgroup it was started in, when that cgroup is delegated to its user and
/// holds only this process, or else into a transient systemd scope with
/// `Delegate=yes` that the user's systemd manager makes for it over D-Bus
/// (as rootless podman and `systemd-run --user --scope -p Delegate=yes`
/// do). Job cgroups are then created beside that leaf. It happens at most
/// once per process, when the first host is built; later hosts use what the
/// first one got. Root hosts, and hosts whose cgroups already give limits,
/// never move. `jobwarden doctor` says which way was taken and why the
/// others were not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CgroupDelegation {
    /// Use a delegated cgroup when the host's own give no limits (the
    /// default).
    #[default]
    Auto,
    /// Never move the process: jobs get what the host's cgroups give, and
    /// limits fall back to rlimits, reported partial.
    Never,
}

/// The layers of the Linux kernel baseline a test can switch off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BaselineLayer {
    /// Socket families, UDP and UNIX sockets (seccomp).
    Sockets,
    /// Executable memfds (seccomp).
    Memfd,
    /// Setuid and setgid bits (seccomp).
    Setuid,
    /// New namespaces and mounts (seccomp).
    Namespaces,
    /// The job's mount namespace: writable roots `noexec`, protected paths
    /// read-only.
    Mounts,
}

impl BaselineLayer {
    /// Every layer of the baseline.
    pub const ALL: [BaselineLayer; 5] = [
        BaselineLayer::Sockets,
        BaselineLayer::Memfd,
        BaselineLayer::Setuid,
        BaselineLayer::Namespaces,
        BaselineLayer::Mounts,
    ];
}

/// What this machine lets jobwarden enforce.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct HostSupport(os::Support);

impl HostSupport {
    /// Probes this machine (on Linux: the Landlock ABI, which cgroups the
    /// host may create children in, whether it may become a subreaper).
    pub fn detect(options: &SupportOptions) -> Self {
        Self(os::Support::detect(options))
    }

    pub(crate) fn os(&self) -> &os::Support {
        &self.0
    }

    /// Removes what this support made ahead for jobs to come (Linux: spare
    /// job cgroups). Jobs started later make their own.
    pub(crate) fn release(&self) {
        #[cfg(target_os = "linux")]
        self.0.release();
    }

    /// Whether the host runs as root (RLIMIT_NPROC is then ignored).
    pub fn is_root(&self) -> bool {
        self.0.is_root()
    }

    /// The Landlock ABI in use, or `None` when there is no Landlock.
    pub fn landlock_abi(&self) -> Option<u32> {
        self.0.landlock_abi()
    }

    /// How a whole-tree limit or kill is enforced here, if it is.
    pub fn tree_mechanism(&self, what: TreeMechanism) -> Option<&'static str> {
        self.0.tree_mechanism(what)
    }

    /// How jobs get their own mount namespace (the kernel baseline's
    /// `noexec` writable roots and read-only protected paths), or why not.
    pub fn mount_namespace(&self) -> Result<&'static str, String> {
        self.0.mount_namespace()
    }

    /// Whether orphans of jobs are re-parented to the host (a subreaper).
    pub fn subreaper(&self) -> bool {
        self.0.subreaper()
    }

    /// What was detected, as labelled lines for `jobwarden doctor`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        self.0.describe()
    }

    /// Suggestions an admin can act on.
    pub fn tips(&self) -> Vec<String> {
        self.0.tips()
    }

    /// Whether jobs are observed, and what for (only Linux observes: on
    /// other platforms jobs run unobserved whatever was asked).
    pub fn observation(&self) -> Observation {
        #[cfg(target_os = "linux")]
        return self.0.observation;
        #[cfg(not(target_os = "linux"))]
        return Observation::Off;
    }
}

/// Whole-tree mechanisms [`HostSupport::tree_mechanism`] answers about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeMechanism {
    /// A limit on the processes of the whole tree.
    Processes,
    /// A limit on the memory of the whole tree.
    Memory,
    /// Killing the whole tree, escapees included.
    Kill,
}
