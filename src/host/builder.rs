//! Building a host: its options, detecting what the machine supports, the
//! job directory root, the audit log, the policy watch, and starting the
//! host thread.

use super::audit::AuditLog;
use super::shared::{JobTable, Shared, WarningSink};
use super::{HostWarning, PolicyJobHost, supervisor};
use crate::policy::{Policy, WhenFull};
use crate::sandbox::{HostSupport, SupportOptions};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// Why a host could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The repository is a directory no job should be given the run of
    /// (`/`, a top-level system directory, the home directory or one above
    /// it).
    #[error("refusing {} as the repository: {why}; give a project directory instead", path.display())]
    UnsafeRepo {
        /// The repository, canonical.
        path: PathBuf,
        /// Why, in one sentence.
        why: String,
    },
    /// The repository does not exist, cannot be resolved, or is not a
    /// directory.
    #[error("cannot use {} as the repository: {source}", path.display())]
    Repo {
        /// The repository as given (canonical when it is not a directory).
        path: PathBuf,
        /// What resolving it said (`NotADirectory` for a file).
        #[source]
        source: std::io::Error,
    },
    /// The directory that holds the jobs' private directories could not be
    /// created.
    #[error("cannot create the job directory root in {}: {source}", path.display())]
    TmpRoot {
        /// The directory it was to be created in.
        path: PathBuf,
        /// Why creating it failed.
        #[source]
        source: std::io::Error,
    },
    /// The audit log could not be opened for appending.
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit {
        /// The audit log's path, as configured.
        path: PathBuf,
        /// Why opening it failed.
        #[source]
        source: std::io::Error,
    },
    /// The operating system refused to start the host's thread.
    #[error("cannot start the host thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The host thread's poller (epoll, kqueue, …) or its waker could not
    /// be created.
    #[error("cannot set up the poller: {0}")]
    Poller(#[source] std::io::Error),
    /// [`HostBuilder::watch_policy`] was asked for, and the policy file
    /// cannot be watched.
    #[error("cannot watch the policy file {}: {source}", path.display())]
    Watch {
        /// The policy file.
        path: PathBuf,
        /// What the file watcher said.
        #[source]
        source: notify::Error,
    },
}

/// Options for a host.
pub struct HostBuilder {
    policy: Arc<Policy>,
    repo: PathBuf,
    audit_log: Option<PathBuf>,
    warnings: Option<WarningSink>,
    support: SupportOptions,
    detected: Option<HostSupport>,
    home: Option<Option<PathBuf>>,
    host_env: Option<Vec<(String, String)>>,
    tmp_dir: Option<PathBuf>,
    watch: Option<PathBuf>,
    when_full: Option<WhenFull>,
}

impl HostBuilder {
    pub(super) fn new(policy: Arc<Policy>, repo: &Path) -> Self {
        Self {
            policy,
            repo: repo.to_path_buf(),
            audit_log: None,
            warnings: None,
            support: SupportOptions::default(),
            detected: None,
            home: None,
            host_env: None,
            tmp_dir: None,
            watch: None,
            when_full: None,
        }
    }

