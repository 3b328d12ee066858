//! Learn mode's answer: from what one run did and the base policy's
//! grants, the smallest addition that lets exactly that run pass.
//!
//! The invariant: the suggestion grants nothing the run did not need, and
//! nothing the base policy refuses on purpose. Every access the base
//! grants (or that named a missing file) is left out; every access the
//! base refuses with no key that could allow it (a protected path, a kind
//! of socket no grant covers) is reported in `refused`, never granted.
//! What remains becomes entries, collapsed only where many files of one
//! directory were read or written, and never into `/`, a top-level
//! directory, the home directory itself or one above it.

use super::access::{Access, Observed};
use super::grants::{Grants, Places, Refusal, Verdict, resolve, resolve_in_parent};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// How many distinct entries of one directory make the directory the
/// entry instead.
pub const COLLAPSE_AT: usize = 4;

/// What a run needed beyond the base policy, in policy terms (every path
/// written as a policy entry, with placeholders).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suggestion {
    /// Programs the binary started: `binaries.NAME.helpers`.
    pub helpers: Vec<String>,
    /// Paths read: `filesystem.read`.
    pub read: Vec<String>,
    /// Files written, and the directories of what was created or
    /// removed: `filesystem.read_write`.
    pub read_write: Vec<String>,
    /// Files mapped executable, and programs started from a writable
    /// place: `filesystem.execute`.
    pub execute: Vec<String>,
    /// TCP ports connected to: `network.connect`.
    pub connect: Vec<u16>,
    /// TCP ports bound: `network.bind`.
    pub bind: Vec<u16>,
    /// Whether a UDP socket was used: `network.udp`.
    pub udp: bool,
    /// Whether a `NETLINK_ROUTE` socket was used: `network.netlink_route`.
    pub netlink_route: bool,
    /// UNIX socket paths used: `network.unix`.
    pub unix: Vec<String>,
    /// What the base policy refuses on purpose: reported, never granted.
    pub refused: Vec<Refusal>,
    /// What the reader should know (what was collapsed, what cannot be
    /// observed).
    pub notes: Vec<String>,
}

impl Suggestion {
    /// Whether the run needed nothing beyond the base policy.
    pub fn grants_nothing(&self) -> bool {
        self.helpers.is_empty()
            && self.read.is_empty()
            && self.read_write.is_empty()
            && self.execute.is_empty()
            && self.connect.is_empty()
            && self.bind.is_empty()
            && !self.udp
            && !self.netlink_route
            && self.unix.is_empty()
    }
}

/// Paths the kernel calls `/proc/<pid>`: a process's own entries, which a
/// policy can only grant as all of `/proc`.
fn process_entry(path: &Path) -> bool {
    let mut parts = path.components().skip(1);
    parts.next().is_some_and(|c| c.as_os_str() == "proc")
        && parts.next().is_some_and(|c| {
            let name = c.as_os_str().to_string_lossy();
            !name.is_empty() && name.chars().all(|ch| ch.is_ascii_digit())
        })
}

