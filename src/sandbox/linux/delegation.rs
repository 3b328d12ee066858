//! A cgroup of the host's own, for a host that is not root and whose
//! cgroups give no limits.
//!
//! The invariants: the host's process is moved at most once per process,
//! only when it is not root, only when the cgroups it is in give no
//! process or memory limit, never when the embedding program said
//! [`CgroupDelegation::Never`], and only into a cgroup delegated to its
//! user — the cgroup it was started in, when it is alone there and may
//! write it, or a transient systemd scope made for it. Within that cgroup
//! (the delegated root) the process moves into a leaf of its own
//! ([`HOST_LEAF`]) and job cgroups are created beside it: cgroup v2 gives
//! controllers to children only of a cgroup without processes of its own.
//! Every step is checked by reading the result back; what could not be
//! done is reported, never assumed.
//!
//! On a systemd machine a user's manager (`user@UID.service`) owns a
//! delegated subtree with `memory` and `pids`, but a terminal's process sits
//! in a session scope with other processes, where it cannot enable them.
//! Rootless podman and `systemd-run --user --scope -p Delegate=yes` ask the
//! manager for a transient scope; so does this module (`systemd.rs`).

use super::systemd;
use crate::sandbox::support::CgroupDelegation;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The leaf the host's process moves into, inside the delegated root. Not
/// named `jobwarden-…`: that prefix marks job cgroups (stale cleanup, and
/// the no-cgroup attribution excludes processes in them).
pub(crate) const HOST_LEAF: &str = "jobwarden.host";

/// The systemd scope's name prefix; the host's pid follows.
pub(crate) const SCOPE_PREFIX: &str = "app-jobwarden-";

/// The controllers jobwarden sets limits with.
const WANTED: [&str; 2] = ["pids", "memory"];

/// A delegated cgroup the host moved into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Delegated {
    /// The delegated root: job cgroups are created in it.
    pub root: PathBuf,
    /// The leaf the host's process is in.
    pub leaf: PathBuf,
    /// How the root was obtained.
    pub via: Via,
    /// Controllers enabled for the job cgroups.
    pub controllers: Vec<String>,
    /// Controllers that could not be enabled, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// How a delegated root was obtained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum Via {
    /// The cgroup the host was started in: delegated to its user, the
    /// host alone in it.
    OwnCgroup,
    /// A transient scope the user's systemd manager made for the host.
    SystemdScope { unit: String, bus: String },
}

impl Delegated {
    /// One line for `doctor`.
    pub fn describe(&self) -> String {
        let via = match &self.via {
            Via::OwnCgroup => "the delegated cgroup it was started in, alone".to_string(),
            Via::SystemdScope { unit, bus } => {
                format!("a transient systemd scope {unit} (Delegate=yes, asked on {bus})")
            }
        };
        let controllers = if self.controllers.is_empty() {
            "no controllers".to_string()
        } else {
            format!("controllers {}", self.controllers.join(" "))
        };
        let problems = if self.problems.is_empty() {
            String::new()
        } else {
            format!("; {}", self.problems.join("; "))
        };
        format!(
            "this process moved into {} of {via}; job cgroups beneath {} ({controllers}){problems}",
            self.leaf.display(),
            self.root.display()
        )
    }
}

/// What looking for a delegated cgroup found, for `doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DelegationReport {
    /// The delegated cgroup in use, if any.
    pub taken: Option<Delegated>,
    /// Why each way was not taken, or why none was needed.
    pub not_taken: Vec<String>,
    /// What the user can do to get limits, when they are missing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// The process was moved although no delegated cgroup could be used
    /// (systemd moved it, then the leaf failed): the caller must look at
    /// its cgroups again.
    #[serde(skip)]
    pub moved: bool,
}

/// What detection found without delegation: what deciding needs.
pub(crate) struct Found<'a> {
    /// Where the unified (v2) hierarchy is mounted.
    pub v2_mount: Option<&'a Path>,
    /// The host's cgroup in it, relative to the mount (`/a/b`).
    pub own_v2: Option<&'a str>,
    /// Whether a job can get a pids limit now.
    pub has_pids: bool,
    /// Whether a job can get a memory limit now.
    pub has_memory: bool,
    /// Whether job cgroups can be created in the unified hierarchy now.
    pub has_v2: bool,
    /// Whether `pids` or `memory` are mounted as cgroup v1 hierarchies.
    pub v1_limits: bool,
    pub is_root: bool,
}

/// What the embedding program allowed.
pub(crate) struct Allowed<'a> {
    pub mode: CgroupDelegation,
    /// Testing aid: controllers to enable besides `pids` and `memory`, and
    /// to count as a reason to move.
    pub extra: &'a [String],
}

/// The first attempt's outcome in this process, shared by every later host.
static ATTEMPT: Mutex<Option<Result<Delegated, Vec<String>>>> = Mutex::new(None);