    /// What a full event queue does to every job of this host, whatever the
    /// policy's `output.when_full` says: `WhenFull::Wait` for a consumer that
    /// must see every byte (a CLI writing to a pipe or a CI log), where the
    /// job waiting for a slow reader is right and dropping output is not.
    pub fn output_when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = Some(when_full);
        self
    }

    /// Reloads the policy from `path` whenever the file changes — only when
    /// the new file validates; otherwise the previous policy stays and the
    /// diagnostics go to the warning sink. Running and pending jobs keep the
    /// plan they were given.
    pub fn watch_policy(mut self, path: impl Into<PathBuf>) -> Self {
        self.watch = Some(path.into());
        self
    }

    /// Writes a JSONL audit record per decision and per job end to `path`.
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_log = Some(path.into());
        self
    }

    /// Calls `sink` for every host warning (the library never prints).
    pub fn on_warning(mut self, sink: impl Fn(HostWarning) + Send + Sync + 'static) -> Self {
        self.warnings = Some(Arc::new(sink));
        self
    }

    /// Testing aid: pretend the kernel's Landlock ABI is at most `abi`
    /// (0 = no Landlock). Only ever weakens the host, and only when called:
    /// nothing reads it from the environment.
    pub fn landlock_abi_max(mut self, abi: u32) -> Self {
        self.support.landlock_abi_max = Some(abi);
        self
    }

    /// Testing aid: do not use cgroups. Only when called: nothing reads it
    /// from the environment.
    pub fn without_cgroups(mut self) -> Self {
        self.support.no_cgroups = true;
        self
    }

    /// Testing aid: switch off one layer of the Linux kernel baseline, so a
    /// test can show an attempt the layer refuses succeeding without it. The
    /// report says the layer is not enforced and why. Only when called.
    pub fn without_baseline(mut self, layer: crate::sandbox::BaselineLayer) -> Self {
        self.support.without_baseline.push(layer);
        self
    }

    /// Testing aid (Linux): jobs keep the host's session and controlling
    /// terminal (no `setsid`); their report says `session` NOT enforced.
    /// Only for tests that show, as a control, what the session prevents.
    pub fn without_session(mut self) -> Self {
        self.support.keep_session = true;
        self
    }

    /// Observes every job (Linux: seccomp user notification) and ends each
    /// with its refused accesses in policy terms, as `system` lines before
    /// the exit summary (`denied read /etc/ssl/openssl.cnf — not under
    /// filesystem.read; add "/etc/ssl/openssl.cnf" there (or to
    /// binaries.node.filesystem.read)`) and through
    /// [`super::PluginHandle::observed`]. Jobs stay confined exactly as
    /// without it; observed calls cost a round trip to the host thread
    /// (BENCHMARKS.md).
    pub fn explain_denials(mut self) -> Self {
        self.support.observation = crate::sandbox::Observation::Denials;
        self
    }

    /// Learn mode (`jobwarden learn`): jobs run without Landlock, the
    /// sockets filter and `noexec` writable roots — everything else of
    /// their plan stays — and everything they attempt is recorded
    /// ([`super::PluginHandle::observed`]). For running one trusted
    /// command to write its policy; never for plugins' jobs.
    pub fn learn_mode(mut self) -> Self {
        self.support.observation = crate::sandbox::Observation::Learn;
        self
    }

    /// Whether a host that is not root may move this process into a
    /// delegated cgroup of its own to give jobs limits (Linux; default
    /// [`CgroupDelegation::Auto`](crate::sandbox::CgroupDelegation)). It
    /// moves the embedding process, once: see `CgroupDelegation`.
    pub fn cgroup_delegation(mut self, delegation: crate::sandbox::CgroupDelegation) -> Self {
        self.support.cgroup_delegation = delegation;
        self
    }

    /// Detection options at once (the CLI's `--simulate-*` flags).
    pub fn support_options(mut self, options: SupportOptions) -> Self {
        self.support = options;
        self
    }

    /// What this machine enforces, detected beforehand with
    /// [`HostSupport::detect`] — on another thread while the policy loads,
    /// as `jobwarden run` does — instead of while building. The options it
    /// was detected with are the host's: those given to this builder
    /// (`support_options`, the testing aids, `explain_denials`, …) are not
    /// used.
    pub fn detected_support(mut self, support: HostSupport) -> Self {
        self.detected = Some(support);
        self
    }

    /// The home directory for `{home}` (default: `HOME`).
    pub fn home(mut self, home: Option<PathBuf>) -> Self {
        self.home = Some(home);
        self
    }

    /// The host environment `env.inherit` draws from (default: this process's).
    pub fn host_env(mut self, env: Vec<(String, String)>) -> Self {
        self.host_env = Some(env);
        self
    }

    /// Where per-job directories are created (default: the system temp dir).
    pub fn tmp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tmp_dir = Some(dir.into());
        self
    }

    /// Starts the host and its thread.
    pub fn build(self) -> Result<PolicyJobHost, HostError> {
        let repo = self.repo.canonicalize().map_err(|source| HostError::Repo {
            path: self.repo.clone(),
            source,
        })?;
        if !repo.is_dir() {
            return Err(HostError::Repo {
                path: repo,
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let home = self
            .home
            .clone()
            .unwrap_or_else(|| std::env::var_os("HOME").map(PathBuf::from));
        let canonical_home = home.as_deref().and_then(|h| h.canonicalize().ok());
        if let Some(why) = crate::decision::repo_refusal(&repo, canonical_home.as_deref()) {
            return Err(HostError::UnsafeRepo { path: repo, why });
        }
        let tmp_base = self.tmp_dir.unwrap_or_else(std::env::temp_dir);
        // Named after the host's pid and start time, so a later host can
        // tell whose it is; those of hosts that are gone are removed, below.
        let tmp_root = super::tmp_root::create(&tmp_base).map_err(|source| HostError::TmpRoot {
            path: tmp_base.clone(),
            source,
        })?;
        let audit = match &self.audit_log {
            Some(path) => Some(AuditLog::open(path).map_err(|source| HostError::Audit {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let support = match self.detected {
            Some(support) => support,
            None => HostSupport::detect(&self.support),
        };
        let poll = mio::Poll::new().map_err(HostError::Poller)?;
        let waker =
            mio::Waker::new(poll.registry(), supervisor::WAKER).map_err(HostError::Poller)?;
        let shared = Arc::new(Shared {
            policy: RwLock::new(self.policy),
            repo,
            home,
            host_env: self.host_env.unwrap_or_else(|| {
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                    .collect()
            }),
            tmp_root: tmp_root.path().to_path_buf(),
            support,
            next_id: AtomicU64::new(0),
            jobs: Mutex::new(JobTable::default()),
            queues: Mutex::new(HashMap::new()),
            notifiers: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            queued: Condvar::new(),
            commands: Mutex::new(Vec::new()),
            waker: Arc::new(waker),
            shutting_down: AtomicBool::new(false),
            audit,
            warnings: self.warnings,
            kept_warnings: Mutex::new(VecDeque::new()),
            when_full: self.when_full,
        });
        let watcher = match &self.watch {
            Some(path) => Some(watch(&shared, path).map_err(|source| HostError::Watch {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jobwarden-host".into())
            .spawn(move || supervisor::run(thread_shared, poll))
            .map_err(HostError::Thread)?;
        // Last, so no error return above leaves it running unjoined.
        let spawned = {
            let (shared, base) = (shared.clone(), tmp_base.clone());
            std::thread::Builder::new()
                .name("jobwarden-sweep".into())
                .spawn(move || sweep(&shared, &base))
        };
        let sweeper = match spawned {
            Ok(handle) => Some(handle),
            // No thread to spare: sweep now.
            Err(_) => {
                sweep(&shared, &tmp_base);
                None
            }
        };
        Ok(PolicyJobHost {
            shared,
            thread: Mutex::new(Some(thread)),
            sweeper: Mutex::new(sweeper),
            tmp_root: Mutex::new(Some(tmp_root)),
            _watcher: watcher,
        })
    }
}

/// Removes the job directories of hosts that are gone. It lists the whole
/// temporary directory (1,900 entries took 1 ms here) and may remove large
/// trees, so it runs beside the host rather than before its first job, and
/// shutdown waits for it. Its warnings (a directory it cannot remove) come
/// when it is done, from its own thread.
fn sweep(shared: &Shared, base: &Path) {
    for (path, e) in super::tmp_root::remove_stale(base) {
        shared.warn(format!(
            "cannot remove {}, left by a host that no longer runs: {e}",
            path.display()
        ));
    }
}

/// Watches `path`'s directory (editors replace files by renaming) and
/// reloads the policy when the file changes.
fn watch(shared: &Arc<Shared>, path: &Path) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let file = path.canonicalize().map_err(notify::Error::io)?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let weak = Arc::downgrade(shared);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        if !ours || !(event.kind.is_modify() || event.kind.is_create()) {
            return;
        }
        // Let an editor finish writing before reading.
        std::thread::sleep(Duration::from_millis(150));
        if let Some(shared) = weak.upgrade() {
            shared.reload(&file);
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
