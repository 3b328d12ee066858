//! Judging an observed access against a plan's grants, by the rules the
//! kernel enforces them with, and naming the policy key that would allow a
//! refused one.
//!
//! The rules mirror the enforcing layers (and must move with them):
//! Landlock grants read beneath `read`, `read_write` and `execute` entries
//! (and the files the program layer makes executable: the ELF loader, a
//! script's interpreter), writing beneath `read_write`, creating and
//! removing inside a `read_write` directory, executing beneath `execute`;
//! the job's mount namespace keeps protected paths read-only and maps
//! nothing executable from a writable root that is not an `execute` entry;
//! Landlock's TCP rules grant `network.connect` and `network.bind` ports;
//! the sockets layer grants UDP, UNIX and `NETLINK_ROUTE` sockets by their
//! flags. Only what the job's report says was enforced can be a refusal:
//! on a machine without Landlock nothing is refused by path.

use super::access::Access;
use crate::decision::{Plan, PlanPath};
use crate::sandbox::{EnforcementReport, ItemKind, Status};
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// What the enforcing layers add to a plan's grants for one job: the files
/// the program layer makes executable, and the paths the mount layer keeps
/// read-only (with the key that protects each).
#[derive(Debug, Clone, Default)]
pub struct GrantContext {
    /// Files the program layer makes executable (the pinned program, its
    /// ELF interpreter and libraries).
    pub exec: Vec<PlanPath>,
    /// Paths the mount layer keeps read-only, each with its key.
    pub protected: Vec<PlanPath>,
}

/// Which mechanisms were in force, so only their refusals are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforced {
    /// Landlock's filesystem rules.
    pub filesystem: bool,
    /// Landlock's TCP connect and bind rules.
    pub tcp: bool,
    /// Writable roots mounted `noexec`.
    pub write_xor_execute: bool,
    /// Protected paths mounted read-only.
    pub protected_paths: bool,
    /// The kernel baseline's sockets filter.
    pub sockets: bool,
}

impl Enforced {
    /// Everything: what the policy asks for, whatever a machine gives.
    pub const ALL: Enforced = Enforced {
        filesystem: true,
        tcp: true,
        write_xor_execute: true,
        protected_paths: true,
        sockets: true,
    };

    /// What a job's report says was in force.
    pub fn from_report(report: &EnforcementReport) -> Self {
        let on = |kind: ItemKind| {
            report
                .item(kind.name())
                .is_some_and(|i| matches!(i.status, Status::Enforced | Status::Partial))
        };
        Enforced {
            filesystem: on(ItemKind::Filesystem),
            tcp: on(ItemKind::Network),
            write_xor_execute: on(ItemKind::WriteXorExecute),
            protected_paths: on(ItemKind::ProtectedPaths),
            sockets: on(ItemKind::Sockets),
        }
    }
}

/// The directories placeholders stand for, to write paths as a policy
/// would (`{repo}/build` rather than `/home/me/src/app/build`).
#[derive(Debug, Clone)]
pub struct Places {
    /// `{repo}`: the repository's root.
    pub repo: PathBuf,
    /// `{home}`: the home directory, when known.
    pub home: Option<PathBuf>,
    /// `{tmp}`: the job's temporary directory.
    pub tmp: PathBuf,
}

impl Places {
    /// The places of `plan`, with the host's home.
    pub fn of(plan: &Plan, home: Option<&Path>) -> Self {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        Self {
            repo: canonical(&plan.repo),
            home: home.map(canonical),
            tmp: canonical(&plan.job_tmp),
        }
    }

    /// `path` as a policy entry: beneath the deepest place that contains
    /// it, written with its placeholder.
    pub fn entry(&self, path: &Path) -> String {
        let mut best: Option<(&str, &Path)> = None;
        for (name, place) in [
            ("{repo}", Some(self.repo.as_path())),
            ("{tmp}", Some(self.tmp.as_path())),
            ("{home}", self.home.as_deref()),
        ] {
            let Some(place) = place else { continue };
            if path.starts_with(place)
                && best.is_none_or(|(_, b)| place.components().count() > b.components().count())
            {
                best = Some((name, place));
            }
        }
        match best {
            Some((name, place)) => {
                let rest = path.strip_prefix(place).unwrap_or(Path::new(""));
                if rest.as_os_str().is_empty() {
                    name.to_string()
                } else {
                    format!("{name}/{}", rest.display())
                }
            }
            None => path.display().to_string(),
        }
    }
}