/// Uses a delegated cgroup when one is needed and can be had.
pub(crate) fn obtain(found: &Found<'_>, allowed: &Allowed<'_>) -> DelegationReport {
    let mut attempt = ATTEMPT.lock().unwrap_or_else(|e| e.into_inner());
    // The process can only be moved once: a later host uses what the
    // first one got, whatever it was asked.
    if let Some(Ok(delegated)) = &*attempt {
        return DelegationReport {
            taken: Some(delegated.clone()),
            ..DelegationReport::default()
        };
    }
    if found.is_root {
        return not_taken(
            "not needed: root creates job cgroups wherever a hierarchy is mounted".into(),
        );
    }
    let missing: Vec<&str> = WANTED
        .iter()
        .copied()
        .filter(|c| (*c == "pids" && !found.has_pids) || (*c == "memory" && !found.has_memory))
        .chain(allowed.extra.iter().map(String::as_str))
        .collect();
    if missing.is_empty() {
        return not_taken(
            "not needed: the host's own cgroups give process and memory limits".into(),
        );
    }
    if allowed.mode == CgroupDelegation::Never {
        let mut report = not_taken(
            "not tried: the embedding program said never (`HostBuilder::cgroup_delegation`)".into(),
        );
        report.hints = hints(found, &report.not_taken);
        return report;
    }
    if let Some(Err(reasons)) = &*attempt {
        let mut report = DelegationReport {
            not_taken: reasons.clone(),
            ..DelegationReport::default()
        };
        report.hints = hints(found, reasons);
        return report;
    }
    let mut reasons = Vec::new();
    let mut moved = false;
    let result = match (found.v2_mount, found.own_v2) {
        (Some(mount), Some(own)) => match own_cgroup(mount, own, &missing, allowed) {
            Ok(delegated) => Ok(delegated),
            Err(why) => {
                reasons.push(why);
                systemd_scope(mount, found, &missing, allowed, &mut moved)
            }
        },
        _ => Err("no cgroup2 hierarchy is mounted: nothing can be delegated".to_string()),
    };
    let mut report = DelegationReport::default();
    match result {
        Ok(delegated) => {
            *attempt = Some(Ok(delegated.clone()));
            report.taken = Some(delegated);
            report.not_taken = reasons;
        }
        Err(why) => {
            reasons.push(why);
            *attempt = Some(Err(reasons.clone()));
            report.hints = hints(found, &reasons);
            report.not_taken = reasons;
            report.moved = moved;
        }
    }
    report
}

fn not_taken(why: String) -> DelegationReport {
    DelegationReport {
        not_taken: vec![why],
        ..DelegationReport::default()
    }
}

/// The cgroup the host was started in, when it is delegated to this user
/// and holds only this process.
fn own_cgroup(
    mount: &Path,
    own: &str,
    missing: &[&str],
    allowed: &Allowed<'_>,
) -> Result<Delegated, String> {
    let dir = match own.trim_start_matches('/') {
        "" => mount.to_path_buf(),
        relative => mount.join(relative),
    };
    let what = format!("the host's cgroup {}", dir.display());
    let procs = read_pids(&dir.join("cgroup.procs"))
        .map_err(|e| format!("{what}: cannot read cgroup.procs: {e}"))?;
    let pid = std::process::id();
    let others = procs.iter().filter(|p| **p != pid).count();
    if others > 0 {
        return Err(format!(
            "{what} holds {others} other process(es): cgroup v2 gives controllers only to children of a cgroup without processes of its own"
        ));
    }
    for file in ["", "cgroup.procs", "cgroup.subtree_control"] {
        let path = if file.is_empty() {
            dir.clone()
        } else {
            dir.join(file)
        };
        if !writable(&path) {
            return Err(format!(
                "{what} is not delegated to this user ({} is not writable)",
                path.display()
            ));
        }
    }
    if let Some(foreign) = foreign_children(&dir) {
        return Err(format!(
            "{what} holds cgroups jobwarden did not make ({foreign}): the embedding program manages it"
        ));
    }
    let offered = controllers(&dir.join("cgroup.controllers"));
    if !missing.iter().any(|c| offered.iter().any(|o| o == c)) {
        return Err(format!(
            "{what} is delegated to this user but offers none of {} (it offers: {})",
            missing.join(" "),
            listed(&offered)
        ));
    }
    settle(&dir, Via::OwnCgroup, allowed)
}