/// `path` as the job named it, with `.` components dropped; resolved
/// when it goes up (`..`), which only the file system can answer. Entries
/// keep the job's names because the kernel resolves a grant's symlinks
/// when the job starts: `libz.so.1` still grants the library after an
/// upgrade renames the file it points to, `libz.so.1.2.13` would not.
fn as_named(path: &Path) -> PathBuf {
    if path.components().any(|c| c == Component::ParentDir) {
        return resolve_in_parent(path).unwrap_or_else(|| path.to_path_buf());
    }
    path.components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// The interpreter a `#!` script names, if `path` is one.
fn interpreter(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    let text = std::str::from_utf8(&line[..end]).ok()?;
    let program = text.split_whitespace().next()?;
    program.starts_with('/').then(|| PathBuf::from(program))
}

/// The smallest addition to `base` that lets the run `observed` recorded
/// pass. `program` is the binary's own file (always executable).
pub fn suggest(observed: &Observed, base: &Grants, program: &Path) -> Suggestion {
    let places = base.places().clone();
    let mut out = Suggestion::default();
    let mut read = BTreeSet::new();
    let mut read_write = BTreeSet::new();
    let mut execute = BTreeSet::new();
    let mut helpers = BTreeSet::new();
    let mut unix = BTreeSet::new();
    let mut whole_proc = false;
    let mut bare_unix = false;
    let program = program
        .canonicalize()
        .unwrap_or_else(|_| program.to_path_buf());

    let mut pending: Vec<Access> = observed.accesses().into_iter().cloned().collect();
    // A script a helper runs needs its interpreter executable too (the
    // kernel opens it without a system call observation could see).
    for access in observed.accesses() {
        if let Access::Execute { path } = access
            && let Some(interpreter) = interpreter(path)
        {
            pending.push(Access::Execute { path: interpreter });
        }
    }
    for access in &pending {
        let refusal = match base.check(access) {
            Verdict::Granted | Verdict::Missing => continue,
            Verdict::Refused(refusal) => refusal,
        };
        // A UNIX socket created is granted with any `network.unix` path;
        // which one the run needs comes from its connects, if any.
        if *access == Access::UnixSocketCreated {
            bare_unix = true;
            continue;
        }
        if refusal.fix.is_none() {
            out.refused.push(refusal);
            continue;
        }
        match access {
            Access::Read { path } => {
                if resolve(path).is_none() {
                    continue;
                }
                let path = as_named(path);
                if process_entry(&path) {
                    whole_proc = true;
                } else {
                    read.insert(path);
                }
            }
            Access::Write { path } => {
                if resolve(path).is_some() {
                    read_write.insert(as_named(path));
                }
            }
            Access::Create { path } | Access::Remove { path } => {
                if let Some(dir) = as_named(path).parent() {
                    read_write.insert(dir.to_path_buf());
                }
            }
            Access::Execute { path } => {
                let Some(real) = resolve(path) else { continue };
                if real == program {
                    continue;
                }
                if base.writable(&real) {
                    execute.insert(as_named(path));
                } else {
                    helpers.insert(as_named(path));
                }
            }
            Access::MapExecutable { path } => {
                if resolve(path).is_some() {
                    execute.insert(as_named(path));
                }
            }
            Access::Connect { address } => out.connect.push(address.port()),
            Access::Bind { address } => out.bind.push(address.port()),
            Access::Udp => out.udp = true,
            Access::NetlinkRoute => out.netlink_route = true,
            Access::UnixSocket { path } => {
                unix.insert(as_named(path));
            }
            Access::UnixSocketCreated | Access::OtherSocket { .. } => out.refused.push(refusal),
        }
    }
    if bare_unix && unix.is_empty() {
        out.notes.push(
            "the run created UNIX sockets without connecting to a named one (abstract or unused): `network.unix_any = true` would allow them; nothing added"
                .into(),
        );
    }
    if whole_proc {
        read.insert(PathBuf::from("/proc"));
        out.notes.push(
            "the run read its own /proc entries; a policy can only grant them as all of /proc, which also shows other processes' command lines"
                .into(),
        );
    }

    let read_write = collapse(read_write, &places, &mut out.notes);
    let execute = collapse(execute, &places, &mut out.notes);
    let helpers = collapse(helpers, &places, &mut out.notes);
    // Writing and executing include reading.
    let read: BTreeSet<PathBuf> = collapse(read, &places, &mut out.notes)
        .into_iter()
        .filter(|p| {
            !read_write
                .iter()
                .chain(&execute)
                .chain(&helpers)
                .any(|w| p.starts_with(w))
        })
        .collect();
    let entry = |p: &PathBuf| places.entry(p);
    out.read = read.iter().map(entry).collect();
    out.read_write = read_write.iter().map(entry).collect();
    out.execute = execute.iter().map(entry).collect();
    out.helpers = helpers.iter().map(entry).collect();
    out.unix = unix.iter().map(entry).collect();
    out.connect.sort_unstable();
    out.connect.dedup();
    out.bind.sort_unstable();
    out.bind.dedup();
    out.refused.sort_by(|a, b| a.access.cmp(&b.access));
    out.refused.dedup();
    if observed.dropped > 0 {
        out.notes.push(format!(
            "{} further distinct accesses were not kept (at most {} per job): run a smaller part of the job to see them",
            observed.dropped,
            super::access::MAX_DISTINCT_ACCESSES
        ));
    }
    if observed.unreadable > 0 {
        out.notes.push(format!(
            "the arguments of {} attempts could not be read (their process had ended, or its memory is not readable by this user)",
            observed.unreadable
        ));
    }
    out
}

/// Whether entries may be collapsed into `dir`: never `/`, a top-level
/// directory (`/etc`, `/usr`, `/home`), the home directory or one above
/// it. `{repo}` and `{tmp}` themselves may be.
fn collapsible(dir: &Path, places: &Places) -> bool {
    if dir == places.repo || dir == places.tmp {
        return true;
    }
    if let Some(home) = &places.home
        && home.starts_with(dir)
    {
        return false;
    }
    dir.components().count() >= 3
}

/// Replaces the entries of a directory with the directory where it holds
/// at least [`COLLAPSE_AT`] of them, deepest first, until nothing changes;
/// then drops entries beneath another.
fn collapse(
    paths: BTreeSet<PathBuf>,
    places: &Places,
    notes: &mut Vec<String>,
) -> BTreeSet<PathBuf> {
    let original = paths.clone();
    let mut paths = paths;
    loop {
        let mut by_dir: BTreeMap<&Path, usize> = BTreeMap::new();
        for path in &paths {
            if let Some(dir) = path.parent() {
                *by_dir.entry(dir).or_default() += 1;
            }
        }
        let Some(dir) = by_dir
            .into_iter()
            .filter(|(dir, n)| *n >= COLLAPSE_AT && collapsible(dir, places))
            .map(|(dir, _)| dir.to_path_buf())
            .max_by_key(|dir| dir.components().count())
        else {
            break;
        };
        paths.retain(|p| !p.starts_with(&dir));
        paths.insert(dir);
    }
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|other| other != p && p.starts_with(other)));
    for dir in paths.iter().filter(|p| !original.contains(*p)) {
        let beneath = original.iter().filter(|p| p.starts_with(dir)).count();
        notes.push(format!(
            "{} stands for the {beneath} paths beneath it the run used",
            places.entry(dir)
        ));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> Places {
        Places {
            repo: "/work/app".into(),
            home: Some("/home/me".into()),
            tmp: "/tmp/jw/job-1".into(),
        }
    }

    fn set(paths: &[&str]) -> BTreeSet<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn many_files_of_one_directory_become_the_directory() {
        let mut notes = Vec::new();
        let paths = set(&[
            "/usr/lib/py/a.py",
            "/usr/lib/py/b.py",
            "/usr/lib/py/c.py",
            "/usr/lib/py/enc/d.py",
            "/usr/lib/py/e.py",
            "/etc/one",
        ]);
        let out = collapse(paths, &places(), &mut notes);
        assert_eq!(out, set(&["/usr/lib/py", "/etc/one"]));
        assert_eq!(
            notes,
            ["/usr/lib/py stands for the 5 paths beneath it the run used"]
        );
    }

    #[test]
    fn few_files_stay_files_and_nothing_collapses_into_broad_directories() {
        let mut notes = Vec::new();
        // Three files: below the threshold.
        let three = set(&["/home/me/a", "/home/me/b", "/home/me/c"]);
        assert_eq!(collapse(three.clone(), &places(), &mut notes), three);
        // Four in the home directory itself, or in /etc: never collapsed.
        let home = set(&["/home/me/a", "/home/me/b", "/home/me/c", "/home/me/d"]);
        assert_eq!(collapse(home.clone(), &places(), &mut notes), home);
        let etc = set(&["/etc/a", "/etc/b", "/etc/c", "/etc/d"]);
        assert_eq!(collapse(etc.clone(), &places(), &mut notes), etc);
        // Beneath the home directory, and the repository itself, may be.
        let config = set(&[
            "/home/me/.config/t/a",
            "/home/me/.config/t/b",
            "/home/me/.config/t/c",
            "/home/me/.config/t/d",
        ]);
        assert_eq!(
            collapse(config, &places(), &mut notes),
            set(&["/home/me/.config/t"])
        );
        let repo = set(&["/work/app/a", "/work/app/b", "/work/app/c", "/work/app/d"]);
        assert_eq!(collapse(repo, &places(), &mut notes), set(&["/work/app"]));
    }

    #[test]
    fn process_entries_are_recognised() {
        assert!(process_entry(Path::new("/proc/123/status")));
        assert!(!process_entry(Path::new("/proc/meminfo")));
        assert!(!process_entry(Path::new("/usr/proc/1")));
    }
}