/// A grant as the kernel holds it: the file or directory it was opened on.
#[derive(Debug, Clone)]
struct Grant {
    path: PathBuf,
    key: String,
    dir: bool,
}

impl Grant {
    fn covers(&self, path: &Path) -> bool {
        if self.dir {
            path.starts_with(&self.path)
        } else {
            path == self.path
        }
    }
}

fn grants_of(entries: &[PlanPath]) -> Vec<Grant> {
    entries
        .iter()
        .filter_map(|e| {
            // Landlock skips a path that does not exist; so does this.
            let path = e.path.canonicalize().ok()?;
            Some(Grant {
                dir: path.is_dir(),
                path,
                key: e.key.clone(),
            })
        })
        .collect()
}

/// A plan's grants, ready to judge accesses.
#[derive(Debug, Clone)]
pub struct Grants {
    binary: String,
    read: Vec<Grant>,
    read_write: Vec<Grant>,
    execute: Vec<Grant>,
    protected: Vec<Grant>,
    network: crate::decision::NetworkPlan,
    enforced: Enforced,
    places: Places,
}

/// How an access fares under a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A grant covers it.
    Granted,
    /// Its path does not exist: the kernel answers "no such file" before
    /// any rule is asked, so no grant would change the outcome.
    Missing,
    /// A mechanism in force refuses it.
    Refused(Refusal),
}

/// A refused access, in policy terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was refused.
    pub access: Access,
    /// Why: `not under filesystem.read`.
    pub reason: String,
    /// What to add where, when a key would allow it: the entry as a
    /// policy would write it (`"{home}/.npmrc"`, `8080`, `true`), the
    /// top-level key and the same key for this binary alone.
    pub fix: Option<Fix>,
}

/// A policy change that would allow a refused access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// The value to add, as TOML (`"{home}/.npmrc"`, `8080`, `true`).
    pub entry: String,
    /// The key at the top level (`filesystem.read`).
    pub key: String,
    /// The key for this binary alone (`binaries.node.filesystem.read`).
    pub binary_key: String,
    /// Whether the key is a list the entry is added to (else a value set).
    pub list: bool,
    /// Whether the binary's key is the natural place (a helper), so it is
    /// named first.
    pub prefer_binary: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied {} — {}", self.access.describe(), self.reason)?;
        let Some(fix) = &self.fix else {
            return Ok(());
        };
        let Fix {
            entry,
            key,
            binary_key,
            ..
        } = fix;
        if !fix.list {
            write!(f, "; set {key} = {entry} (or {binary_key} = {entry})")
        } else if fix.prefer_binary {
            write!(f, "; add {entry} to {binary_key} (or to {key})")
        } else if self.reason.ends_with(key.as_str()) {
            write!(f, "; add {entry} there (or to {binary_key})")
        } else {
            write!(f, "; add {entry} to {key} (or to {binary_key})")
        }
    }
}

impl Grants {
    /// The grants of `plan` for `binary`'s jobs, with what the layers added
    /// (`context`), judging only what `enforced` says was in force.
    pub fn new(plan: &Plan, context: &GrantContext, places: Places, enforced: Enforced) -> Self {
        let fs = &plan.filesystem;
        let mut execute = grants_of(&fs.execute);
        execute.extend(grants_of(&context.exec));
        Self {
            binary: plan.binary.clone(),
            read: grants_of(&fs.read),
            read_write: grants_of(&fs.read_write),
            execute,
            protected: context
                .protected
                .iter()
                .map(|p| Grant {
                    // Protected paths may be placeholders that no longer
                    // exist: they are compared as the mount layer named them.
                    path: p.path.canonicalize().unwrap_or_else(|_| p.path.clone()),
                    key: p.key.clone(),
                    dir: true,
                })
                .collect(),
            network: plan.network.clone(),
            enforced,
            places,
        }
    }

    /// The places paths are written relative to.
    pub fn places(&self) -> &Places {
        &self.places
    }

    /// Whether `path` (canonical) is beneath a writable root.
    pub(crate) fn writable(&self, path: &Path) -> bool {
        self.read_write.iter().any(|g| g.covers(path))
    }

    fn fix(&self, key: &str, entry: String, list: bool) -> Option<Fix> {
        Some(Fix {
            entry,
            key: key.to_string(),
            binary_key: format!("binaries.{}.{key}", self.binary),
            list,
            prefer_binary: false,
        })
    }

