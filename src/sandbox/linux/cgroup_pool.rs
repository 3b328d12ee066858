//! Job cgroups made ahead of the jobs that take them.
//!
//! Creating a job's cgroups (a `mkdir` in each hierarchy, which makes the
//! kernel populate every controller's files, and opening `cgroup.procs`)
//! took about a tenth of a millisecond of every spawn, on the host thread,
//! before the child could start. A pool keeps a few empty sets ready, made
//! by a thread of their own while the host waits for its jobs; a spawn
//! takes one and only writes the job's limits.
//!
//! The invariants: a pooled set is fresh — created by the pool, never
//! joined by any process — and is handed to one job only; a job's cgroups
//! are never recycled (they are removed when the job ends, as before:
//! counters such as `pids.peak`, `memory.events` and a v1 cgroup's page
//! cache charge would carry over). Spare sets are named
//! `jobwarden-PID-spare-N`, so the stale sweep of a later host removes
//! those of a host that died; closing the pool (the host's shutdown, or
//! dropping its last support) removes the rest.

use super::cgroup::{CgroupSupport, JoinFds};
use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How many spare sets a pool keeps ready, unless told otherwise.
pub(crate) const DEFAULT_SPARES: usize = 2;

/// Numbers the spare sets of every pool of this process.
static NEXT_SPARE: AtomicU64 = AtomicU64::new(0);