/// A transient scope from the user's systemd manager.
fn systemd_scope(
    mount: &Path,
    found: &Found<'_>,
    missing: &[&str],
    allowed: &Allowed<'_>,
    moved: &mut bool,
) -> Result<Delegated, String> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let address = systemd::user_bus_address(uid)?;
    let manager = systemd::Manager::connect(&address)?;
    // Worth asking only when a scope beneath the manager would give
    // something missing: a controller, or a tree kill at all.
    let manager_cgroup = manager.control_group()?;
    let manager_dir = mount.join(manager_cgroup.trim_start_matches('/'));
    if manager_dir.is_dir() {
        let offered = controllers(&manager_dir.join("cgroup.controllers"));
        let gains = missing.iter().any(|c| offered.iter().any(|o| o == c));
        if !gains && found.has_v2 {
            return Err(format!(
                "the systemd user manager's cgroup {manager_cgroup} offers none of {} (it offers: {}): a scope would give nothing new",
                missing.join(" "),
                listed(&offered)
            ));
        }
    }
    let unit = format!("{SCOPE_PREFIX}{}.scope", std::process::id());
    let before = systemd::own_v2_cgroup();
    let result = manager
        .start_delegated_scope(&unit, mount)
        .and_then(|scope| {
            settle(
                &scope,
                Via::SystemdScope {
                    unit: unit.clone(),
                    bus: manager.address.clone(),
                },
                allowed,
            )
        });
    *moved = result.is_err() && systemd::own_v2_cgroup() != before;
    result
}

/// Moves this process into the root's leaf and enables the wanted
/// controllers for the root's children.
fn settle(root: &Path, via: Via, allowed: &Allowed<'_>) -> Result<Delegated, String> {
    let leaf = root.join(HOST_LEAF);
    match fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", leaf.display())),
    }
    let pid = std::process::id();
    write_file(&leaf.join("cgroup.procs"), &pid.to_string())
        .map_err(|e| format!("cannot move this process into {}: {e}", leaf.display()))?;
    let offered = controllers(&root.join("cgroup.controllers"));
    let mut enabled = Vec::new();
    let mut problems = Vec::new();
    for controller in WANTED
        .iter()
        .copied()
        .chain(allowed.extra.iter().map(String::as_str))
    {
        if !offered.iter().any(|o| o == controller) {
            continue;
        }
        match write_file(
            &root.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        ) {
            Ok(()) => enabled.push(controller.to_string()),
            Err(e) => problems.push(format!("cannot enable {controller}: {e}")),
        }
    }
    // Read back: the kernel says where this process is and what is on.
    let now = systemd::own_v2_cgroup().unwrap_or_default();
    if !leaf.ends_with(now.trim_start_matches('/')) || now.is_empty() {
        return Err(format!(
            "moved this process into {}, but /proc/self/cgroup says {now}",
            leaf.display()
        ));
    }
    let on = controllers(&root.join("cgroup.subtree_control"));
    enabled.retain(|c| on.contains(c));
    Ok(Delegated {
        root: root.to_path_buf(),
        leaf,
        via,
        controllers: enabled,
        problems,
    })
}

/// What a user can do to get limits, from why delegation failed.
fn hints(found: &Found<'_>, reasons: &[String]) -> Vec<String> {
    let mut hints = vec![
        "start the program in a delegated cgroup of its own, which jobwarden then uses: `systemd-run --user --scope -p Delegate=yes PROGRAM`".to_string(),
    ];
    if reasons.iter().any(|r| r.contains("no user D-Bus")) {
        hints.push(
            "a systemd user manager runs only for users with a login session (`su` and `sudo` give none): `loginctl enable-linger USER` starts one for the user at boot".to_string(),
        );
    }
    if reasons.iter().any(|r| r.contains("manager's cgroup")) {
        hints.push(
            "an admin can delegate the controllers to users: `systemctl edit user@.service`, add `[Service]` and `Delegate=pids memory`, then log in again".to_string(),
        );
    }
    if found.v1_limits {
        hints.push(
            "this machine mounts pids or memory as cgroup v1 hierarchies, which systemd does not delegate to users: boot with `systemd.unified_cgroup_hierarchy=1`, or have an admin create and chown a cgroup for the user in each and start the program inside it".to_string(),
        );
    }
    hints
}

/// Job cgroups of dead hosts can be left in the scopes of dead hosts (a
/// host killed with SIGKILL): the sibling scopes `app-jobwarden-PID.scope`
/// whose host is gone, for stale cleanup.
pub(crate) fn stale_scopes(delegated: &Delegated) -> Vec<PathBuf> {
    let Via::SystemdScope { .. } = delegated.via else {
        return Vec::new();
    };
    let Some(parent) = delegated.root.parent() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(SCOPE_PREFIX))
                .and_then(|n| n.strip_suffix(".scope"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                return false;
            };
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
        .map(|entry| entry.path())
        .collect()
}

/// Child cgroups not made by jobwarden (its leaf, job cgroups), if any.
fn foreign_children(dir: &Path) -> Option<String> {
    let entries = fs::read_dir(dir).ok()?;
    let foreign: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != HOST_LEAF && !n.starts_with("jobwarden-"))
        .collect();
    (!foreign.is_empty()).then(|| foreign.join(", "))
}

fn read_pids(path: &Path) -> std::io::Result<Vec<u32>> {
    Ok(fs::read_to_string(path)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

fn controllers(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn listed(controllers: &[String]) -> String {
    if controllers.is_empty() {
        "none".to_string()
    } else {
        controllers.join(" ")
    }
}

/// Whether this process may write `path` (its effective ids).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(text.as_bytes())
}