    fn refused(&self, access: &Access, reason: impl Into<String>, fix: Option<Fix>) -> Verdict {
        Verdict::Refused(Refusal {
            access: access.clone(),
            reason: reason.into(),
            fix,
        })
    }

    fn quoted(&self, path: &Path) -> String {
        toml_string(&self.places.entry(path))
    }

    fn protecting(&self, path: &Path) -> Option<&Grant> {
        if !self.enforced.protected_paths {
            return None;
        }
        self.protected.iter().find(|g| g.covers(path))
    }

    fn protected_refusal(&self, access: &Access, grant: &Grant) -> Verdict {
        self.refused(
            access,
            format!(
                "{} is a protected path ({}), read-only for every job so nothing planted there runs later outside the sandbox",
                self.places.entry(&grant.path),
                grant.key
            ),
            None,
        )
    }

    /// How `access` fares under these grants.
    pub fn check(&self, access: &Access) -> Verdict {
        let fs = self.enforced.filesystem;
        match access {
            Access::Read { path } => {
                let Some(path) = resolve(path) else {
                    return Verdict::Missing;
                };
                let granted = self
                    .read
                    .iter()
                    .chain(&self.read_write)
                    .chain(&self.execute)
                    .any(|g| g.covers(&path));
                if granted || !fs {
                    return Verdict::Granted;
                }
                let entry = self.quoted(&path);
                self.refused(
                    access,
                    "not under filesystem.read",
                    self.fix("filesystem.read", entry, true),
                )
            }
            Access::Write { path } => {
                let Some(path) = resolve(path) else {
                    return Verdict::Missing;
                };
                if let Some(grant) = self.protecting(&path) {
                    return self.protected_refusal(access, grant);
                }
                if !fs || self.writable(&path) {
                    return Verdict::Granted;
                }
                let entry = self.quoted(&path);
                self.refused(
                    access,
                    "not under filesystem.read_write",
                    self.fix("filesystem.read_write", entry, true),
                )
            }
            Access::Create { path } | Access::Remove { path } => {
                let Some(path) = resolve_in_parent(path) else {
                    return Verdict::Missing;
                };
                if let Some(grant) = self.protecting(&path) {
                    return self.protected_refusal(access, grant);
                }
                let dir = path.parent().unwrap_or(Path::new("/"));
                if !fs || self.read_write.iter().any(|g| g.dir && g.covers(dir)) {
                    return Verdict::Granted;
                }
                let entry = self.quoted(dir);
                self.refused(
                    access,
                    format!(
                        "its directory {} is not under filesystem.read_write",
                        dir.display()
                    ),
                    self.fix("filesystem.read_write", entry, true),
                )
            }
            Access::Execute { path } => {
                let Some(path) = resolve(path) else {
                    return Verdict::Missing;
                };
                if !fs || self.execute.iter().any(|g| g.covers(&path)) {
                    return Verdict::Granted;
                }
                let entry = self.quoted(&path);
                // A program in a writable root is an `execute` entry (the
                // mount layer makes it executable again); anything else
                // the binary starts is one of its helpers.
                let fix = if self.writable(&path) {
                    self.fix("filesystem.execute", entry, true)
                } else {
                    Some(Fix {
                        entry,
                        key: "filesystem.execute".into(),
                        binary_key: format!("binaries.{}.helpers", self.binary),
                        list: true,
                        prefer_binary: true,
                    })
                };
                self.refused(
                    access,
                    format!(
                        "not in binaries.{}.helpers or filesystem.execute",
                        self.binary
                    ),
                    fix,
                )
            }
            Access::MapExecutable { path } => {
                let Some(path) = resolve(path) else {
                    return Verdict::Missing;
                };
                // Only writable roots are mounted noexec; elsewhere reading
                // is what mapping needs.
                if !self.enforced.write_xor_execute
                    || !self.writable(&path)
                    || self.execute.iter().any(|g| g.covers(&path))
                {
                    return Verdict::Granted;
                }
                let entry = self.quoted(&path);
                self.refused(
                    access,
                    "it is in a writable root, mounted noexec, and not under filesystem.execute",
                    self.fix("filesystem.execute", entry, true),
                )
            }
            Access::Connect { address } => {
                let port = address.port();
                if !self.enforced.tcp
                    || self.network.unrestricted
                    || self.network.connect.iter().any(|p| p.value == port)
                {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    format!("port {port} is not in network.connect"),
                    self.fix("network.connect", port.to_string(), true),
                )
            }
            Access::Bind { address } => {
                let port = address.port();
                if !self.enforced.tcp
                    || self.network.unrestricted
                    || self.network.bind.iter().any(|p| p.value == port)
                {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    format!("port {port} is not in network.bind"),
                    self.fix("network.bind", port.to_string(), true),
                )
            }
            Access::Udp => {
                if !self.enforced.sockets || self.network.unrestricted || self.network.udp.value {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    "network.udp is off",
                    self.fix("network.udp", "true".into(), false),
                )
            }
            Access::NetlinkRoute => {
                if !self.enforced.sockets
                    || self.network.unrestricted
                    || self.network.netlink_route.value
                {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    "network.netlink_route is off",
                    self.fix("network.netlink_route", "true".into(), false),
                )
            }
            Access::UnixSocket { path } => {
                if !self.enforced.sockets
                    || self.network.unrestricted
                    || !self.network.unix.is_empty()
                {
                    return Verdict::Granted;
                }
                let path = resolve_in_parent(path).unwrap_or_else(|| path.clone());
                let entry = self.quoted(&path);
                self.refused(
                    access,
                    "no UNIX socket is granted (network.unix)",
                    self.fix("network.unix", entry, true),
                )
            }
            Access::UnixSocketCreated => {
                if !self.enforced.sockets
                    || self.network.unrestricted
                    || !self.network.unix.is_empty()
                {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    "no UNIX socket is granted (network.unix, network.unix_any)",
                    None,
                )
            }
            Access::OtherSocket { .. } => {
                if !self.enforced.sockets || self.network.unrestricted {
                    return Verdict::Granted;
                }
                self.refused(
                    access,
                    "no key grants this kind of socket (only network.unrestricted = true lifts every network rule)",
                    None,
                )
            }
        }
    }