/// A new spare set's name: `jobwarden-PID-spare-N`.
pub(super) fn spare_name() -> String {
    format!(
        "jobwarden-{}-spare-{}",
        std::process::id(),
        NEXT_SPARE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Which cgroups a job needs: the memory hierarchy only when the job has a
/// memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    memory: bool,
}

impl Shape {
    pub fn of(memory_limit: bool) -> Self {
        Self {
            memory: memory_limit,
        }
    }
}

/// One hierarchy's cgroup of a set, and the file a child writes "0" to to
/// join it.
#[derive(Debug)]
struct Joinable {
    dir: PathBuf,
    file: OwnedFd,
}

impl Joinable {
    /// Opens the join file of `dir`, a cgroup jobwarden just created. A v1
    /// hierarchy is joined through `tasks`: "0" written there moves the
    /// calling thread only and so skips the global lock whose first taking
    /// after a pause waits for an RCU grace period (10–20 ms here); "0"
    /// written to `cgroup.procs` moves the thread group and takes it. The
    /// child has one thread: for it the two are the same move.
    fn open(dir: PathBuf, v2: bool) -> Result<Self, String> {
        let open = |file: &str| fs::OpenOptions::new().write(true).open(dir.join(file));
        let opened = if v2 {
            open("cgroup.procs")
        } else {
            open("tasks").or_else(|_| open("cgroup.procs"))
        };
        match opened {
            Ok(file) => Ok(Self {
                dir,
                file: OwnedFd::from(file),
            }),
            Err(e) => {
                let problem = format!("cannot open {}/cgroup.procs: {e}", dir.display());
                let _ = fs::remove_dir(&dir);
                Err(problem)
            }
        }
    }
}

/// A set of empty cgroups that no process ever joined, with what a child
/// needs to join them. Dropped unused, it removes its directories.
#[derive(Debug)]
pub(crate) struct Fresh {
    v2: Option<Joinable>,
    v2_dir: Option<OwnedFd>,
    pids: Option<Joinable>,
    memory: Option<Joinable>,
    pub problems: Vec<String>,
    shape: Shape,
}

impl Fresh {
    fn empty(shape: Shape) -> Self {
        Self {
            v2: None,
            v2_dir: None,
            pids: None,
            memory: None,
            problems: Vec::new(),
            shape,
        }
    }

    /// Creates the cgroups a job of `shape` needs, named `name`, beneath the
    /// host's cgroups. Failures degrade to fewer cgroups, listed in
    /// `problems`.
    pub fn make(support: &CgroupSupport, name: &str, shape: Shape) -> Self {
        let mut fresh = Self::empty(shape);
        let make = |parent: &Option<PathBuf>, what: &str, problems: &mut Vec<String>| {
            let dir = parent.as_ref()?.join(name);
            if let Err(e) = fs::create_dir(&dir) {
                problems.push(format!(
                    "cannot create the {what} cgroup {}: {e}",
                    dir.display()
                ));
                return None;
            }
            Joinable::open(dir, what == "v2")
                .map_err(|problem| problems.push(problem))
                .ok()
        };
        fresh.v2 = make(&support.v2, "v2", &mut fresh.problems);
        let needs = fresh.needs(support);
        if needs.pids {
            fresh.pids = make(&support.v1_pids, "v1 pids", &mut fresh.problems);
        }
        if needs.memory {
            fresh.memory = make(&support.v1_memory, "v1 memory", &mut fresh.problems);
        }
        fresh.open_v2_dir();
        fresh
    }

    /// The probes detection left (`CgroupSupport::detect`)
    /// as a set of the shape with memory, when they are one: a cgroup in
    /// each hierarchy a job uses, each created by the probe. Otherwise
    /// they are removed.
    pub fn adopt(support: &CgroupSupport, probes: Vec<PathBuf>) -> Option<Self> {
        // pids and memory mounted together: one probe, and a job's set
        // there is one cgroup, which `make` reports; the probe is no set.
        if support.v1_pids.is_some() && support.v1_pids == support.v1_memory {
            for dir in probes {
                let _ = fs::remove_dir(dir);
            }
            return None;
        }
        let mut fresh = Self::empty(Shape::of(true));
        let take = |parent: &Option<PathBuf>, probes: &mut Vec<PathBuf>| {
            let parent = parent.as_ref()?;
            let at = probes.iter().position(|p| p.parent() == Some(parent))?;
            Some(probes.swap_remove(at))
        };
        let mut probes = probes;
        let mut ok = true;
        if support.v2.is_some() {
            fresh.v2 = take(&support.v2, &mut probes).and_then(|d| Joinable::open(d, true).ok());
            ok &= fresh.v2.is_some();
        }
        let needs = fresh.needs(support);
        for (wanted, parent, slot) in [
            (needs.pids, &support.v1_pids, &mut fresh.pids),
            (needs.memory, &support.v1_memory, &mut fresh.memory),
        ] {
            match (wanted, take(parent, &mut probes)) {
                (true, Some(dir)) => {
                    *slot = Joinable::open(dir, false).ok();
                    ok &= slot.is_some();
                }
                (true, None) => ok &= parent.is_none(),
                (false, Some(dir)) => probes.push(dir),
                (false, None) => {}
            }
        }
        for dir in probes {
            let _ = fs::remove_dir(dir);
        }
        fresh.open_v2_dir();
        let any = fresh.v2.is_some() || fresh.pids.is_some() || fresh.memory.is_some();
        // Dropped, a partial set removes what it holds.
        (ok && any).then_some(fresh)
    }

    /// Which v1 hierarchies a job of this set's shape joins, given its v2
    /// cgroup (or none).
    fn needs(&self, support: &CgroupSupport) -> Needs {
        let v2_has = |c: &str| self.v2.is_some() && support.v2_controllers.iter().any(|x| x == c);
        Needs {
            // The pids cgroup is made even without a limit: it counts the
            // job's processes (`pids.peak`) and lists its members.
            pids: !v2_has("pids"),
            memory: self.shape.memory && !v2_has("memory"),
        }
    }

    /// The v2 cgroup's directory, for a child born into it; without it the
    /// child joins by writing, as in v1.
    fn open_v2_dir(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        self.v2_dir = self.v2.as_ref().and_then(|v2| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(&v2.dir)
                .ok()
                .map(OwnedFd::from)
        });
    }

    /// The same set for a job without a memory limit: without its v1
    /// memory cgroup.
    fn without_memory(mut self) -> Self {
        if let Some(memory) = self.memory.take() {
            let _ = fs::remove_dir(&memory.dir);
        }
        self.shape = Shape::of(false);
        self
    }

    /// Whether every hierarchy of `support` gave its cgroup.
    fn complete(&self) -> bool {
        self.problems.is_empty()
    }

    /// The directories (v2, v1 pids, v1 memory) and what a child needs to
    /// join them; from here the caller removes them.
    pub fn into_parts(mut self) -> ([Option<PathBuf>; 3], JoinFds) {
        let mut procs = Vec::new();
        let mut dirs = [None, None, None];
        for (i, slot) in [&mut self.v2, &mut self.pids, &mut self.memory]
            .into_iter()
            .enumerate()
        {
            if let Some(joinable) = slot.take() {
                dirs[i] = Some(joinable.dir);
                procs.push(joinable.file);
            }
        }
        let join = JoinFds {
            // The v2 cgroup's first, as `Spec::cgroup_v2_dir` says.
            procs,
            v2_dir: self.v2_dir.take(),
        };
        (dirs, join)
    }

    #[cfg(test)]
    fn dirs(&self) -> Vec<PathBuf> {
        [&self.v2, &self.pids, &self.memory]
            .into_iter()
            .flatten()
            .map(|j| j.dir.clone())
            .collect()
    }
}

