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

/// A set of empty cgroups that no process ever joined, with what a child
/// needs to join them. Dropped unused, it removes its directories.
#[derive(Debug)]
pub(crate) struct Fresh {
    pub v2: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub join: JoinFds,
    pub problems: Vec<String>,
    shape: Shape,
}

impl Fresh {
    /// Creates the cgroups a job of `shape` needs, named `name`, beneath the
    /// host's cgroups. Failures degrade to fewer cgroups, listed in
    /// `problems`.
    pub fn make(support: &CgroupSupport, name: &str, shape: Shape) -> Self {
        let mut fresh = Self {
            v2: None,
            pids: None,
            memory: None,
            join: JoinFds {
                procs: Vec::new(),
                v2_dir: None,
            },
            problems: Vec::new(),
            shape,
        };
        let make = |parent: &Option<PathBuf>, what: &str, fresh: &mut Self| -> Option<PathBuf> {
            let dir = parent.as_ref()?.join(name);
            if let Err(e) = fs::create_dir(&dir) {
                fresh.problems.push(format!(
                    "cannot create the {what} cgroup {}: {e}",
                    dir.display()
                ));
                return None;
            }
            let open = |file: &str| fs::OpenOptions::new().write(true).open(dir.join(file));
            // A v1 hierarchy is joined through `tasks`: the child writes
            // "0" there, which moves the calling thread only and so skips
            // the global lock whose first taking after a pause waits for
            // an RCU grace period (10-20 ms here); writing "0" to
            // `cgroup.procs` moves the thread group and takes it. The
            // child has one thread: the two are the same move for it.
            let opened = match what {
                "v2" => open("cgroup.procs"),
                _ => open("tasks").or_else(|_| open("cgroup.procs")),
            };
            match opened {
                Ok(file) => fresh.join.procs.push(OwnedFd::from(file)),
                Err(e) => {
                    fresh
                        .problems
                        .push(format!("cannot open {}/cgroup.procs: {e}", dir.display()));
                    let _ = fs::remove_dir(&dir);
                    return None;
                }
            }
            Some(dir)
        };
        fresh.v2 = make(&support.v2, "v2", &mut fresh);
        // Without the directory the child joins by writing, as in v1.
        fresh.join.v2_dir = fresh.v2.as_ref().and_then(|dir| {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(dir)
                .ok()
                .map(OwnedFd::from)
        });
        let v2_has = |c: &str| fresh.v2.is_some() && support.v2_controllers.iter().any(|x| x == c);
        let (v2_pids, v2_memory) = (v2_has("pids"), v2_has("memory"));
        // The pids cgroup is made even without a limit: it counts the
        // job's processes (`pids.peak`) and lists its members.
        if !v2_pids {
            fresh.pids = make(&support.v1_pids, "v1 pids", &mut fresh);
        }
        if shape.memory && !v2_memory {
            fresh.memory = make(&support.v1_memory, "v1 memory", &mut fresh);
        }
        fresh
    }

    /// Whether every hierarchy of `support` gave its cgroup.
    fn complete(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        // Nothing ever joined these: they are empty, and rmdir succeeds.
        for dir in [&self.v2, &self.pids, &self.memory].into_iter().flatten() {
            let _ = fs::remove_dir(dir);
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
    /// (none: every job creates its own). Nothing is created before the
    /// first job asks.
    pub fn new(support: CgroupSupport, spares: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            support,
            spares,
            filler: Mutex::new(None),
        }
    }

    /// A fresh set of `shape` if one is ready; asks for the next either way.
    pub fn take(&self, shape: Shape) -> Option<Fresh> {
        if self.spares == 0 || self.support.unavailable.is_some() {
            return None;
        }
        let taken = {
            let mut state = self.inner.lock();
            if state.closed || state.failed {
                return None;
            }
            state.wanted = Some(shape);
            let at = state.ready.iter().position(|f| f.shape == shape);
            at.map(|i| state.ready.swap_remove(i))
        };
        self.inner.wake.notify_one();
        self.start_filler();
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
        state
            .ready
            .iter()
            .flat_map(|f| [&f.v2, &f.pids, &f.memory])
            .flatten()
            .cloned()
            .collect()
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
        let name = format!(
            "jobwarden-{}-spare-{}",
            std::process::id(),
            NEXT_SPARE.fetch_add(1, Ordering::Relaxed)
        );
        let fresh = Fresh::make(support, &name, shape);
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

    /// Everything the cgroup hierarchies list beneath the host's cgroups
    /// whose name starts with `prefix`.
    fn named(support: &CgroupSupport, prefix: &str) -> Vec<PathBuf> {
        [&support.v2, &support.v1_pids, &support.v1_memory]
            .into_iter()
            .flatten()
            .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect()
    }

    fn support() -> Option<CgroupSupport> {
        let support = CgroupSupport::detect(&SupportOptions::default(), true);
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
        let prefix = format!("jobwarden-{}-spare-", std::process::id());
        let pool = CgroupPool::new(support.clone(), 2);
        let shape = Shape::of(true);
        // The first job finds nothing made: the pool starts on demand.
        assert!(pool.take(shape).is_none());
        wait_ready(&pool, 2);
        let spares = pool.spare_dirs();
        let a = pool.take(shape).expect("a spare set is ready");
        let b = pool.take(shape).expect("a second spare set is ready");
        let dirs = |f: &Fresh| -> Vec<PathBuf> {
            [&f.v2, &f.pids, &f.memory]
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        };
        let (da, db) = (dirs(&a), dirs(&b));
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
        assert_eq!(a.join.procs.len(), da.len());
        assert!(a.memory.is_some() || support.v1_memory.is_none() || a.v2.is_some());
        drop((a, b));
        wait_ready(&pool, 2);
        assert_eq!(named(&support, &prefix).len(), pool.spare_dirs().len());
        pool.close();
        assert_eq!(named(&support, &prefix), Vec::<PathBuf>::new());
        // A closed pool gives nothing and makes nothing.
        assert!(pool.take(shape).is_none());
        assert_eq!(named(&support, &prefix), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_pool_of_no_spares_makes_nothing() {
        let Some(support) = support() else { return };
        let pool = CgroupPool::new(support, 0);
        assert!(pool.take(Shape::of(false)).is_none());
        assert!(pool.filler.lock().unwrap().is_none());
    }

    #[test]
    fn a_new_shape_replaces_the_spares_of_the_old() {
        let Some(support) = support() else { return };
        let pool = CgroupPool::new(support, 1);
        let _ = pool.take(Shape::of(true));
        wait_ready(&pool, 1);
        assert!(pool.take(Shape::of(false)).is_none());
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
