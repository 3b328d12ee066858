//! `run`'s stop signals: every catchable signal whose default would end
//! the process (SIGHUP when the terminal closes, SIGINT, SIGTERM, ...)
//! cancels the job gracefully instead, so the job gets its grace period and
//! the host removes its job directories before `run` exits with 128 + the
//! first signal's number.
//!
//! The signals are registered before the host exists (a signal during
//! start-up is not lost) and handled on a thread of their own, so a cancel
//! happens even while `run` itself is blocked writing into a pipe nobody
//! reads. Later signals change nothing: the grace period is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;

/// The signals that stop `run` gracefully. Those a process cannot catch
/// (SIGKILL, SIGSTOP) or that mean a bug in it (SIGSEGV, SIGILL, SIGFPE,
/// SIGBUS) are not here; SIGPIPE is ignored by Rust programs, and a closed
/// stdout is handled as a write error (see `run.rs`).
#[cfg(unix)]
const STOP_SIGNALS: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGALRM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
];
#[cfg(not(unix))]
const STOP_SIGNALS: &[i32] = &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// Stop signals caught since [`StopSignals::register`], not yet handled.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    signals: signal_hook::iterator::Signals,
    #[cfg(not(unix))]
    flag: Arc<std::sync::atomic::AtomicUsize>,
    problems: Vec<String>,
}

impl StopSignals {
    /// Catches the stop signals from now on. A signal that cannot be
    /// caught keeps its default, and is named in [`StopSignals::problems`].
    pub fn register() -> Self {
        let mut problems = Vec::new();
        #[cfg(unix)]
        {
            let signals = signal_hook::iterator::Signals::new(std::iter::empty::<i32>())
                .expect("an empty signal set registers nothing that can fail");
            for &sig in STOP_SIGNALS {
                if let Err(e) = signals.add_signal(sig) {
                    problems.push(format!("cannot handle signal {sig}: {e}"));
                }
            }
            Self { signals, problems }
        }
        #[cfg(not(unix))]
        {
            let flag = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for &sig in STOP_SIGNALS {
                if let Err(e) = signal_hook::flag::register_usize(sig, flag.clone(), sig as usize) {
                    problems.push(format!("cannot handle signal {sig}: {e}"));
                }
            }
            Self { flag, problems }
        }
    }

    /// Signals that keep their default action.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Calls `stop` (once, on a thread of its own) with the first stop
    /// signal, including one caught before this call.
    pub fn watch(self, stop: impl FnOnce(i32) + Send + 'static) -> Watch {
        let first = Arc::new(AtomicI32::new(0));
        let seen = first.clone();
        #[cfg(unix)]
        {
            let handle = self.signals.handle();
            let mut signals = self.signals;
            let thread = std::thread::Builder::new()
                .name("jobwarden-signals".into())
                .spawn(move || {
                    let mut stop = Some(stop);
                    for sig in signals.forever() {
                        if seen
                            .compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                            && let Some(stop) = stop.take()
                        {
                            stop(sig);
                        }
                    }
                })
                .ok();
            Watch {
                first,
                thread,
                close: Box::new(move || handle.close()),
            }
        }
        #[cfg(not(unix))]
        {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stopped = done.clone();
            let flag = self.flag;
            let thread = std::thread::Builder::new()
                .name("jobwarden-signals".into())
                .spawn(move || {
                    while !stopped.load(Ordering::Acquire) {
                        let sig = flag.swap(0, Ordering::AcqRel) as i32;
                        if sig != 0 {
                            seen.store(sig, Ordering::Release);
                            stop(sig);
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                })
                .ok();
            Watch {
                first,
                thread,
                close: Box::new(move || done.store(true, Ordering::Release)),
            }
        }
    }
}

/// The thread that handles stop signals; stopped when dropped.
pub(crate) struct Watch {
    first: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
    close: Box<dyn Fn() + Send>,
}

impl Watch {
    /// The first stop signal caught, if any.
    pub fn caught(&self) -> Option<i32> {
        match self.first.load(Ordering::Acquire) {
            0 => None,
            sig => Some(sig),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        (self.close)();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