struct Needs {
    pids: bool,
    memory: bool,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // Nothing ever joined these: they are empty, and rmdir succeeds.
        for joinable in [&self.v2, &self.pids, &self.memory].into_iter().flatten() {
            let _ = fs::remove_dir(&joinable.dir);
        }
    }
}

/// Spare cgroup sets for the jobs of one host.
pub(crate) struct CgroupPool {
    inner: Arc<Inner>,
    support: CgroupSupport,
    spares: usize,
    filler: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    ready: Vec<Fresh>,
    /// The shape the last job asked for: the one the filler makes.
    wanted: Option<Shape>,
    closed: bool,
    /// The filler met a failure: jobs create their own cgroups, which
    /// reports the problem where it belongs (the job's report).
    failed: bool,
}

impl std::fmt::Debug for CgroupPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupPool")
            .field("spares", &self.spares)
            .field("ready", &self.inner.lock().ready.len())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CgroupPool {
    /// A pool that keeps `spares` sets ready beneath `support`'s cgroups
    /// (none: every job creates its own), starting with the set detection
    /// left (`probes`), if they make one. Nothing is created before the
    /// first job asks.
    pub fn new(support: CgroupSupport, spares: usize, probes: Vec<PathBuf>) -> Self {
        let seed = Fresh::adopt(&support, probes);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    ready: seed.into_iter().collect(),
                    ..State::default()
                }),
                wake: Condvar::new(),
            }),
            support,
            spares,
            filler: Mutex::new(None),
        }
    }

    /// A fresh set of `shape` if one is ready; asks for the next either way.
    pub fn take(&self, shape: Shape) -> Option<Fresh> {
        if self.support.unavailable.is_some() {
            return None;
        }
        let taken = {
            let mut state = self.inner.lock();
            if state.closed {
                return None;
            }
            state.wanted = Some(shape);
            let exact = state.ready.iter().position(|f| f.shape == shape);
            // A set with a memory cgroup serves a job without a memory
            // limit once that cgroup is removed.
            let wider = || {
                state
                    .ready
                    .iter()
                    .position(|f| !shape.memory && f.shape.memory)
            };
            exact.or_else(wider).map(|i| state.ready.swap_remove(i))
        };
        let taken = taken.map(|fresh| {
            if fresh.shape == shape {
                fresh
            } else {
                fresh.without_memory()
            }
        });
        if self.spares > 0 && !self.inner.lock().failed {
            self.inner.wake.notify_one();
            self.start_filler();
        }
        taken
    }

    fn start_filler(&self) {
        let mut filler = self.filler.lock().unwrap_or_else(|e| e.into_inner());
        if filler.is_some() {
            return;
        }
        let inner = self.inner.clone();
        let support = self.support.clone();
        let spares = self.spares;
        let started = std::thread::Builder::new()
            .name("jobwarden-cgroups".into())
            .spawn(move || fill(&inner, &support, spares));
        match started {
            Ok(handle) => *filler = Some(handle),
            // Jobs create their own cgroups, as without a pool.
            Err(_) => self.inner.lock().failed = true,
        }
    }

    /// Stops the filler and removes every spare set. Jobs asking later
    /// create their own cgroups.
    pub fn close(&self) {
        let spares = {
            let mut state = self.inner.lock();
            state.closed = true;
            std::mem::take(&mut state.ready)
        };
        self.inner.wake.notify_all();
        let filler = self.filler.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(filler) = filler {
            let _ = filler.join();
        }
        drop(spares);
    }

    /// The spare sets' directories (for tests).
    #[cfg(test)]
    pub fn spare_dirs(&self) -> Vec<PathBuf> {
        let state = self.inner.lock();
        state.ready.iter().flat_map(Fresh::dirs).collect()
    }
}