    /// The refusals among `accesses`, each once, in order.
    pub fn refusals<'a>(&self, accesses: impl IntoIterator<Item = &'a Access>) -> Vec<Refusal> {
        accesses
            .into_iter()
            .filter_map(|a| match self.check(a) {
                Verdict::Refused(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}

/// A TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
    toml_edit::Value::from(text).to_string().trim().to_string()
}

/// `path` with `.` and `..` applied lexically (for paths that cannot be
/// resolved on disk: other processes' `/proc` entries).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            _ => {}
        }
    }
    out
}

/// The file `path` names, symlinks resolved, if it exists. A process's
/// `/proc` entries are taken as written: the process may be gone.
pub(crate) fn resolve(path: &Path) -> Option<PathBuf> {
    if path.starts_with("/proc") {
        return Some(lexical(path));
    }
    path.canonicalize().ok()
}

/// `path` with its directory resolved (the path itself may not exist: it
/// is about to be created, or was removed).
pub(crate) fn resolve_in_parent(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::symlink_metadata(path)
        && !real.file_type().is_symlink()
        && let Ok(canonical) = path.canonicalize()
    {
        return Some(canonical);
    }
    let name = path.file_name()?;
    let parent = resolve(path.parent()?)?;
    Some(parent.join(name))
}