impl Drop for CgroupPool {
    fn drop(&mut self) {
        self.close();
    }
}

/// The filler: keeps `spares` sets of the wanted shape ready until closed.
fn fill(inner: &Inner, support: &CgroupSupport, spares: usize) {
    let mut state = inner.lock();
    loop {
        if state.closed || state.failed {
            return;
        }
        let Some(shape) = state.wanted else {
            state = inner.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        // Sets of a shape no longer asked for go first.
        if let Some(i) = state.ready.iter().position(|f| f.shape != shape) {
            let stale = state.ready.swap_remove(i);
            drop(state);
            drop(stale);
            state = inner.lock();
            continue;
        }
        if state.ready.len() >= spares {
            state = inner.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        drop(state);
        let fresh = Fresh::make(support, &spare_name(), shape);
        state = inner.lock();
        if !fresh.complete() {
            state.failed = true;
            return;
        }
        if !state.closed {
            state.ready.push(fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::support::SupportOptions;

    fn support() -> Option<CgroupSupport> {
        let (support, probes) = CgroupSupport::detect(&SupportOptions::default(), true);
        for dir in probes {
            fs::remove_dir(dir).unwrap();
        }
        if let Some(why) = &support.unavailable {
            super::super::test_skip("cgroups", why);
            return None;
        }
        Some(support)
    }

    fn wait_ready(pool: &CgroupPool, n: usize) {
        for _ in 0..500 {
            if pool.inner.lock().ready.len() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("the pool made fewer than {n} spare sets in a second");
    }

    #[test]
    fn spares_are_fresh_distinct_and_removed_on_close() {
        let Some(support) = support() else { return };
        let pool = CgroupPool::new(support.clone(), 2, Vec::new());
        let shape = Shape::of(true);
        // The first job finds nothing made: the pool starts on demand.
        assert!(pool.take(shape).is_none());
        wait_ready(&pool, 2);
        let spares = pool.spare_dirs();
        let a = pool.take(shape).expect("a spare set is ready");
        let b = pool.take(shape).expect("a second spare set is ready");
        let (da, db) = (a.dirs(), b.dirs());
        assert!(
            !da.is_empty() && da.iter().all(|d| !db.contains(d)),
            "{da:?} {db:?}"
        );
        for dir in da.iter().chain(&db) {
            assert!(spares.contains(dir), "{dir:?} was not a spare");
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert_eq!(procs, "", "{dir:?} is not fresh");
        }
        // Each set has what a job of the shape needs: its own fds.
        let (dirs, join) = a.into_parts();
        assert_eq!(join.procs.len(), da.len());
        assert!(dirs[2].is_some() || support.memory().is_some_and(|m| m.contains("v2")));
        for dir in dirs.into_iter().flatten() {
            fs::remove_dir(dir).unwrap();
        }
        // Dropped unused, a set removes its cgroups.
        drop(b);
        assert!(db.iter().all(|d| !d.exists()), "{db:?}");
        wait_ready(&pool, 2);
        let spares = pool.spare_dirs();
        assert!(spares.iter().all(|d| d.is_dir()), "{spares:?}");
        pool.close();
        assert!(spares.iter().all(|d| !d.exists()), "{spares:?}");
        // A closed pool gives nothing and makes nothing.
        assert!(pool.take(shape).is_none());
        assert!(pool.spare_dirs().is_empty());
    }

    /// Detection's probes are the first job's cgroups; probes that make no
    /// set are removed.
    #[test]
    fn the_probes_of_detection_serve_the_first_job() {
        let Some(support) = support() else { return };
        let (_, probes) = CgroupSupport::detect(&SupportOptions::default(), true);
        assert!(!probes.is_empty());
        let pool = CgroupPool::new(support.clone(), 0, probes.clone());
        let first = pool.take(Shape::of(true)).expect("the probes are a set");
        let mut dirs = first.dirs();
        dirs.sort();
        let mut expected = probes.clone();
        expected.sort();
        assert_eq!(dirs, expected);
        // With no spares, nothing follows.
        assert!(pool.take(Shape::of(true)).is_none());
        drop(first);
        assert!(probes.iter().all(|d| !d.exists()), "{probes:?}");

        // Probes beneath cgroups the support does not use make no set, and
        // are removed.
        let (_, probes) = CgroupSupport::detect(&SupportOptions::default(), true);
        let mut elsewhere = support.clone();
        elsewhere.v2 = Some(std::env::temp_dir());
        let pool = CgroupPool::new(elsewhere, 0, probes.clone());
        assert!(pool.take(Shape::of(true)).is_none());
        assert!(probes.iter().all(|d| !d.exists()), "{probes:?}");
    }

    /// pids and memory mounted together: one probe for both, which is no
    /// set (a job's set there would have one cgroup for two roles).
    #[test]
    fn probes_of_a_shared_v1_hierarchy_are_no_set() {
        // Paths only: a plain directory stands for the shared hierarchy.
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().to_path_buf();
        let support = CgroupSupport {
            v1_pids: Some(shared.clone()),
            v1_memory: Some(shared.clone()),
            ..CgroupSupport::default()
        };
        let mut probes = Vec::new();
        assert!(super::super::cgroup::probe_for_tests(&shared, &mut probes));
        assert!(super::super::cgroup::probe_for_tests(&shared, &mut probes));
        assert_eq!(probes.len(), 1, "one probe per directory: {probes:?}");
        assert!(Fresh::adopt(&support, probes.clone()).is_none());
        assert!(!probes[0].exists(), "{probes:?}");
    }

    #[test]
    fn a_pool_of_no_spares_makes_nothing() {
        let Some(support) = support() else { return };
        let pool = CgroupPool::new(support, 0, Vec::new());
        assert!(pool.take(Shape::of(false)).is_none());
        assert!(pool.filler.lock().unwrap().is_none());
    }

    #[test]
    fn a_new_shape_replaces_the_spares_of_the_old() {
        let Some(support) = support() else { return };
        let pool = CgroupPool::new(support, 1, Vec::new());
        let _ = pool.take(Shape::of(true));
        wait_ready(&pool, 1);
        // A job without a memory limit takes the set without its memory
        // cgroup.
        let narrowed = pool.take(Shape::of(false)).expect("the set narrows");
        assert!(narrowed.memory.is_none(), "{narrowed:?}");
        assert!(
            narrowed.pids.is_some() || narrowed.v2.is_some(),
            "{narrowed:?}"
        );
        for _ in 0..500 {
            let ready = pool
                .inner
                .lock()
                .ready
                .iter()
                .map(|f| f.shape)
                .collect::<Vec<_>>();
            if ready == [Shape::of(false)] {
                let fresh = pool.take(Shape::of(false)).unwrap();
                assert!(fresh.memory.is_none(), "{fresh:?}");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("the pool kept the old shape");
    }
}