// Observation exists on Linux only; the cases use Unix paths.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::policy::Sourced;

    fn plan_with(dir: &Path) -> Plan {
        let text = format!(
            r#"
version = 1
[filesystem]
read = ["{d}/ro"]
read_write = ["{d}/rw"]
[network]
connect = [443]
[binaries.tool]
path = "/bin/sh"
[plugins.p]
binaries = ["tool"]
"#,
            d = dir.display()
        );
        let policy = crate::Policy::from_toml("<test>", &text).unwrap().policy;
        let ctx = crate::DecisionContext {
            repo: dir,
            home: None,
            job_tmp: &dir.join("tmp"),
            host_env: &[],
        };
        crate::decide(
            &policy,
            "p",
            &crate::JobSpawnRequest::new("tool", Vec::<String>::new()),
            &ctx,
        )
        .unwrap()
    }

    fn setup() -> (tempfile::TempDir, Grants) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["ro", "rw", "other", "rw/.git"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for file in ["ro/a", "rw/b", "other/c", "rw/.git/config"] {
            std::fs::write(root.join(file), "x").unwrap();
        }
        let plan = plan_with(&root);
        let context = GrantContext {
            exec: Vec::new(),
            protected: vec![PlanPath {
                path: root.join("rw/.git"),
                key: "built-in protected paths".into(),
            }],
        };
        let places = Places::of(&plan, None);
        let grants = Grants::new(&plan, &context, places, Enforced::ALL);
        (dir, grants)
    }

    fn path(dir: &tempfile::TempDir, rest: &str) -> PathBuf {
        dir.path().canonicalize().unwrap().join(rest)
    }

    #[test]
    fn reads_and_writes_follow_the_lists() {
        let (dir, grants) = setup();
        let read = |p: &str| {
            grants.check(&Access::Read {
                path: path(&dir, p),
            })
        };
        assert_eq!(read("ro/a"), Verdict::Granted);
        assert_eq!(read("rw/b"), Verdict::Granted);
        assert_eq!(read("other/missing"), Verdict::Missing);
        let Verdict::Refused(refusal) = read("other/c") else {
            panic!("a read outside every grant is refused")
        };
        let text = refusal.to_string();
        assert!(
            text.starts_with("denied read ")
                && text.contains("not under filesystem.read; add \"{repo}/other/c\" there (or to binaries.tool.filesystem.read)"),
            "{text}"
        );
        let write = |p: &str| {
            grants.check(&Access::Write {
                path: path(&dir, p),
            })
        };
        assert_eq!(write("rw/b"), Verdict::Granted);
        let Verdict::Refused(refusal) = write("ro/a") else {
            panic!("a write to a read-only grant is refused")
        };
        assert_eq!(
            refusal.fix.unwrap().binary_key,
            "binaries.tool.filesystem.read_write"
        );
    }

    #[test]
    fn creating_needs_the_directory_and_protected_paths_have_no_fix() {
        let (dir, grants) = setup();
        let create = |p: &str| {
            grants.check(&Access::Create {
                path: path(&dir, p),
            })
        };
        assert_eq!(create("rw/new"), Verdict::Granted);
        let Verdict::Refused(refusal) = create("ro/new") else {
            panic!("creating in a read-only directory is refused")
        };
        assert_eq!(refusal.fix.unwrap().entry, "\"{repo}/ro\"");
        let Verdict::Refused(refusal) = grants.check(&Access::Write {
            path: path(&dir, "rw/.git/config"),
        }) else {
            panic!("a protected path is refused even inside a writable root")
        };
        assert!(refusal.fix.is_none(), "{refusal:?}");
        assert!(
            refusal
                .to_string()
                .contains("protected path (built-in protected paths)")
        );
    }

    #[test]
    fn ports_and_sockets_follow_the_network_plan() {
        let (_dir, grants) = setup();
        let connect = |port| {
            grants.check(&Access::Connect {
                address: ([127, 0, 0, 1], port).into(),
            })
        };
        assert_eq!(connect(443), Verdict::Granted);
        let Verdict::Refused(refusal) = connect(8080) else {
            panic!("an ungranted port is refused")
        };
        assert_eq!(
            refusal.to_string(),
            "denied connect 127.0.0.1:8080 (TCP) — port 8080 is not in network.connect; add 8080 there (or to binaries.tool.network.connect)"
        );
        assert!(matches!(grants.check(&Access::Udp), Verdict::Refused(_)));
        let mut lax = grants.clone();
        lax.network.udp = Sourced::new(true, "network.udp");
        assert_eq!(lax.check(&Access::Udp), Verdict::Granted);
    }

    #[test]
    fn nothing_is_refused_by_a_mechanism_that_was_not_in_force() {
        let (dir, mut grants) = setup();
        grants.enforced = Enforced {
            filesystem: false,
            tcp: false,
            ..Enforced::ALL
        };
        assert_eq!(
            grants.check(&Access::Read {
                path: path(&dir, "other/c")
            }),
            Verdict::Granted
        );
        assert_eq!(
            grants.check(&Access::Connect {
                address: ([127, 0, 0, 1], 1).into()
            }),
            Verdict::Granted
        );
    }

    #[test]
    fn places_prefer_the_deepest_placeholder() {
        let places = Places {
            repo: "/home/me/src/app".into(),
            home: Some("/home/me".into()),
            tmp: "/tmp/jw/job-1".into(),
        };
        assert_eq!(places.entry(Path::new("/home/me/src/app/x")), "{repo}/x");
        assert_eq!(places.entry(Path::new("/home/me/.npmrc")), "{home}/.npmrc");
        assert_eq!(places.entry(Path::new("/tmp/jw/job-1")), "{tmp}");
        assert_eq!(places.entry(Path::new("/etc/hosts")), "/etc/hosts");
    }
}
